"""Run logs: ``metrics.jsonl`` (the record of truth) mirrored to TensorBoard.

Each line of ``metrics.jsonl`` is one standard JSON object (a NaN is written as
``null``), ``{"type": "train", ...}``
per iteration or ``{"type": "eval", ...}`` per held-out evaluation. On resume
the file is cut back to the lines the checkpoint had seen, so a resumed run's
log reads as if it had never stopped.
"""

from __future__ import annotations

import json
import math
import numbers
import shutil
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.jsonl"


class RunLogger:
    """Appends records to ``metrics.jsonl`` and TensorBoard (``tensorboard/``) in a run folder."""

    def __init__(self, run_dir: Path, keep_lines: int | None = None, tensorboard: bool = True):
        self.path = run_dir / METRICS_FILE
        old = self.path.read_text() if keep_lines is not None and self.path.exists() else ""
        self.path.write_text("".join(old.splitlines(keepends=True)[: keep_lines or 0]))
        self.lines = len(self.path.read_text().splitlines())
        self._writer = None
        if tensorboard:
            self._open_tensorboard(run_dir / "tensorboard", rebuild=keep_lines is not None)

    def _open_tensorboard(self, folder: Path, rebuild: bool) -> None:
        """Starts the TensorBoard mirror; on resume, rebuilds it from the kept records.

        Rebuilding from ``metrics.jsonl`` (rather than TensorBoard's purge_step)
        drops the steps logged after the checkpoint whatever order TensorBoard
        reads its event files in.
        """
        from torch.utils.tensorboard import SummaryWriter  # imported lazily: slow import

        if rebuild and folder.exists():
            shutil.rmtree(folder)
        self._writer = SummaryWriter(str(folder))
        for record in read_metrics(self.path) if rebuild else []:
            self._mirror(record)

    def log(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as handle:
            handle.write(json.dumps(_strict_json(record)) + "\n")
        self.lines += 1
        self._mirror(record)

    def _mirror(self, record: dict[str, Any]) -> None:
        if self._writer is None:
            return
        step = int(record.get("iteration", 0))
        for key, value in record.items():
            if key in ("type", "iteration") or not isinstance(value, numbers.Real):
                continue
            if math.isfinite(value):
                self._writer.add_scalar(f"{record.get('type', 'run')}/{key}", value, step)
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def _strict_json(record: dict[str, Any]) -> dict[str, Any]:
    """NaN and infinities become null, so every line is standard JSON (jq, browsers)."""
    return {
        key: None if isinstance(value, float) and not math.isfinite(value) else value
        for key, value in record.items()
    }


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file (or of the run folder holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
