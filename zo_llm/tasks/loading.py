"""Loading a task's examples from a local file or folder, with a schema check.

Every task that reads data takes ``data=PATH`` (``--data PATH`` on the CLI).
Files are read with :mod:`datasets` (JSON, JSON Lines, Parquet, CSV, or a
folder saved by ``Dataset.save_to_disk`` / holding such files), so the hub's
own schemas load unchanged. A file without the fields a task needs fails at
load time with the missing field names, never later while scoring.

Text files are checked first (:func:`read_json_records`, :func:`read_text`):
a file that is not UTF-8, or JSON that does not parse, fails with one message
naming the file and the line, not a page of :mod:`datasets` errors.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: One example of a task: a record of named fields (a row of a ``datasets.Dataset``).
Example = dict[str, Any]

#: File suffix -> the ``datasets`` builder that reads it.
BUILDERS = {
    ".json": "json",
    ".jsonl": "json",
    ".parquet": "parquet",
    ".csv": "csv",
}
#: Suffixes of the text formats checked before :mod:`datasets` reads them.
TEXT_SUFFIXES = (".json", ".jsonl", ".csv")
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
        raise FileNotFoundError(
            f"{task}: data not found: {path} (set data= / --data to a file or folder)"
        )
    rows = _read(path, task, split)
    check_fields(rows, required, task, path)
    return rows


def read_text(path: str | Path, what: str) -> str:
    """The UTF-8 text of ``path``; an error names ``what``, the file and the bad byte's line.

    Raises:
      FileNotFoundError: the file does not exist.
      ValueError: it is a folder, or not UTF-8 text.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{what}: {path} does not exist")
    if path.is_dir():
        raise ValueError(f"{what}: {path} is a folder, not a file")
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
        raise ValueError(
            f"{what}: {path} is not UTF-8 text (byte 0x{data[error.start]:02x} at line {line}, "
            f"column {column}); save it as UTF-8"
        ) from None


def read_json_records(path: str | Path, task: str) -> list[Any]:
    """The items of a JSON file (a list, or one object) or of a JSON Lines file.

    Whatever the suffix, a text that is one JSON document is read as one (a
    list of examples, or one example); any other is read as JSON Lines, as
    :mod:`datasets` does. The errors name the file and the line.

    Raises:
      FileNotFoundError: the file does not exist.
      ValueError: it is not UTF-8, not valid JSON (naming the line and column), empty,
        or holds a value that is not a list or object.
    """
    path = Path(path).expanduser()
    text = read_text(path, task)
    lines = [(n, line) for n, line in enumerate(text.split("\n"), 1) if line.strip()]
    if not lines:
        raise ValueError(f"{task}: {path} is empty; it holds no examples")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        looks_like_lines = len(lines) > 1 and _is_object(lines[0][1])
        if path.suffix != ".jsonl" and not looks_like_lines:
            raise ValueError(
                f"{task}: {path} is not valid JSON: {error.msg} (line {error.lineno}, "
                f"column {error.colno})"
            ) from None
    else:  # one document: a list of examples, or one example (a one-line JSON Lines file)
        if isinstance(document, list):
            return document
        if isinstance(document, dict):
            return [document]
        raise ValueError(
            f"{task}: {path} holds a JSON {type(document).__name__}, not a list of examples"
        )
    records = []
    for number, line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise ValueError(
                f"{task}: {path}, line {number}: not valid JSON: {error.msg} "
                f"(column {error.colno}); each line must be one JSON object"
            ) from None
    return records


def _is_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except json.JSONDecodeError:
        return False


def check_text_file(path: Path, task: str) -> None:
    """Fails naming ``path`` and the line for a text data file that is not UTF-8 or not JSON.

    JSON files must hold objects (one per line in JSON Lines); CSV is only
    checked to be UTF-8, its rows are :mod:`datasets`' to parse.
    """
    if path.suffix == ".csv":
        read_text(path, task)
        return
    for index, record in enumerate(read_json_records(path, task)):
        if not isinstance(record, dict):
            raise ValueError(
                f"{task}: example {index} of {path} is a JSON {type(record).__name__}, "
                "not an object of fields"
            )


def _read(path: Path, task: str, split: str | None) -> list[Example]:
    import datasets

    quiet = datasets.utils.are_progress_bars_disabled()
    datasets.disable_progress_bars()  # a few hundred rows: the bars are only noise
    verbosity = datasets.logging.get_verbosity()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)  # its error logs repeat ours
    try:
        return _read_quietly(path, task, split)
    finally:
        datasets.logging.set_verbosity(verbosity)
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
    if path.suffix in TEXT_SUFFIXES:
        check_text_file(path, task)
    try:
        loaded = datasets.load_dataset(builder, data_files=str(path), split="train")
    except Exception as error:  # datasets raises many kinds; name the file and the cause
        raise ValueError(f"{task}: cannot read {path}: {root_cause(error)}") from None
    return [dict(row) for row in loaded]


def root_cause(error: BaseException) -> str:
    """``Type: message`` of the exception at the bottom of ``error``'s chain.

    :mod:`datasets` wraps the parser's own error (which names the line) in a
    generic "An error occurred while generating the dataset".
    """
    seen = {id(error)}
    while (inner := error.__cause__ or error.__context__) is not None and id(inner) not in seen:
        seen.add(id(inner))
        error = inner
    text = " ".join(str(error).split())  # pandas' and pyarrow's messages span lines
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


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
