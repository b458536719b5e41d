"""A run folder: the one place that knows its files.

::

    run_config.json   the resolved config (every component's options) and the zo-llm version
    metrics.jsonl     one JSON object per iteration and per evaluation
    tensorboard/      the same numbers as TensorBoard events
    checkpoint.pt     the latest checkpoint (every iteration by default), replaced atomically
    snapshots/        the latest snapshot of a growing state (iter-N.safetensors): resume
                      replays only the iterations after it
    final/            the trained model, a save_pretrained folder with its tokenizer
    best/, best.json  the model of the best held-out evaluation so far, and which it was
    wandb_id, wandb/  with --wandb-project: the W&B run's id and its local files
    bench_done        in a bench's run: the run finished (zo-llm bench keeps it)

The runner writes through :class:`RunDir`; ``zo-llm eval``, ``bench`` and
``resume`` read through it.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .version import __version__

if TYPE_CHECKING:
    from .config import RunConfig

__all__ = ["RunDir", "read_metrics"]

CONFIG_FILE = "run_config.json"
CHECKPOINT_FILE = "checkpoint.pt"
METRICS_FILE = "metrics.jsonl"
FINAL_DIR = "final"
BEST_DIR = "best"
BEST_FILE = "best.json"
SNAPSHOT_DIR = "snapshots"
TENSORBOARD_DIR = "tensorboard"
WANDB_ID_FILE = "wandb_id"
WANDB_SENT_FILE = "wandb_sent"  # how many records W&B has received
BENCH_DONE_FILE = "bench_done"


class RunDir:
    """The files of one run folder (which need not exist yet)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @property
    def config_file(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def checkpoint_file(self) -> Path:
        return self.path / CHECKPOINT_FILE

    @property
    def metrics_file(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def final(self) -> Path:
        return self.path / FINAL_DIR

    @property
    def best(self) -> Path:
        return self.path / BEST_DIR

    @property
    def best_file(self) -> Path:
        return self.path / BEST_FILE

    @property
    def tensorboard(self) -> Path:
        return self.path / TENSORBOARD_DIR

    @property
    def wandb_id_file(self) -> Path:
        return self.path / WANDB_ID_FILE

    @property
    def wandb_sent_file(self) -> Path:
        return self.path / WANDB_SENT_FILE

    @property
    def bench_done_file(self) -> Path:
        return self.path / BENCH_DONE_FILE

    def replace_best(self, save: Callable[[Path], None], chosen: dict[str, Any]) -> None:
        """Replaces ``best/`` by what ``save(folder)`` writes, and ``best.json`` by ``chosen``.

        Written beside it, then renamed, so a kill leaves the previous best intact.
        """
        fresh, old = self.path / f"{BEST_DIR}.tmp", self.path / f"{BEST_DIR}.old"
        for stale in (fresh, old):
            shutil.rmtree(stale, ignore_errors=True)
        save(fresh)
        if self.best.exists():
            self.best.rename(old)
        fresh.rename(self.best)
        shutil.rmtree(old, ignore_errors=True)
        _atomic_write_text(self.best_file, json.dumps(chosen))

    def forget_best(self) -> None:
        """Deletes ``best/`` and ``best.json`` (a new run: nothing is best yet)."""
        shutil.rmtree(self.best, ignore_errors=True)
        self.best_file.unlink(missing_ok=True)

    def read_best(self) -> dict[str, Any] | None:
        """``best.json``: which evaluation ``best/`` holds; None before the first."""
        return json.loads(self.best_file.read_text()) if self.best_file.exists() else None

    def holds_run(self) -> bool:
        return self.config_file.exists()

    def has_checkpoint(self) -> bool:
        return self.checkpoint_file.exists()

    # --- config -----------------------------------------------------------

    def write_config(
        self, config: RunConfig | dict[str, Any], versions: dict[str, str] | None = None
    ) -> None:
        """Writes ``run_config.json`` atomically: the config in full (a config, or its nested
        dict) and who wrote it (zo-llm's version, and ``versions`` of what generated:
        ``{"vllm": "0.32.0"}``)."""
        self.path.mkdir(parents=True, exist_ok=True)
        nested = config if isinstance(config, dict) else config.to_dict()
        document = {"zo_llm_version": __version__, "config": nested}
        if versions:
            document["versions"] = versions
        _atomic_write_text(self.config_file, json.dumps(document, indent=2))

    def read_document(self) -> dict[str, Any]:
        if not self.holds_run():
            raise FileNotFoundError(f"{self.path} is not a zo-llm run folder (no {CONFIG_FILE})")
        try:
            return json.loads(self.config_file.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{self.config_file} is not valid JSON ({error})") from None

    def read_config(self) -> dict[str, Any]:
        """The saved config in the nested spelling, a layer for :func:`zo_llm.config.resolve`.

        Runs written before zo-llm 0.3 saved flat settings; they are nested here.
        Runs that set ``loop.fitness`` (before fitness shaping had one home, the
        strategy's ``shaping``) resume with the same numbers: ``prompt_zscore``
        becomes the strategy's shaping, ``mean`` (the strategy's own) is dropped.
        """
        from .config import nest

        config = self.read_document()["config"]
        if not all(isinstance(value, dict) for value in config.values()):
            config = nest(config, where=str(self.config_file))
        fitness = config.get("loop", {}).pop("fitness", "mean")
        if fitness != "mean":
            config.setdefault("strategy", {})["shaping"] = fitness
        return config

    def made_by(self) -> str | None:
        """The zo-llm version that wrote the run."""
        return self.read_document().get("zo_llm_version")

    # --- checkpoints --------------------------------------------------------

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        """Writes ``checkpoint.pt`` atomically: a crash mid-write leaves the previous one valid."""
        import torch

        tmp = self.checkpoint_file.with_suffix(".tmp")
        torch.save(state, tmp)
        _flush_to_disk(tmp)
        os.replace(tmp, self.checkpoint_file)

    def load_checkpoint(self) -> dict[str, Any]:
        """The checkpoint's state; a damaged file is one error naming it and the way out."""
        import torch

        if not self.has_checkpoint():
            raise FileNotFoundError(f"{self.path} has no {CHECKPOINT_FILE}; nothing to resume")
        try:
            return torch.load(self.checkpoint_file, weights_only=True)
        except Exception as error:  # torch raises RuntimeError, EOFError, UnpicklingError...
            raise ValueError(
                f"{self.checkpoint_file} cannot be read ({type(error).__name__}: {error}); it is "
                f"damaged or not a zo-llm checkpoint. Delete it to start the run over "
                f"(zo-llm train --resume {self.path})"
            ) from None

    def clean_stale(self) -> None:
        """Removes what a killed process can leave half-written: ``*.tmp`` files."""
        for stale in [self.checkpoint_file.with_suffix(".tmp"), *self.snapshots.glob("*.tmp")]:
            stale.unlink(missing_ok=True)

    # --- snapshots ----------------------------------------------------------

    @property
    def snapshots(self) -> Path:
        return self.path / SNAPSHOT_DIR

    def save_snapshot(self, iteration: int, tensors: dict[str, Any]) -> str:
        """Writes ``snapshots/iter-N.safetensors`` atomically; returns its name in the folder."""
        from safetensors.torch import save_file

        self.snapshots.mkdir(parents=True, exist_ok=True)
        name = f"{SNAPSHOT_DIR}/iter-{iteration:07d}.safetensors"
        tmp = self.path / f"{name}.tmp"
        save_file({key: value.contiguous() for key, value in tensors.items()}, str(tmp))
        _flush_to_disk(tmp)
        os.replace(tmp, self.path / name)
        return name

    def open_snapshot(self, name: str) -> Any:
        """A context manager yielding the snapshot ``name`` as a mapping read tensor by tensor."""
        from safetensors import safe_open

        path = self.path / name
        if not path.exists():
            raise FileNotFoundError(
                f"{path} is missing; the checkpoint needs it. Restore it, or delete "
                f"{self.checkpoint_file} to start the run over"
            )
        return _Snapshot(safe_open(str(path), framework="pt", device="cpu"), path)

    def prune_snapshots(self, keep: str | None) -> None:
        """Deletes every snapshot but ``keep`` (the one the checkpoint names)."""
        for path in self.snapshots.glob("iter-*.safetensors"):
            if f"{SNAPSHOT_DIR}/{path.name}" != keep:
                path.unlink(missing_ok=True)

    # --- metrics ------------------------------------------------------------

    def append_metrics(self, *records: dict[str, Any]) -> None:
        """Appends ``records`` to ``metrics.jsonl``, one line each; NaN and infinities become
        null, so every line is standard JSON (jq, browsers)."""
        with self.metrics_file.open("a") as handle:
            for record in records:
                strict = {
                    key: None if isinstance(value, float) and not math.isfinite(value) else value
                    for key, value in record.items()
                }
                handle.write(json.dumps(strict) + "\n")

    def metrics(self, lines: int | None = None) -> list[dict[str, Any]]:
        """The records of ``metrics.jsonl`` (none if it does not exist yet); the first ``lines``.

        With ``lines``, what follows them is not read: a killed run may have
        left a half-written last line there.
        """
        if not self.metrics_file.exists():
            return []
        return read_metrics(self.metrics_file, lines)


class _Snapshot:
    """A snapshot file as a read-only mapping (``snapshot[key]`` reads one tensor)."""

    def __init__(self, handle: Any, path: Path) -> None:
        self._handle = handle
        self.path = path

    def __enter__(self) -> _Snapshot:
        self._file = self._handle.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._handle.__exit__(*exc)

    def keys(self) -> list[str]:
        return list(self._file.keys())

    def __getitem__(self, key: str) -> Any:
        return self._file.get_tensor(key)

    def part(self, prefix: str) -> _Part | None:
        """The keys under ``prefix.`` as a mapping without the prefix (None: there are none)."""
        if not any(key.startswith(prefix + ".") for key in self.keys()):
            return None
        return _Part(self, prefix + ".")


class _Part:
    """One component's share of a snapshot (``space.``, ``strategy.``)."""

    def __init__(self, snapshot: _Snapshot, prefix: str) -> None:
        self._snapshot = snapshot
        self._prefix = prefix

    def __getitem__(self, key: str) -> Any:
        return self._snapshot[self._prefix + key]


def read_metrics(path: str | Path, lines: int | None = None) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file (or of the run folder holding one).

    ``lines``: only the first ones (what follows them is not parsed).
    """
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    records = []
    for number, line in enumerate(path.read_text().splitlines()[:lines], 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}, line {number}: not a JSON record ({error})") from None
    return records


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _flush_to_disk(path: Path) -> None:
    """fsync: a rename must not make visible a file whose bytes a crash can still lose."""
    with path.open("rb") as handle:
        os.fsync(handle.fileno())
