"""Loading a task's examples from a local file or folder, with a schema check.

Every task that reads data takes ``data=PATH`` (``--data PATH`` on the CLI).
Files are read with :mod:`datasets` (JSON, JSON Lines, Parquet, CSV, or a
folder saved by ``Dataset.save_to_disk`` / holding such files), so the hub's
own schemas load unchanged. A file without the fields a task needs fails at
load time with the missing field names, never later while scoring.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # base imports this module
    from .base import Example

#: File suffix -> the ``datasets`` builder that reads it.
BUILDERS = {
    ".json": "json",
    ".jsonl": "json",
    ".parquet": "parquet",
    ".csv": "csv",
}
#: Names of split files in a folder, for each of our splits.
SPLIT_FILES = {"train": ("train",), "eval": ("test", "eval", "validation")}


def load_records(
    path: str | Path, required: Sequence[str], task: str, split: str | None = None
) -> list[Example]:
    """Examples from a local file or folder; raises if any lacks a ``required`` field.

    A folder holds either a saved :class:`datasets.Dataset`/``DatasetDict`` or
    data files; with ``split``, a file named after it (``train.jsonl``,
    ``test.parquet``, ...) is preferred, else the folder's only file is read.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{task}: data not found: {path} (set data= to a file or folder)")
    rows = _read(path, task, split)
    check_fields(rows, required, task, path)
    return rows


def _read(path: Path, task: str, split: str | None) -> list[Example]:
    import datasets

    quiet = datasets.utils.are_progress_bars_disabled()
    datasets.disable_progress_bars()  # a few hundred rows: the bars are only noise
    try:
        return _read_quietly(path, task, split)
    finally:
        if not quiet:
            datasets.enable_progress_bars()


def _read_quietly(path: Path, task: str, split: str | None) -> list[Example]:
    import datasets

    if path.is_dir():
        if (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists():
            loaded = datasets.load_from_disk(str(path))
            if isinstance(loaded, datasets.DatasetDict):
                names = [n for n in SPLIT_FILES.get(split or "", ()) if n in loaded]
                if not names:
                    raise ValueError(
                        f"{task}: {path} holds splits {sorted(loaded)}; none is {split!r}"
                    )
                loaded = loaded[names[0]]
            return [dict(row) for row in loaded]
        files = sorted(p for p in path.iterdir() if p.suffix in BUILDERS)
        wanted = [p for p in files if p.stem in SPLIT_FILES.get(split or "", ())]
        if wanted:
            files = wanted[:1]
        if len(files) != 1:
            raise ValueError(
                f"{task}: cannot tell which file of {path} holds the {split or 'data'} split; "
                f"name them train.jsonl / test.jsonl, or pass one file"
            )
        path = files[0]
    builder = BUILDERS.get(path.suffix)
    if builder is None:
        raise ValueError(
            f"{task}: cannot read {path}: use one of {', '.join(sorted(BUILDERS))}, "
            "or a saved dataset folder"
        )
    try:
        loaded = datasets.load_dataset(builder, data_files=str(path), split="train")
    except Exception as error:  # datasets raises many kinds; name the file
        raise ValueError(f"{task}: cannot read {path}: {error}") from error
    return [dict(row) for row in loaded]


def check_fields(rows: Sequence[Any], required: Sequence[str], task: str, source: Any) -> None:
    """Raises naming the fields that some row lacks (and the first such row)."""
    for index, row in enumerate(rows):
        missing = [k for k in required if not isinstance(row, dict) or k not in row]
        if missing:
            have = sorted(row) if isinstance(row, dict) else type(row).__name__
            raise ValueError(
                f"{task}: example {index} of {source} lacks field(s) {', '.join(missing)} "
                f"(it has {have}); the task needs {', '.join(required)}"
            )


def load_splits(
    path: str | Path, required: Sequence[str], task: str, train_size: int | None
) -> tuple[list[Example], list[Example]]:
    """Train and eval examples from ``path``.

    A folder holds one file per split (``train.*``, and ``test.*``/``eval.*``/
    ``validation.*``) or a saved ``DatasetDict``; one file is cut in two: the
    first ``train_size`` examples (default: half) train, the rest are held out.
    """
    if Path(path).expanduser().is_dir():
        return (
            load_records(path, required, task, "train"),
            load_records(path, required, task, "eval"),
        )
    rows = load_records(path, required, task)
    cut = train_size if train_size is not None else len(rows) // 2
    if not 0 < cut < len(rows):
        raise ValueError(
            f"{task}: {path} has {len(rows)} examples; train_size={cut} must leave at least one "
            "for each split"
        )
    return rows[:cut], rows[cut:]
