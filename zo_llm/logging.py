"""Run logs: ``metrics.jsonl`` (the record of truth) mirrored to TensorBoard.

Each line of ``metrics.jsonl`` is one JSON object, ``{"type": "train", ...}``
per iteration or ``{"type": "eval", ...}`` per held-out evaluation. On resume
the file is cut back to the lines the checkpoint had seen, so a resumed run's
log reads as if it had never stopped.
"""

from __future__ import annotations

import json
import math
import numbers
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.jsonl"


class RunLogger:
    """Appends records to ``metrics.jsonl`` and TensorBoard (``tensorboard/``) in a run folder."""

    def __init__(self, run_dir: Path, keep_lines: int | None = None, tensorboard: bool = True):
        self.path = run_dir / METRICS_FILE
        if keep_lines is None:
            self.path.write_text("")
        else:
            kept = (
                self.path.read_text().splitlines(keepends=True)[:keep_lines]
                if self.path.exists()
                else []
            )
            self.path.write_text("".join(kept))
        self.lines = len(self.path.read_text().splitlines())
        self._writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # imported lazily: slow import

            purge = None if keep_lines is None else self._last_iteration() + 1
            self._writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=purge)

    def _last_iteration(self) -> int:
        records = read_metrics(self.path)
        return max((r.get("iteration", 0) for r in records), default=0)

    def log(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as handle:
            handle.write(json.dumps(record, allow_nan=True) + "\n")
        self.lines += 1
        if self._writer is not None:
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


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file (or of the run folder holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
