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

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .drift import BaseTensors, base_tensors, relative_weight_change
from .evaluation.heldout import evaluate_heldout, evaluate_task
from .tasks.base import main_metric

if TYPE_CHECKING:
    from .assembly import Run
    from .config import EvaluationSection, RunConfig
    from .rundir import RunDir

__all__ = ["CallbackHook", "Hook", "RunView"]

Record = dict[str, Any]


class RunView(Protocol):
    """What a hook sees of a run: its config, parts and folder, the loop's counters, and the
    few things it may ask of the loop (:class:`~zo_llm.runner.Experiment` is one)."""

    config: RunConfig
    parts: Run
    rundir: RunDir | None
    iteration: int  # iterations finished
    samples: int  # sample evaluations so far: members x prompts
    elapsed: float  # training seconds so far
    logged_lines: int  # records in metrics.jsonl
    evaluated_at: int | None  # the iteration of the last held-out evaluation
    stop_requested: str | None

    def log(self, record: Record) -> None: ...

    def request_stop(self, reason: str) -> None: ...

    def finished(self) -> bool: ...

    def describe(self) -> str: ...

    def show_first_prompt(self) -> str: ...

    def save_final(self, path: Path) -> None: ...

    def reporting(
        self, phase: str, total: int, rows_per_unit: int
    ) -> AbstractContextManager[None]: ...


class Hook:
    """Base class of loop hooks; override the methods you need (all do nothing here).

    ``every`` is the period in iterations of :meth:`after_iteration` (0: never).
    """

    every: int = 1

    def due(self, run: RunView) -> bool:
        """Whether :meth:`after_iteration` runs after the iteration just done."""
        return self.every > 0 and run.iteration % self.every == 0

    def on_start(self, run: RunView) -> None:
        """Before the first iteration of this call to :meth:`Experiment.run`."""

    def after_start(self, run: RunView) -> None:
        """Once every hook has started: the first records may be logged here."""

    def on_record(self, run: RunView, record: Record) -> None:
        """For every record the run logs (``record["type"]`` is ``"train"`` or ``"eval"``)."""

    def on_progress(self, run: RunView, phase: str, done: int, total: int) -> None:
        """After each batch generated: ``done`` of ``total`` ``phase`` units so far.

        ``phase`` is ``"members"`` (an iteration's members evaluated) or ``"held-out"``
        (a held-out evaluation's prompts, samples included). A run on Ray workers
        reports its held-out evaluations only (its members generate elsewhere).
        """

    def after_iteration(self, run: RunView, record: Record) -> None:
        """After an iteration, with its train record, when :meth:`due`."""

    def on_end(self, run: RunView) -> None:
        """After the last iteration, when the loop ended without an error."""

    def close(self, run: RunView) -> None:
        """Always, last: release files and connections."""


