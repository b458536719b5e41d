"""Run logs as loop hooks: ``metrics.jsonl`` (the record of truth), TensorBoard, W&B, a bar.

Each line of ``metrics.jsonl`` is one standard JSON object (a NaN is written as
``null``), ``{"type": "train", ...}`` per iteration or ``{"type": "eval", ...}``
per held-out evaluation. On resume the file is cut back to the lines the
checkpoint had seen, so a resumed run's log reads as if it had never stopped;
TensorBoard is rebuilt from it, W&B continued (see :class:`Wandb`).
"""

from __future__ import annotations

import math
import numbers
import shutil
import sys
import uuid

from .hooks import Hook, Record, RunView
from .rundir import METRICS_FILE, read_metrics
from .tasks.base import main_metric

__all__ = ["METRICS_FILE", "MetricsFile", "ProgressBar", "TensorBoard", "Wandb", "read_metrics"]


class MetricsFile(Hook):
    """Appends every record to the run folder's ``metrics.jsonl``."""

    def on_start(self, run: RunView) -> None:
        path = run.rundir.metrics_file
        old = path.read_text() if path.exists() else ""
        path.write_text("".join(old.splitlines(keepends=True)[: run.logged_lines]))

    def on_record(self, run: RunView, record: Record) -> None:
        run.rundir.append_metrics(record)


class TensorBoard(Hook):
    """Mirrors the numbers of every record to TensorBoard events in ``tensorboard/``.

    On resume the folder is rebuilt from the kept ``metrics.jsonl`` (rather than
    with TensorBoard's purge_step), which drops the steps logged after the
    checkpoint whatever order TensorBoard reads its event files in.
    """

    def __init__(self) -> None:
        self._writer = None

    def on_start(self, run: RunView) -> None:
        from torch.utils.tensorboard import SummaryWriter  # imported lazily: slow import

        folder = run.rundir.tensorboard
        if folder.exists():
            shutil.rmtree(folder)
        self._writer = SummaryWriter(str(folder))
        for record in run.rundir.metrics():
            self.on_record(run, record)

    def on_record(self, run: RunView, record: Record) -> None:
        step = int(record.get("iteration", 0))
        for key, value in _scalars(record):
            self._writer.add_scalar(f"{record.get('type', 'run')}/{key}", value, step)
        self._writer.flush()

    def close(self, run: RunView) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class Wandb(Hook):
    """Logs every record to a Weights & Biases run (``pip install 'zo-llm[wandb]'``).

    The W&B run's id is kept in the run folder (``wandb_id``), so a resumed
    run continues the same W&B run; its files go to the run folder's
    ``wandb/``. ``WANDB_MODE=offline`` logs without a network. W&B cannot
    forget the records it got after the checkpoint a run resumes from, so the
    folder counts the records sent (``wandb_sent``) and a resumed run sends
    only the later ones: the replayed ones are the same numbers (resume is
    exact), so W&B's steps continue without repeats.
    """

    def __init__(self, project: str) -> None:
        self.project = project
        self._run = None
        self._sent = 0

    def on_start(self, run: RunView) -> None:
        import wandb  # present: the run config checked it before the model loaded

        id_file = run.rundir.wandb_id_file
        run_id = id_file.read_text().strip() if id_file.exists() else uuid.uuid4().hex[:12]
        id_file.write_text(run_id)
        sent_file = run.rundir.wandb_sent_file
        self._sent = int(sent_file.read_text()) if sent_file.exists() else 0
        self._run = wandb.init(
            project=self.project,
            id=run_id,
            resume="allow",
            dir=str(run.rundir.path),
            name=run.rundir.path.name,
            config=run.config.to_dict(),
        )

    def on_record(self, run: RunView, record: Record) -> None:
        if run.logged_lines <= self._sent:  # replayed after a resume: W&B has it already
            return
        kind = record.get("type", "run")
        values = {f"{kind}/{key}": value for key, value in _scalars(record)}
        self._run.log(values | {"iteration": int(record.get("iteration", 0))})
        self._sent = run.logged_lines
        run.rundir.wandb_sent_file.write_text(str(self._sent))

    def close(self, run: RunView) -> None:
        if self._run is not None:
            self._run.finish()
            self._run = None


class ProgressBar(Hook):
    """A tqdm bar over the run's iterations that also moves inside them, on stderr.

    It starts with what the run does (:meth:`Experiment.describe`) and the first
    training prompt as the model sees it, so a wrong chat template or prompt is
    caught in seconds; the bar then shows the members done in the current
    iteration (or the prompts of a held-out evaluation), the latest mean reward
    and the latest held-out metric, and each held-out evaluation gets a line.

    When stderr is not a terminal (a log file, CI), a bar would be redrawn once
    per member, so the same news comes as one line per iteration and per
    held-out evaluation instead (``lines``; None: decided by stderr).
    """

    def __init__(self, lines: bool | None = None) -> None:
        self._bar = None
        self._lines = lines
        self._shown: dict[str, str] = {}

    def on_start(self, run: RunView) -> None:
        from tqdm.auto import tqdm

        tqdm.write(run.describe() + "\n" + run.show_first_prompt(), file=sys.stderr)
        if self._lines is None:
            self._lines = not sys.stderr.isatty()
        if self._lines:
            return
        self._bar = tqdm(
            total=run.config.loop.iterations,
            initial=run.iteration,
            desc="zo-llm",
            unit="it",
            dynamic_ncols=True,
            file=sys.stderr,
        )

    def on_progress(self, run: RunView, phase: str, done: int, total: int) -> None:
        if self._bar is None:
            return
        self._shown["now"] = f"{phase} {done}/{total}"
        self._refresh()

    def on_record(self, run: RunView, record: Record) -> None:
        if self._bar is None:
            self._write_line(run, record)
            return
        self._shown.pop("now", None)
        if record["type"] == "train":
            self._bar.update(1)
            self._shown["reward"] = f"{record['reward_mean']:.4f}"
        elif isinstance(record.get(main_metric(record)), numbers.Real):
            metric = main_metric(record)  # a held-out evaluation: on screen, not only in the log
            self._shown[f"held-out {metric}"] = f"{record[metric]:.4g}"
            self._bar.write(
                f"held-out at iteration {record['iteration']}: {metric}={record[metric]:.4g}",
                file=sys.stderr,
            )
        self._refresh()

    @staticmethod
    def _write_line(run: RunView, record: Record) -> None:
        if record["type"] == "train":
            seconds = record.get("iteration_seconds")
            took = f" ({seconds:.1f} s)" if isinstance(seconds, numbers.Real) else ""
            print(
                f"iteration {record['iteration']}/{run.config.loop.iterations}: "
                f"reward_mean={record['reward_mean']:.4f}{took}",
                file=sys.stderr,
                flush=True,
            )
        elif isinstance(record.get(main_metric(record)), numbers.Real):
            metric = main_metric(record)
            print(
                f"held-out at iteration {record['iteration']}: {metric}={record[metric]:.4g}",
                file=sys.stderr,
                flush=True,
            )

    def _refresh(self) -> None:
        shown = (value if key == "now" else f"{key}={value}" for key, value in self._shown.items())
        self._bar.set_postfix_str(", ".join(shown))

    def close(self, run: RunView) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _scalars(record: Record) -> list[tuple[str, float]]:
    """The finite numbers of a record, without its type and step."""
    return [
        (key, value)
        for key, value in record.items()
        if key not in ("type", "iteration")
        and isinstance(value, numbers.Real)
        and math.isfinite(value)
    ]
