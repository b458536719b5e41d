"""The pieces of the training loop that are not the iteration itself, as hooks.

Like evotorch's ``after_step_hook`` and nevergrad's callbacks, everything
around an iteration is a :class:`Hook` with its own period: the logs
(:mod:`zo_llm.logging`), the held-out evaluation and the checkpoints (here),
the progress bar, and whatever a user adds from Python::

    def stop_early(record):                   # called with each iteration's record
        return record["reward_mean"] > 0.9    # True stops the run (checkpointed)

    zo_llm.train(..., hooks=[stop_early])

The loop calls, in the order the hooks are listed: ``on_start`` once (every
hook is started before any record is logged), ``after_start`` once,
``on_record`` for every record logged (train and eval), ``on_progress`` after
each batch generated inside an iteration or an evaluation, ``after_iteration``
after each iteration the hook is :meth:`~Hook.due`, ``on_end`` when the loop
ends normally, and ``close`` always (even after an error).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .tasks.base import main_metric

if TYPE_CHECKING:
    from .runner import Experiment

Record = dict[str, Any]


class Hook:
    """Base class of loop hooks; override the methods you need (all do nothing here).

    ``every`` is the period in iterations of :meth:`after_iteration` (0: never).
    """

    every: int = 1

    def due(self, run: Experiment) -> bool:
        """Whether :meth:`after_iteration` runs after the iteration just done."""
        return self.every > 0 and run.iteration % self.every == 0

    def on_start(self, run: Experiment) -> None:
        """Before the first iteration of this call to :meth:`Experiment.run`."""

    def after_start(self, run: Experiment) -> None:
        """Once every hook has started: the first records may be logged here."""

    def on_record(self, run: Experiment, record: Record) -> None:
        """For every record the run logs (``record["type"]`` is ``"train"`` or ``"eval"``)."""

    def on_progress(self, run: Experiment, phase: str, done: int, total: int) -> None:
        """After each batch generated: ``done`` of ``total`` ``phase`` units so far.

        ``phase`` is ``"members"`` (an iteration's members evaluated) or ``"held-out"``
        (a held-out evaluation's prompts, samples included). A run on Ray workers
        reports its held-out evaluations only (its members generate elsewhere).
        """

    def after_iteration(self, run: Experiment, record: Record) -> None:
        """After an iteration, with its train record, when :meth:`due`."""

    def on_end(self, run: Experiment) -> None:
        """After the last iteration, when the loop ended without an error."""

    def close(self, run: Experiment) -> None:
        """Always, last: release files and connections."""


class CallbackHook(Hook):
    """A plain function of each iteration's train record; returning True stops the run."""

    def __init__(self, function: Callable[[Record], Any], every: int = 1) -> None:
        self.function = function
        self.every = every

    def after_iteration(self, run: Experiment, record: Record) -> None:
        if self.function(record) is True:
            run.request_stop(f"{getattr(self.function, '__name__', 'a hook')} asked to stop")


def as_hook(hook: Hook | Callable[[Record], Any]) -> Hook:
    """A :class:`Hook` as it is; a function as a :class:`CallbackHook`."""
    if isinstance(hook, Hook):
        return hook
    if callable(hook):
        return CallbackHook(hook)
    raise TypeError(f"hook {hook!r} is neither a zo_llm Hook nor a function of a record")


class HeldoutEvaluation(Hook):
    """Scores the held-out set at the start, every ``eval_every`` iterations, each time
    ``eval_every_samples`` more sample evaluations are spent, and at the end."""

    def __init__(self, every: int, every_samples: int | None) -> None:
        self.every = every
        self.every_samples = every_samples
        self._samples_before = 0

    def on_start(self, run: Experiment) -> None:
        self._samples_before = run.samples

    def after_start(self, run: Experiment) -> None:
        if run.iteration == 0:
            run.log(run.evaluate())

    def due(self, run: Experiment) -> bool:
        before, self._samples_before = self._samples_before, run.samples
        period = self.every_samples
        crossed = period is not None and run.samples // period > before // period
        return crossed or super().due(run)

    def after_iteration(self, run: Experiment, record: Record) -> None:
        run.log(run.evaluate())

    def on_end(self, run: Experiment) -> None:
        if run.evaluated_at != run.iteration:
            run.log(run.evaluate())


class Checkpointing(Hook):
    """Writes the run's checkpoint every ``every`` iterations and after the last one.

    Between checkpoints it keeps the finished iteration's state in memory,
    which Ctrl-C writes. The last checkpoint precedes the closing evaluation,
    so a run resumed from it to more iterations logs exactly what an
    uninterrupted run would.
    """

    def __init__(self, every: int) -> None:
        self.every = every

    def due(self, run: Experiment) -> bool:
        return True

    def after_iteration(self, run: Experiment, record: Record) -> None:
        if run.finished() or run.stop_requested is not None or super().due(run):
            run.save_checkpoint()
        else:
            run.keep_state()


class BestModel(Hook):
    """Keeps ``best/``: the model of the best held-out evaluation so far, as ``final/`` is saved.

    Ranked by the task's main metric (:func:`~zo_llm.tasks.base.main_metric`:
    accuracy if logged, else reward; higher is better), as es_at_scale's
    ``--save-best-models``; the first of equal scores is kept. ``best.json``
    says which evaluation it was. The folder is replaced whole (written
    beside it, then renamed), so a kill leaves the previous best intact.
    """

    def __init__(self) -> None:
        self.best: float | None = None

    def on_start(self, run: Experiment) -> None:
        rundir = run.rundir
        if run.logged_lines == 0:  # a new run (or one started over): nothing is best yet
            shutil.rmtree(rundir.best, ignore_errors=True)
            rundir.best_file.unlink(missing_ok=True)
        elif rundir.best_file.exists():
            self.best = float(json.loads(rundir.best_file.read_text())["value"])

    def on_record(self, run: Experiment, record: Record) -> None:
        if record["type"] != "eval":
            return
        metric = main_metric(record)
        value = record.get(metric)
        if value is None or value != value or (self.best is not None and value <= self.best):
            return
        self.best = float(value)
        rundir = run.rundir
        fresh, old = rundir.path / "best.tmp", rundir.path / "best.old"
        for stale in (fresh, old):
            shutil.rmtree(stale, ignore_errors=True)
        run.save_final(fresh)
        if rundir.best.exists():
            rundir.best.rename(old)
        fresh.rename(rundir.best)
        shutil.rmtree(old, ignore_errors=True)
        chosen = {"iteration": record["iteration"], "metric": metric, "value": self.best}
        rundir.write_best(chosen)