class CallbackHook(Hook):
    """A plain function of each iteration's train record; returning True stops the run."""

    def __init__(self, function: Callable[[Record], Any], every: int = 1) -> None:
        self.function = function
        self.every = every

    def after_iteration(self, run: RunView, record: Record) -> None:
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
    ``eval_every_samples`` more sample evaluations are spent, and at the end.

    With ``eval_kl`` it also holds the base model that KL is measured from,
    loaded by ``load_reference()`` when the loop starts (its loading is no
    evaluation's time).
    """

    def __init__(
        self, settings: EvaluationSection, load_reference: Callable[[], Any] | None = None
    ) -> None:
        self.settings = settings
        self.every = settings.eval_every
        self.every_samples = settings.eval_every_samples
        self.load_reference = load_reference
        self.reference: Any = None
        self._samples_before = 0

    def on_start(self, run: RunView) -> None:
        self._samples_before = run.samples
        if self.settings.eval_kl and self.reference is None:
            self.reference = self.load_reference()

    def evaluate(self, run: RunView) -> Record:
        """Held-out metrics of the current model, as an eval record (``time``: training only)."""
        start = time.perf_counter()
        settings, parts = self.settings, run.parts
        prompts = len(parts.eval_examples) * (1 + settings.eval_samples)
        prompts += len(parts.probe.examples) if parts.probe is not None else 0
        with run.reporting("held-out", prompts, 1):
            metrics, _ = evaluate_heldout(
                parts.generator,
                parts.task,
                parts.eval_examples,
                samples=settings.eval_samples,
                temperature=settings.eval_temperature,
                seed=run.config.loop.seed * 1_000_003 + run.iteration,  # resumes draw the same
                reference=self.reference,
                scorer=parts.scorer,
            )
            probed = self._probe(parts)
        change = relative_weight_change(parts.model, parts.space, self._base_tensors(run))
        return {
            "type": "eval",
            "iteration": run.iteration,
            "split": "eval",
            **metrics,
            **probed,
            "weight_change": change,
            "time": run.elapsed,
            "eval_seconds": time.perf_counter() - start,
            "samples": run.samples,
        }

    def _base_tensors(self, run: RunView) -> BaseTensors | None:
        from .models.aliases import resolve_alias

        name = run.config.model.name or ""
        source = None if name.startswith("python:") else resolve_alias(name)
        return base_tensors(source, self.reference)

    @staticmethod
    def _probe(parts: Any) -> dict[str, float]:
        """The probe task's metrics (``probe_*``), greedy, ended at its own stop strings."""
        probe = parts.probe
        if probe is None:
            return {}
        with parts.generator.stopping_at(probe.task.stop):
            metrics, _ = evaluate_task(parts.generator, probe.task, probe.examples, probe.scorer)
        return {f"probe_{name}": value for name, value in metrics.items()}

    def after_start(self, run: RunView) -> None:
        if run.iteration == 0:
            run.log(self.evaluate(run))

    def due(self, run: RunView) -> bool:
        before, self._samples_before = self._samples_before, run.samples
        period = self.every_samples
        crossed = period is not None and run.samples // period > before // period
        return crossed or super().due(run)

    def after_iteration(self, run: RunView, record: Record) -> None:
        run.log(self.evaluate(run))

    def on_end(self, run: RunView) -> None:
        if run.evaluated_at != run.iteration:
            run.log(self.evaluate(run))


class Checkpointing(Hook):
    """Writes the run's checkpoint every ``every`` iterations and after the last one.

    The one home of the checkpoint: what it holds (:meth:`state`: the loop's
    counters and the search's state), how it is written (with a snapshot of
    the growing states every ``snapshot_every`` iterations) and read back
    (:meth:`restore`). Between checkpoints it keeps the finished iteration's
    state in memory, which Ctrl-C writes (:meth:`save_unsaved`). The last
    checkpoint precedes the closing evaluation, so a run resumed from it to
    more iterations logs exactly what an uninterrupted run would.
    """

    def __init__(self, rundir: RunDir, every: int, snapshot_every: int) -> None:
        self.rundir = rundir
        self.every = every
        self.snapshot_every = snapshot_every
        self.saved_iteration: int | None = None  # the iteration of the folder's checkpoint
        self._snapshot: str | None = None  # the snapshot the checkpoint names, if any
        self._snapshot_iteration = 0
        self._unsaved: dict[str, Any] | None = None  # a finished iteration's state, unsaved

    @staticmethod
    def state(run: RunView) -> dict[str, Any]:
        """What a checkpoint holds: the loop's counters, the strategy's and the space's state."""
        return {
            "iteration": run.iteration,
            "elapsed": run.elapsed,
            "samples": run.samples,
            "metrics_lines": run.logged_lines,
            **run.parts.state_dict(),
        }

    def restore(self, run: RunView, state: dict[str, Any]) -> None:
        """Moves ``run`` to a checkpoint's state (see :meth:`state`).

        A checkpoint that names a snapshot (``state["snapshot"]``, a file of the
        run folder) loads the growing states from it and replays only what
        came after it.
        """
        name = state.get("snapshot")
        if name is None:
            run.parts.load_state_dict(state)
        else:
            with self.rundir.open_snapshot(name) as snapshot:
                run.parts.load_state_dict(state, snapshot)
            self._snapshot, self._snapshot_iteration = name, int(state["snapshot_iteration"])
        run.iteration = int(state["iteration"])
        run.elapsed = float(state["elapsed"])
        run.samples = int(state["samples"])
        run.logged_lines = int(state["metrics_lines"])
        self.saved_iteration = run.iteration

    def due(self, run: RunView) -> bool:
        return True

    def after_iteration(self, run: RunView, record: Record) -> None:
        if run.finished() or run.stop_requested is not None or super().due(run):
            self.save(run, self.state(run))
        else:
            self._unsaved = self.state(run)

    def save_unsaved(self, run: RunView) -> None:
        """Writes the kept state of the last finished iteration, if not written yet (Ctrl-C).

        No snapshot: the weights may be mid-move.
        """
        if self._unsaved is not None:
            self.save(run, self._unsaved, snapshot=False)

    def save(self, run: RunView, state: dict[str, Any], snapshot: bool = True) -> None:
        """Writes ``state``'s checkpoint, with a snapshot when one is due.

        A snapshot is due ``snapshot_every`` iterations after the last one,
        for the components whose state grows (:meth:`Parametrization.snapshot`);
        it is written before the checkpoint that names it, and the one before
        it is deleted after, so a kill at any point leaves a checkpoint whose
        snapshot exists.
        """
        state = dict(state)
        since = run.iteration - self._snapshot_iteration
        if snapshot and since >= self.snapshot_every:
            tensors = run.parts.snapshot_tensors()
            if tensors:
                self._snapshot = self.rundir.save_snapshot(run.iteration, tensors)
                self._snapshot_iteration = run.iteration
        state["snapshot"], state["snapshot_iteration"] = self._snapshot, self._snapshot_iteration
        self.rundir.save_checkpoint(state)
        self.rundir.prune_snapshots(self._snapshot)
        self._unsaved, self.saved_iteration = None, int(state["iteration"])


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

    def on_start(self, run: RunView) -> None:
        if run.logged_lines == 0:  # a new run (or one started over): nothing is best yet
            run.rundir.forget_best()
        elif (chosen := run.rundir.read_best()) is not None:
            self.best = float(chosen["value"])

    def on_record(self, run: RunView, record: Record) -> None:
        if record["type"] != "eval":
            return
        metric = main_metric(record)
        value = record.get(metric)
        if value is None or value != value or (self.best is not None and value <= self.best):
            return
        self.best = float(value)
        chosen = {"iteration": record["iteration"], "metric": metric, "value": self.best}
        run.rundir.replace_best(run.save_final, chosen)
