"""The loop over a built run: iterations, counters, hooks.

:class:`Experiment` runs the loop over the parts that
:func:`zo_llm.assembly.build_run` assembles (model, task, space, strategy,
generator, evaluator) and never branches on which ones they are; everything
around an iteration (logs, held-out evaluation, best model, checkpoints) is a
hook (:mod:`zo_llm.hooks`).

Reproducibility: member seeds come from (run seed, generation, member) and the
prompt minibatch of iteration i from (run seed, i), so a checkpoint needs only
the strategy's counters and the parametrization's update history; a resumed
run computes the same numbers as one that never stopped.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .assembly import (
    Run,
    build_run,
    layer_of_objects,
    load_base,
    refuse_options_of_objects,
    with_objects,
)
from .config import RESUMABLE, RunConfig, flatten, resolve
from .errors import RewardsFailed, RunInterrupted, TrainingDiverged, signals_interrupt
from .evaluation.scores import Scores
from .hooks import BestModel, Checkpointing, HeldoutEvaluation, Hook, Record, as_hook
from .iteration import run_iteration
from .lazy import torch
from .logging import MetricsFile, ProgressBar, TensorBoard, Wandb
from .memory import peak_memory_mb
from .rundir import RunDir

__all__ = ["Experiment", "resume", "train"]

HookLike = Hook | Callable[[Record], Any]


def _part(name: str) -> property:
    return property(
        lambda self: getattr(self.parts, name), doc=f"The run's ``{name}`` (:class:`Run`)."
    )


class Experiment:
    """One training run: the loop over a built :class:`~zo_llm.assembly.Run`, and its folder.

    Components are built from the config's names, or passed in as objects (a
    user's own :class:`~zo_llm.tasks.base.Task`, say); ``model``/``tokenizer``
    may be passed to reuse an already-loaded model. ``hooks`` are added after
    the built-in ones (logs, held-out evaluation) and before the checkpoint.
    """

    model = _part("model")
    tokenizer = _part("tokenizer")
    task = _part("task")
    space = _part("space")
    strategy = _part("strategy")
    generator = _part("generator")
    evaluator = _part("evaluator")
    train_examples = _part("train_examples")
    eval_examples = _part("eval_examples")

    def __init__(
        self,
        config: RunConfig | None = None,
        *,
        model: Any = None,
        tokenizer: Any = None,
        task: Any = None,
        space: Any = None,
        hooks: Iterable[HookLike] = (),
    ) -> None:
        config = with_objects(config or RunConfig(), model=model, task=task, space=space)
        self.config = config
        self.parts: Run = build_run(
            config, model=model, tokenizer=tokenizer, task=task, space=space
        )
        self.rundir = RunDir(config.output.out) if config.output.out else None
        output = config.output
        self.checkpoints = (
            Checkpointing(self.rundir, output.checkpoint_every, output.snapshot_every)
            if self.rundir is not None
            else None
        )
        self.hooks = self._default_hooks(hooks)
        self.iteration = 0
        self.elapsed = 0.0
        self.samples = 0  # sample evaluations so far: members x prompts
        self.logged_lines = 0  # records in metrics.jsonl
        self.evaluated_at: int | None = None
        self.stop_requested: str | None = None
        self.records: list[Record] = []
        self._resumed = False

    def _default_hooks(self, extra: Iterable[HookLike]) -> list[Hook]:
        config = self.config
        hooks: list[Hook] = []
        if self.rundir is not None:
            hooks.append(MetricsFile())
            if config.output.tensorboard:
                hooks.append(TensorBoard())
            if config.output.wandb_project:
                hooks.append(Wandb(config.output.wandb_project))
        if config.output.progress:
            hooks.append(ProgressBar())
        hooks.append(HeldoutEvaluation(config.evaluation, self._load_reference))
        hooks.extend(as_hook(hook) for hook in extra)
        if self.checkpoints is not None:
            hooks.append(BestModel())
            hooks.append(self.checkpoints)
        return hooks

    def describe(self) -> str:
        """One line on what the run does: model, space and its size, strategy, evaluation."""
        config = self.config
        parameters = sum(p.numel() for p in self.model.parameters())
        threads = torch.get_num_threads()
        dtype = config.model.dtype
        if config.model.quantize:
            dtype = f"{config.model.quantize} base, {dtype} activations and adapter"
        return (
            f"{config.model.name} ({parameters / 1e6:,.1f}M parameters, {self.model.device}, "
            f"{dtype}, {threads} thread{'s' if threads > 1 else ''}): space "
            f"{config.space.name} of {self.space.dim:,} numbers; {config.strategy.name} with "
            f"{self.strategy.evaluations_per_iteration()} members per iteration, "
            f"{self.evaluator.describe()}; {config.loop.batch_size} prompts x "
            f"{config.model.max_new_tokens} new tokens per member"
        )

    def show_first_prompt(self) -> str:
        """The first training prompt as the model sees it, and where its completions stop.

        Printed at the start of a run: a few-shot prompt wrapped in a chat template,
        or a template the model was not trained with, shows here at once.
        """
        text, chat = self.generator.render(self.task.prompt(self.train_examples[0]))
        how = "through the tokenizer's chat template" if chat else "as plain text, no chat template"
        stops = ", ".join(repr(stop) for stop in self.generator.stop) or "none"
        lines = "\n".join(f"  | {line}" for line in text.split("\n"))
        return f"first prompt, {how} (stop strings: {stops}):\n{lines}"

    # --- the loop -------------------------------------------------------

    def minibatch(self, iteration: int) -> list[dict[str, Any]]:
        """The training prompts of ``iteration``: a function of (seed, iteration) only."""
        rng = np.random.default_rng([self.config.loop.seed, iteration])
        picks = rng.choice(len(self.train_examples), self.config.loop.batch_size, replace=False)
        return [self.train_examples[i] for i in picks]

    def step(self) -> Record:
        """Runs one iteration (all its ask/tell rounds) and returns its train record."""
        start = time.perf_counter()
        examples = self.minibatch(self.iteration)
        members = self.strategy.evaluations_per_iteration()
        counted = self.generator.counts()

        def evaluate(candidates: Sequence[Any]) -> Scores:
            scores = self.evaluator.evaluate(candidates, examples)
            what = f"iteration {self.iteration + 1}'s members"
            self.parts.scorer.all_failed(scores.failures, scores.per_prompt.size, what)
            return scores

        try:
            with self.reporting("members", members, len(examples)):
                result = run_iteration(self.strategy, evaluate)
        except OverflowError as error:  # a step beyond fp32 (see update_pairs)
            raise TrainingDiverged(self.iteration + 1, [str(error)], self.out) from None
        broken = self.space.nonfinite()
        if broken:
            raise TrainingDiverged(self.iteration + 1, broken, self.out)
        self.samples += result.evaluations * len(examples)
        self.iteration += 1
        seconds = time.perf_counter() - start
        self.elapsed += seconds
        return {
            "type": "train",
            "iteration": self.iteration,
            **result.summary(),
            "invalid_members": result.invalid,
            "reward_failures": result.failures,
            "iteration_seconds": seconds,
            "time": self.elapsed,
            "samples": self.samples,
            "peak_memory_mb": peak_memory_mb(self.model.device),
            **self._work_since(counted),
            **self.evaluator.take_counters(),
        }

    def _work_since(self, counted: dict[str, int | None]) -> dict[str, int | None]:
        """The iteration's generated tokens and forward passes (none backward: no gradients);
        where members run in worker processes this process does not see them (left out)."""
        if self.evaluator.wrapper:
            return {}
        now = self.generator.counts()
        work = {k: None if v is None else v - counted[k] for k, v in now.items()}
        return {**work, "backward_passes": 0}

    @contextlib.contextmanager
    def reporting(self, phase: str, total: int, rows_per_unit: int) -> Iterator[None]:
        """Tells the hooks how far ``phase`` is after each generated batch (``total`` units)."""
        rows = 0

        def count(batch_rows: int) -> None:
            nonlocal rows
            rows += batch_rows
            for hook in self.hooks:
                hook.on_progress(self, phase, min(rows // rows_per_unit, total), total)

        with self.generator.reporting(count):
            yield

    def log(self, record: Record) -> None:
        """Hands a record to every hook (the logs among them) and keeps it in :attr:`records`."""
        self.records.append(record)
        self.logged_lines += 1
        if record["type"] == "eval":
            self.evaluated_at = record["iteration"]
        for hook in self.hooks:
            hook.on_record(self, record)

    def request_stop(self, reason: str) -> None:
        """Ends the run after the current iteration (checkpointed): early stopping, say."""
        self.stop_requested = reason

    def finished(self) -> bool:
        """Whether the run has reached its iterations, or spent its sample budget."""
        budget = self.config.loop.max_samples
        spent = budget is not None and self.samples >= budget
        return spent or self.iteration >= self.config.loop.iterations

    def run(self) -> list[Record]:
        """Trains up to ``loop.iterations`` and returns the records logged by this call.

        A new run refuses a folder that holds a checkpoint (resume it instead);
        a folder whose run never finished an iteration is reused. Ctrl-C or
        SIGTERM abandons the iteration in progress, keeps the checkpoint of the
        last finished one and raises :class:`RunInterrupted`.
        """
        if self.rundir is not None:
            if not self._resumed and self.rundir.has_checkpoint():
                raise FileExistsError(
                    f"{self.rundir.path} already holds a run; resume it "
                    f"(--resume {self.rundir.path}) or choose another --out"
                )
            self.rundir.clean_stale()
            self.rundir.write_config(self.config, self.generator.versions())
        self.records = []
        self.stop_requested = None
        try:
            with signals_interrupt():
                self._loop()
        except KeyboardInterrupt as interrupt:
            raise self._interrupted(interrupt) from None
        except RewardsFailed as failed:
            raise self._stopped(failed) from None
        finally:
            self.parts.close()
            for hook in self.hooks:
                hook.close(self)
        if self.rundir is not None:
            self.save_final(self.rundir.final)
        return self.records

    def _loop(self) -> None:
        for hook in self.hooks:
            hook.on_start(self)
        for hook in self.hooks:
            hook.after_start(self)
        while not self.finished() and self.stop_requested is None:
            record = self.step()
            self.log(record)
            for hook in self.hooks:
                if hook.due(self):
                    hook.after_iteration(self, record)
        for hook in self.hooks:
            hook.on_end(self)

    def _interrupted(self, interrupt: KeyboardInterrupt) -> RunInterrupted:
        """Saves the last finished iteration if its checkpoint was not written yet."""
        saved = None
        if self.checkpoints is not None:
            self.checkpoints.save_unsaved(self)
            saved = self.checkpoints.saved_iteration
        signum = getattr(interrupt, "signum", signal.SIGINT)
        return RunInterrupted(signum, saved, self.out)

    def _stopped(self, failed: RewardsFailed) -> RewardsFailed:
        """``failed``, saying which checkpoint is kept and how to continue."""
        if self.checkpoints is None:
            return failed
        self.checkpoints.save_unsaved(self)
        saved = self.checkpoints.saved_iteration
        kept = "no iteration finished" if saved is None else f"checkpoint of iteration {saved} kept"
        return RewardsFailed(
            f"{failed}. The run stopped ({kept}); once the reward works, continue with: "
            f"zo-llm train --resume {self.out}"
        )

    def restore(self, state: dict[str, Any] | None) -> None:
        """Continues the folder's run from its checkpoint ``state`` (None: starts it over);
        the next :meth:`run` appends to the kept records."""
        self._resumed = True
        if state is not None:
            self.checkpoints.restore(self, state)
        kept = [r for r in self.rundir.metrics(self.logged_lines) if r["type"] == "eval"]
        self.evaluated_at = kept[-1]["iteration"] if kept else None

    def save_final(self, path: Path) -> None:
        """The trained model as a ``save_pretrained`` folder, tokenizer included."""
        self.space.save_pretrained(path)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(str(path))

    @property
    def out(self) -> Path | None:
        """The run folder, if the run writes one."""
        return self.rundir.path if self.rundir is not None else None

    def _load_reference(self) -> Any:
        """The base model, loaded again by name, for ``eval_kl``."""
        name = self.config.model.name
        if name is None or name.startswith("python:"):
            raise ValueError(
                "eval_kl compares with the base model loaded again by name; give --model "
                "(an alias, hub id or folder) rather than a model object"
            )
        return load_base(self.config)[0]


def train(
    config: RunConfig | None = None, *, hooks: Iterable[HookLike] = (), **settings: Any
) -> Experiment:
    """Trains from a config and/or flat settings and returns the finished :class:`Experiment`.

    Settings are the run config's flat names (``iterations``, ``batch_size``,
    ``strategy_options`` ...; see :mod:`zo_llm.config`), over ``config`` if
    given. Objects can stand in for names: ``task=MyTask()``,
    ``space=FullWeights(...)``, ``model=<loaded model>`` with ``tokenizer=``.
    ``hooks`` are functions of each iteration's record or :class:`Hook` objects.

    Example::

        exp = zo_llm.train(model="path/to/model", task="countdown", iterations=20,
                           strategy_options={"population": 16}, out="runs/cd")
    """
    objects = {k: settings.pop(k) for k in ("task", "space") if not _is_name(settings.get(k))}
    for key in ("model", "tokenizer"):
        if key in settings and not _is_name(settings[key]):
            objects[key] = settings.pop(key)
    refuse_options_of_objects(objects, settings)
    base = config.to_dict() if config is not None else None
    resolved = resolve(base, layer_of_objects(objects), settings)
    experiment = Experiment(resolved, hooks=hooks, **objects)
    experiment.run()
    return experiment


def _is_name(value: Any) -> bool:
    return value is None or isinstance(value, (str, Path))


#: Objects a resumed run may be given again (those of a run that used unregistered ones).
RESUME_OBJECTS = ("model", "tokenizer", "task", "space")


def resume(
    run_dir: str | Path,
    iterations: int | None = None,
    *,
    hooks: Iterable[HookLike] = (),
    **given: Any,
) -> Experiment:
    """Continues the run in ``run_dir`` from its last checkpoint, up to ``iterations`` in total.

    The saved config is used as it was, so the continuation computes the same
    numbers as a run that never stopped; ``given`` may change only the settings
    that change no number (:data:`zo_llm.config.RESUMABLE`: ``progress=``,
    ``threads=``, ``workers=``...) and pass components again
    (:data:`RESUME_OBJECTS`: ``model=``, ``task=``...), needed when the run used
    objects that are not registered by name.
    """
    refused = sorted(set(given) - set(RESUMABLE) - set(RESUME_OBJECTS))
    if refused:
        raise ValueError(
            f"resume cannot change {', '.join(refused)}: it continues the run with its saved "
            f"config; it may change {', '.join(RESUMABLE)} and take {', '.join(RESUME_OBJECTS)}"
        )
    objects = {key: value for key, value in given.items() if key in RESUME_OBJECTS}
    rundir = RunDir(run_dir)
    saved = rundir.read_config()
    state = rundir.load_checkpoint() if rundir.has_checkpoint() else None  # None: starts over
    done = int(state["iteration"]) if state is not None else 0
    if iterations is not None and iterations < done:
        raise ValueError(
            f"{run_dir} is at iteration {done}; --iterations {iterations} would not continue it "
            f"(give {done} or more)"
        )
    changes = {key: value for key, value in given.items() if key in RESUMABLE}
    if iterations is not None:
        changes["iterations"] = iterations
    config = resolve(saved, layer_of_objects(objects), changes, {"out": str(run_dir)})
    experiment = Experiment(config, hooks=hooks, **objects)
    experiment.restore(state)
    experiment.run()
    return experiment


def load_run_config(run_dir: str | Path) -> dict[str, Any]:
    """The settings saved in a run folder under their flat names (``iterations``, ...)."""
    return flatten(RunDir(run_dir).read_config())
