"""How a run stops early: interrupted by a signal (its checkpoint kept), or diverged."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["RewardsFailed", "RunInterrupted", "TrainingDiverged"]


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a run; the checkpoint of its last finished iteration is kept.

    A ``KeyboardInterrupt``, so code that catches ``Exception`` lets it through.
    ``exit_code`` is the shell's convention (130 for SIGINT, 143 for SIGTERM).
    """

    def __init__(self, signum: int, saved_iteration: int | None, out: Path | None) -> None:
        self.signum, self.saved_iteration, self.out = signum, saved_iteration, out
        self.exit_code = 128 + int(signum)
        name = signal.Signals(signum).name
        if out is None:
            message = f"{name}: stopped (the run writes no folder, so nothing is kept)"
        elif saved_iteration is None:
            message = (
                f"{name}: stopped before the first checkpoint; "
                f"zo-llm train --resume {out} starts it over"
            )
        else:
            message = (
                f"{name}: stopped; checkpoint of iteration {saved_iteration} kept; "
                f"continue with: zo-llm train --resume {out}"
            )
        super().__init__(message)


class TrainingDiverged(RuntimeError):
    """An update made searched weights inf or NaN; nothing of that iteration is saved."""

    def __init__(self, iteration: int, tensors: list[str], out: Path | None) -> None:
        more = f" and {len(tensors) - 3} more" if len(tensors) > 3 else ""
        shown = ", ".join(tensors[:3]) + more
        kept = f"; the checkpoint of iteration {iteration - 1} in {out} is kept" if out else ""
        super().__init__(
            f"iteration {iteration}: the update made {shown} inf or NaN, so the run stopped "
            f"without saving a model{kept}. Lower --lr (or --sigma) and start again"
        )
        self.iteration, self.tensors = iteration, tensors


class RewardsFailed(ValueError):
    """Every reward of an evaluation failed, or reward calls kept timing out: nothing to learn.

    A ``ValueError``: the reward is the user's code, so the CLI prints one line
    (no traceback). A run that raises it keeps its last checkpoint and says how
    to continue once the reward is fixed.
    """


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Python is running, as Ctrl-C raises ``KeyboardInterrupt``."""

    signum = signal.SIGTERM


@contextlib.contextmanager
def signals_interrupt() -> Iterator[None]:
    """Inside, SIGTERM interrupts like Ctrl-C (only the main thread can install handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: Any) -> None:
        raise _Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
