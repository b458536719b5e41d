"""The generic loop: one strategy, one parametrization, one task, one evaluator, and hooks.

The runner composes components chosen by registry name (or passed as
objects) and never branches on which ones they are. Everything is checked
before the model loads: the run config (names, options, pairing, evaluator)
when it is built, then the task's data, then the space's size from the model's
shapes where a strategy has a size limit.

Reproducibility: member seeds come from (run seed, generation, member) and the
prompt minibatch of iteration i from (run seed, i), so a checkpoint needs only
the strategy's counters and the parametrization's update history; a resumed
run computes the same numbers as one that never stopped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .components import build_space, build_strategy, build_task, component_name, object_name
from .config import SHORTCUTS, RunConfig, flatten, resolve
from .evaluation import choose_evaluator, evaluate_heldout
from .evaluation.rewards import RewardScorer
from .hooks import BestModel, Checkpointing, HeldoutEvaluation, Hook, Record, as_hook
from .iteration import run_iteration
from .logging import MetricsFile, ProgressBar, TensorBoard, Wandb
from .memory import peak_memory_mb
from .models.generation import TextGenerator, render_prompt, stop_strings
from .models.loading import load_model
from .models.quantize import holds_quantized, quantize_base
from .preflight import check_space_size
from .rundir import RunDir

HookLike = Hook | Callable[[Record], Any]


class Experiment:
    """One training run: a model, a task, a parametrization, a strategy and a run folder.

    Components are built from the config's names, or passed in as objects (a
    user's own :class:`~zo_llm.tasks.base.Task`, say); ``model``/``tokenizer``
    may be passed to reuse an already-loaded model. ``hooks`` are added after
    the built-in ones (logs, held-out evaluation) and before the checkpoint.
    """

    def __init__(
        self,
        config: RunConfig | None = None,
        *,
        model: torch.nn.Module | None = None,
        tokenizer: Any = None,
        task: Any = None,
        space: Any = None,
        hooks: Iterable[HookLike] = (),
    ) -> None:
        config = with_objects(config or RunConfig(), model=model, task=task, space=space)
        _check_workers_get_names(config)
        self.config = config
        self.task = task if task is not None else build_task(config.task.name, config.task.options)
        self.train_examples = list(self.task.examples("train"))
        self.eval_examples = list(self.task.examples("eval"))
        if config.loop.batch_size > len(self.train_examples):
            raise ValueError(
                f"batch_size={config.loop.batch_size} exceeds the {len(self.train_examples)} "
                "training examples of the task; lower --batch-size or give the task more data"
            )
        self.space = (
            space if space is not None else build_space(config.space.name, config.space.options)
        )
        check_space_size(config, self.space, model)  # before loading: from the model's shapes
        if config.model.threads:
            torch.set_num_threads(config.model.threads)
        if model is None:
            model, tokenizer = _load(config.model.name, config)
        elif config.model.quantize and not holds_quantized(model):
            quantize_base(model, config.model.quantize)  # a passed model, in place, as a loaded one
        self.model, self.tokenizer = model, tokenizer
        self.space.bind(self.model)  # first: a strategy checks the bound space's size
        self.strategy = build_strategy(
            config.strategy.name, self.space, config.strategy.options, seed=config.loop.seed
        )
        evaluator_class = choose_evaluator(config.loop.evaluator, type(self.space))
        device = self.model.device
        rows = config.model.generation_batch_size or evaluator_class.default_rows(device)
        max_new_tokens = config.model.max_new_tokens
        stop = stop_strings(config.model.stop, self.task)
        self.generator = TextGenerator(self.model, self.tokenizer, max_new_tokens, rows, stop=stop)
        self.scorer = RewardScorer(self.task, config.loop.reward_timeout or None)
        self.evaluator = evaluator_class(
            self.space, self.generator, self.task, self.scorer, config.loop.fitness
        )
        if config.loop.workers > 1 or config.loop.ray_address:
            from .evaluation.distributed import RayEvaluator

            self.evaluator = RayEvaluator(self.evaluator, config, self.state_dict)
        self.rundir = RunDir(config.output.out) if config.output.out else None
        self.hooks = self._default_hooks(hooks)
        self.iteration = 0
        self.elapsed = 0.0
        self.samples = 0  # sample evaluations so far: members x prompts
        self.logged_lines = 0  # records in metrics.jsonl
        self.evaluated_at: int | None = None
        self.stop_requested: str | None = None
        self.records: list[Record] = []
        self._resumed = False
        self._snapshot: str | None = None  # the snapshot the checkpoint names, if any
        self._snapshot_iteration = 0
        self._unsaved: dict[str, Any] | None = None  # the state of a finished, unsaved iteration
        self._checkpointed: int | None = None  # the iteration of the folder's checkpoint
        # the base model for eval_kl, loaded now: its loading is no evaluation's time
        self._reference = self._load_reference() if config.evaluation.eval_kl else None

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
        evaluation = config.evaluation
        hooks.append(HeldoutEvaluation(evaluation.eval_every, evaluation.eval_every_samples))
        hooks.extend(as_hook(hook) for hook in extra)
        if self.rundir is not None:
            hooks.append(BestModel())
            hooks.append(Checkpointing(config.output.checkpoint_every))
        return hooks

    def describe(self) -> str:
        """One line on what the run does: model, space and its size, strategy, evaluation."""
        config = self.config
        evaluator = getattr(self.evaluator, "inner", self.evaluator)
        where = f" on {config.loop.workers} Ray workers" if evaluator is not self.evaluator else ""
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
            f"{evaluator.name} evaluation{where}; {config.loop.batch_size} prompts x "
            f"{config.model.max_new_tokens} new tokens per member"
        )

    def show_first_prompt(self) -> str:
        """The first training prompt as the model sees it, and where its completions stop.

        Printed at the start of a run: a few-shot prompt wrapped in a chat template,
        or a template the model was not trained with, shows here at once.
        """
        text, chat = render_prompt(self.tokenizer, self.task.prompt(self.train_examples[0]))
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
        encoded = self.generator.encode([self.task.prompt(e) for e in examples])
        sent = getattr(self.evaluator, "bytes_sent", None)  # to Ray workers, so far
        members = self.strategy.evaluations_per_iteration()
        try:
            with self._reporting("members", members, len(examples)):
                result = run_iteration(
                    self.strategy,
                    lambda candidates: self.evaluator.evaluate(candidates, examples, encoded),
                )
        except OverflowError as error:  # a step beyond fp32 (see update_pairs)
            raise TrainingDiverged(self.iteration + 1, [str(error)], self.out) from None
        broken = self.space.nonfinite()
        if broken:
            raise TrainingDiverged(self.iteration + 1, broken, self.out)
        self.samples += result.evaluations * len(examples)
        self.iteration += 1
        seconds = time.perf_counter() - start
        self.elapsed += seconds
        record = {
            "type": "train",
            "iteration": self.iteration,
            **result.summary(),
            "invalid_members": result.invalid,
            "reward_failures": result.failures,
            "iteration_seconds": seconds,
            "time": self.elapsed,
            "samples": self.samples,
            "peak_memory_mb": peak_memory_mb(self.model.device),
        }
        if sent is not None:
            record["worker_bytes"] = self.evaluator.bytes_sent - sent
        return record

    def evaluate(self) -> Record:
        """Held-out metrics of the current model, as an eval record (``time``: training only)."""
        start = time.perf_counter()
        evaluation = self.config.evaluation
        prompts = len(self.eval_examples) * (1 + evaluation.eval_samples)
        with self._reporting("held-out", prompts, 1):
            metrics, _ = evaluate_heldout(
                self.generator,
                self.task,
                self.eval_examples,
                samples=evaluation.eval_samples,
                temperature=evaluation.eval_temperature,
                seed=self.config.loop.seed * 1_000_003 + self.iteration,  # resumes draw the same
                reference=self._reference,
                scorer=self.scorer,
            )
        return {
            "type": "eval",
            "iteration": self.iteration,
            "split": "eval",
            **metrics,
            "time": self.elapsed,
            "eval_seconds": time.perf_counter() - start,
            "samples": self.samples,
        }

    @contextlib.contextmanager
    def _reporting(self, phase: str, total: int, rows_per_unit: int) -> Iterator[None]:
        """Tells the hooks how far ``phase`` is after each generated batch (``total`` units)."""
        rows = 0

        def count(batch_rows: int) -> None:
            nonlocal rows
            rows += batch_rows
            for hook in self.hooks:
                hook.on_progress(self, phase, min(rows // rows_per_unit, total), total)

        self.generator.on_batch = count
        try:
            yield
        finally:
            self.generator.on_batch = None

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
            self.rundir.write_config(self.config)
        self.records = []
        self.stop_requested = None
        try:
            with _signals_interrupt():
                self._loop()
        except KeyboardInterrupt as interrupt:
            raise self._interrupted(interrupt) from None
        finally:
            self.evaluator.close()
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
        if self.rundir is not None and self._unsaved is not None:
            self.save_checkpoint(self._unsaved, snapshot=False)  # the weights may be mid-move
        signum = getattr(interrupt, "signum", signal.SIGINT)
        return RunInterrupted(signum, self._checkpointed, self.out)

    # --- state ----------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint holds: the counters, the strategy's and the space's state."""
        return {
            "iteration": self.iteration,
            "elapsed": self.elapsed,
            "samples": self.samples,
            "metrics_lines": self.logged_lines,
            "strategy": self.strategy.state_dict(),
            "space": self.space.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continues from a checkpoint: the next :meth:`run` appends to the kept records.

        A checkpoint that names a snapshot (``state["snapshot"]``, a file of the
        run folder) loads the growing states from it and replays only what
        came after it.
        """
        name = state.get("snapshot")
        if name is None:
            self.strategy.load_state_dict(state["strategy"])
            self.space.load_state_dict(state["space"])
        else:
            with self.rundir.open_snapshot(name) as snapshot:
                for component, key in ((self.strategy, "strategy"), (self.space, "space")):
                    part = snapshot.part(key)
                    if part is None:
                        component.load_state_dict(state[key])
                    else:
                        component.load_state_dict(state[key], part)
            self._snapshot, self._snapshot_iteration = name, int(state["snapshot_iteration"])
        self.iteration = int(state["iteration"])
        self.elapsed = float(state["elapsed"])
        self.samples = int(state["samples"])
        self.logged_lines = int(state["metrics_lines"])
        self._checkpointed = self.iteration
        self._resumed = True

    def keep_state(self) -> None:
        """Holds the state of the iteration just finished, for a checkpoint written on Ctrl-C."""
        self._unsaved = self.state_dict()

    def save_checkpoint(self, state: dict[str, Any] | None = None, snapshot: bool = True) -> None:
        """Writes the checkpoint (of now, or ``state``), with a snapshot when one is due.

        A snapshot is due ``output.snapshot_every`` iterations after the last
        one, for the components whose state grows (:meth:`Parametrization.snapshot`);
        it is written before the checkpoint that names it, and the one before
        it is deleted after, so a kill at any point leaves a checkpoint whose
        snapshot exists.
        """
        state = dict(state if state is not None else self.state_dict())
        since = self.iteration - self._snapshot_iteration
        if snapshot and since >= self.config.output.snapshot_every:
            tensors = self._snapshot_tensors()
            if tensors:
                self._snapshot = self.rundir.save_snapshot(self.iteration, tensors)
                self._snapshot_iteration = self.iteration
        state["snapshot"], state["snapshot_iteration"] = self._snapshot, self._snapshot_iteration
        self.rundir.save_checkpoint(state)
        self.rundir.prune_snapshots(self._snapshot)
        self._unsaved, self._checkpointed = None, int(state["iteration"])

    def _snapshot_tensors(self) -> dict[str, torch.Tensor]:
        tensors = {}
        for component, key in ((self.strategy, "strategy"), (self.space, "space")):
            for name, tensor in (component.snapshot() or {}).items():
                tensors[f"{key}.{name}"] = tensor
        return tensors

    def save_final(self, path: Path) -> None:
        """The trained model as a ``save_pretrained`` folder, tokenizer included."""
        self.space.save_pretrained(path)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(str(path))

    @property
    def out(self) -> Path | None:
        """The run folder, if the run writes one."""
        return self.rundir.path if self.rundir is not None else None

    def _load_reference(self) -> torch.nn.Module:
        """The base model, loaded again by name, for ``eval_kl``."""
        name = self.config.model.name
        if name is None or name.startswith("python:"):
            raise ValueError(
                "eval_kl compares with the base model loaded again by name; give --model "
                "(an alias, hub id or folder) rather than a model object"
            )
        return _load(name, self.config)[0]


def _load(name: str | None, config: RunConfig) -> tuple[torch.nn.Module, Any]:
    if name is None:
        raise ValueError("no model given: pass --model (a hub id or a local folder)")
    if name.startswith("python:"):
        raise ValueError(
            f"this run was given a model object ({name[7:]}), not a name; "
            "pass it again: resume(run, model=..., tokenizer=...)"
        )
    return load_model(name, config.model.dtype, config.model.device, config.model.quantize)


def with_objects(config: RunConfig, *, model: Any = None, task: Any = None, space: Any = None):
    """``config`` naming the objects passed instead of names, so the run records them.

    An object that a name cannot rebuild is recorded as ``python:Class``: its
    run resumes only when it is passed again.
    """
    changes: dict[str, Any] = {}
    if model is not None:
        changes["model"] = dataclasses.replace(config.model, name=object_name(model))
    for kind, component in (("task", task), ("space", space)):
        if component is not None:
            options = getattr(component, "config", None)
            section = type(getattr(config, kind))
            changes[kind] = section(name=component_name(kind, component), options=options)
    return dataclasses.replace(config, **changes) if changes else config


def _layer_of_objects(objects: dict[str, Any]) -> dict[str, Any]:
    """The names (and options) of passed objects as a settings layer."""
    layer: dict[str, Any] = {}
    if objects.get("model") is not None:
        layer["model"] = object_name(objects["model"])
    for kind in ("task", "space"):
        component = objects.get(kind)
        if component is not None:
            options = getattr(component, "config", None)
            fields = dataclasses.asdict(options) if dataclasses.is_dataclass(options) else {}
            layer[kind] = {"name": component_name(kind, component), **fields}
    return layer


def _refuse_options_of_objects(objects: dict[str, Any], settings: dict[str, Any]) -> None:
    """An object passed for a component brings its own options: settings cannot change them."""
    for kind in ("task", "space"):
        if objects.get(kind) is None:
            continue
        given = sorted(settings.get(f"{kind}_options") or {})
        given += [
            k for k, (section, _, _) in SHORTCUTS.items() if section == kind and k in settings
        ]
        if given:
            raise ValueError(
                f"{kind}= is an object with its own options; set {', '.join(given)} on the "
                f"object itself (e.g. its config), not as settings of the run"
            )


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
    _refuse_options_of_objects(objects, settings)
    base = config.to_dict() if config is not None else None
    resolved = resolve(base, _layer_of_objects(objects), settings)
    experiment = Experiment(resolved, hooks=hooks, **objects)
    experiment.run()
    return experiment


def _is_name(value: Any) -> bool:
    return value is None or isinstance(value, (str, Path))


def resume(
    run_dir: str | Path,
    iterations: int | None = None,
    *,
    progress: bool | None = None,
    threads: int | None = None,
    workers: int | None = None,
    ray_address: str | None = None,
    hooks: Iterable[HookLike] = (),
    **objects: Any,
) -> Experiment:
    """Continues the run in ``run_dir`` from its last checkpoint, up to ``iterations`` in total.

    The saved config is used as it was (only the total ``iterations``, the
    progress bar, the thread count and the Ray workers may change), so the continuation
    computes the same numbers as a run that never stopped. ``objects`` are
    components passed to :class:`Experiment` (``model=``, ``task=``...), needed
    when the run used objects that are not registered by name.
    """
    rundir = RunDir(run_dir)
    saved = rundir.read_config()
    state = rundir.load_checkpoint() if rundir.has_checkpoint() else None  # None: starts over
    done = int(state["iteration"]) if state is not None else 0
    if iterations is not None and iterations < done:
        raise ValueError(
            f"{run_dir} is at iteration {done}; --iterations {iterations} would not continue it "
            f"(give {done} or more)"
        )
    changes = {
        "iterations": iterations,
        "progress": progress,
        "threads": threads,
        "workers": workers,
        "ray_address": ray_address,
    }
    changes = {key: value for key, value in changes.items() if value is not None}
    config = resolve(saved, _layer_of_objects(objects), changes, {"out": str(run_dir)})
    experiment = Experiment(config, hooks=hooks, **objects)
    if state is None:
        experiment._resumed = True  # noqa: SLF001 - the folder is this run's, to start over in
    else:
        experiment.load_state_dict(state)
    kept = [r for r in rundir.metrics(experiment.logged_lines) if r["type"] == "eval"]
    experiment.evaluated_at = kept[-1]["iteration"] if kept else None
    experiment.run()
    return experiment


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


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Python is running, as Ctrl-C raises ``KeyboardInterrupt``."""

    signum = signal.SIGTERM


@contextlib.contextmanager
def _signals_interrupt() -> Iterator[None]:
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


def load_run_config(run_dir: str | Path) -> dict[str, Any]:
    """The settings saved in a run folder under their flat names (``iterations``, ...)."""
    return flatten(RunDir(run_dir).read_config())


def _check_workers_get_names(config: RunConfig) -> None:
    """Ray workers rebuild the run by name: objects passed from Python cannot reach them."""
    if config.loop.workers > 1 or config.loop.ray_address:
        objects = [
            f"{kind}={name[len('python:') :]}"
            for kind, name in (
                ("model", config.model.name or ""),
                ("task", config.task.name),
                ("space", config.space.name),
            )
            if name.startswith("python:")
        ]
        if objects:
            raise ValueError(
                f"workers={config.loop.workers} rebuild the run on each worker by name, but "
                f"{', '.join(objects)} was passed as an object; give its name (a model "
                "folder, a registered task or module:object) or use workers=1"
            )
        from .evaluation.distributed import check_address

        check_address(config.loop.ray_address)
