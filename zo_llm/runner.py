"""The generic loop: ask -> evaluate -> tell, with held-out evaluation, logs and checkpoints.

The runner composes one strategy, one parametrization and one task, chosen by
registry name or passed as objects, and never branches on which ones they are.

A run is a folder::

    run_config.json   the resolved config (names and every component's options)
    metrics.jsonl     one JSON object per iteration and per evaluation
    tensorboard/      the same numbers as TensorBoard events
    checkpoint.pt     the latest checkpoint, replaced atomically
    final/            the trained model, a save_pretrained folder with its tokenizer

Reproducibility: member seeds come from (run seed, generation, member) and the
prompt minibatch of iteration i from (run seed, i), so a checkpoint needs only
the strategy's counters and the parametrization's update history; a resumed
run computes the same numbers as one that never stopped.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import __version__
from .config import make_config
from .evaluation import SequentialEvaluator, evaluate_heldout
from .logging import RunLogger, read_metrics
from .memory import peak_memory_mb
from .models.generation import TextGenerator
from .models.loading import load_model
from .parametrizations.base import PARAMETRIZATIONS, Parametrization
from .strategies.base import STRATEGIES, Strategy
from .tasks.base import TASKS, Task
from .tasks.loading import BUILDERS as DATA_SUFFIXES

CONFIG_FILE = "run_config.json"
CHECKPOINT_FILE = "checkpoint.pt"
FINAL_DIR = "final"


@dataclass
class TrainConfig:
    """Everything a run needs; every field is a CLI flag and a TOML key."""

    model: str | None = field(
        default="zo-tiny",
        metadata={"help": "alias (zo-llm list), hub id, local model folder or .gguf file"},
    )
    strategy: str = field(default="es", metadata={"help": "strategy name (zo-llm list)"})
    space: str = field(default="full", metadata={"help": "parametrization name (zo-llm list)"})
    task: str = field(default="countdown-easy", metadata={"help": "task name (zo-llm list)"})
    strategy_options: dict[str, Any] = field(default_factory=dict)
    space_options: dict[str, Any] = field(default_factory=dict)
    task_options: dict[str, Any] = field(default_factory=dict)
    iterations: int = field(default=10, metadata={"help": "iterations in total"})
    max_samples: int | None = field(
        default=None,
        metadata={"help": "stop once this many sample evaluations (members x prompts) are spent"},
    )
    batch_size: int = field(default=16, metadata={"help": "training prompts per iteration"})
    max_new_tokens: int = field(default=64, metadata={"help": "tokens generated per prompt"})
    generation_batch_size: int = field(default=32, metadata={"help": "prompts per forward batch"})
    eval_every: int = field(
        default=2, metadata={"help": "held-out evaluation period (0: start/end)"}
    )
    eval_every_samples: int | None = field(
        default=None,
        metadata={"help": "also evaluate each time this many more sample evaluations are spent"},
    )
    eval_size: int | None = field(default=None, metadata={"help": "held-out examples (None: all)"})
    eval_samples: int = field(
        default=0,
        metadata={"help": "also score N sampled completions per held-out prompt (sampled_*)"},
    )
    eval_temperature: float = field(
        default=1.0, metadata={"help": "sampling temperature of --eval-samples"}
    )
    eval_kl: bool = field(
        default=False,
        metadata={
            "help": "also report KL(model || base model) per token on the held-out prompts "
            "(holds a second copy of the base model)"
        },
    )
    checkpoint_every: int = field(default=10, metadata={"help": "checkpoint period in iterations"})
    dtype: str = field(default="float32", metadata={"help": "float32, bfloat16 or float16"})
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda or cuda:N"})
    seed: int = field(default=0, metadata={"help": "seeds noise and minibatches"})
    threads: int | None = field(
        default=None, metadata={"help": "torch CPU threads (None: torch's)"}
    )
    out: str | None = field(
        default=None,
        metadata={"help": "run folder (created; the CLI picks runs/TASK-STRATEGY-TIME without it)"},
    )
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})
    tensorboard: bool = field(default=True, metadata={"help": "write TensorBoard events"})

    def __post_init__(self) -> None:
        for name in ("iterations", "batch_size", "max_new_tokens", "generation_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        for name in ("eval_every", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 0")
        if self.eval_every_samples is not None and self.eval_every_samples < 1:
            raise ValueError(f"eval_every_samples={self.eval_every_samples} must be >= 1")
        if self.max_samples is not None and self.max_samples < 1:
            raise ValueError(f"max_samples={self.max_samples} must be >= 1 (or None)")
        if self.eval_size is not None and self.eval_size < 1:
            raise ValueError(f"eval_size={self.eval_size} must be >= 1 (or None for all)")
        if self.eval_samples < 0:
            raise ValueError(f"eval_samples={self.eval_samples} must be >= 0 (0: greedy only)")
        if self.eval_temperature <= 0:
            raise ValueError(f"eval_temperature={self.eval_temperature} must be > 0")


def build_task(name: str, options: dict[str, Any] | None = None) -> Task:
    """A task by registry name, ``module:object`` (importable), or data file path.

    ``module:object`` names a :class:`Task` instance, a Task subclass (built
    from ``options``) or a factory called with ``options``; a path to a data
    file (or folder) is the ``file`` task with ``data=`` that path. Both record
    ``name`` as the task's ``source``, so a run's config rebuilds it on resume.
    """
    registered, options = task_reference(name, options)
    if registered is None:
        task = _import_task(name, options)
    else:
        cls = _lookup(TASKS, registered, "task")
        task = cls(make_config(cls.config_class, options, f"task {registered!r}"))
        if registered == name:
            return task
    task.source = name
    return task


def task_reference(name: str, options: dict[str, Any] | None) -> tuple[str | None, dict[str, Any]]:
    """What a task name refers to: ``(registry name, options)``, or ``(None, options)``.

    None means ``module:object``, imported only when the task is built; a data
    file or folder is the ``file`` task with ``data=`` that path.
    """
    options = dict(options or {})
    if ":" in name and not name.startswith("python:") and not Path(name).exists():
        return None, options
    if name not in TASKS and (Path(name).suffix in DATA_SUFFIXES or Path(name).is_dir()):
        return "file", {**options, "data": name}
    return name, options


def _import_task(spec: str, options: dict[str, Any]) -> Task:
    import importlib

    module_name, _, attribute = spec.partition(":")
    if os.getcwd() not in sys.path and "" not in sys.path:  # `zo-llm` scripts lack the cwd
        sys.path.append(os.getcwd())
    try:
        target = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise ValueError(
            f"task {spec!r}: cannot import {attribute!r} from {module_name!r}: {error}"
        ) from error
    if isinstance(target, Task):
        # a resumed run passes back the object's own (recorded) options: those are fine
        own = dataclasses.asdict(target.config) if dataclasses.is_dataclass(target.config) else {}
        changed = sorted(k for k, v in options.items() if own.get(k, object()) != v)
        if changed:
            raise ValueError(
                f"task {spec!r} is a Task object; its options cannot be set ({', '.join(changed)})"
            )
        return target
    if isinstance(target, type) and issubclass(target, Task):
        return target(make_config(target.config_class, options, f"task {spec!r}"))
    task = target(**options) if callable(target) else None
    if not isinstance(task, Task):
        raise ValueError(
            f"task {spec!r} is not a Task, a Task subclass, or a factory returning a Task"
        )
    return task


def build_space(name: str, options: dict[str, Any] | None = None) -> Parametrization:
    cls = _lookup(PARAMETRIZATIONS, name, "space")
    return cls(make_config(cls.config_class, options, f"parametrization {name!r}"))


def _lookup(registry: Any, name: str, argument: str) -> Any:
    if name.startswith("python:"):
        raise ValueError(
            f"this run used an unregistered {argument} object ({name[7:]}); pass it again "
            f"(resume(run, {argument}=...)) or register its class by name"
        )
    return registry.get(name)


def build_strategy(
    name: str, space: Parametrization, options: dict[str, Any] | None = None, seed: int = 0
) -> Strategy:
    cls = STRATEGIES.get(name)
    return cls(space, make_config(cls.config_class, options, f"strategy {name!r}"), seed=seed)


class Experiment:
    """One training run: a model, a task, a parametrization and a strategy, and a run folder.

    Components are built from the config's registry names, or passed in as
    objects (a user's own :class:`Task`, say); ``model``/``tokenizer`` may be
    passed to reuse an already-loaded model.
    """

    def __init__(
        self,
        config: TrainConfig,
        *,
        model: torch.nn.Module | None = None,
        tokenizer: Any = None,
        task: Task | None = None,
        space: Parametrization | None = None,
    ) -> None:
        self.config = config
        if config.threads:
            torch.set_num_threads(config.threads)
        if model is None:
            if config.model is None:
                raise ValueError("no model given: pass --model (a hub id or a local folder)")
            if config.model.startswith("python:"):
                raise ValueError(
                    f"this run was given a model object ({config.model[7:]}), not a name; "
                    "pass it again: resume(run, model=..., tokenizer=...)"
                )
            model, tokenizer = load_model(config.model, config.dtype, config.device)
        else:
            # the object may be anything: never let a resume silently load another model
            config.model = f"python:{type(model).__module__}.{type(model).__qualname__}"
        self.model, self.tokenizer = model, tokenizer
        self.task = task if task is not None else build_task(config.task, config.task_options)
        self.space = space if space is not None else build_space(config.space, config.space_options)
        config.task = _component_name(TASKS, self.task)
        config.space = _component_name(PARAMETRIZATIONS, self.space)
        self.space.bind(self.model)  # first: a strategy checks the bound space's size
        self.strategy = build_strategy(
            config.strategy, self.space, config.strategy_options, seed=config.seed
        )
        self.train_examples = list(self.task.examples("train"))
        eval_examples = list(self.task.examples("eval"))
        self.eval_examples = (
            eval_examples[: config.eval_size] if config.eval_size else eval_examples
        )
        if config.batch_size > len(self.train_examples):
            raise ValueError(
                f"batch_size={config.batch_size} exceeds the {len(self.train_examples)} training "
                "examples of the task; lower --batch-size or give the task more data"
            )
        self.generator = TextGenerator(
            self.model, self.tokenizer, config.max_new_tokens, config.generation_batch_size
        )
        self.evaluator = SequentialEvaluator(self.space, self.generator, self.task)
        self.out = Path(config.out) if config.out else None
        self.iteration = 0
        self.elapsed = 0.0
        self.samples = 0  # sample evaluations so far: members x prompts
        self.evaluated_at: int | None = None
        self.records: list[dict[str, Any]] = []
        # the base model for eval_kl, loaded now: its loading is no evaluation's time
        self._reference = self._load_reference() if config.eval_kl else None

    # --- the loop -------------------------------------------------------

    def minibatch(self, iteration: int) -> list[dict[str, Any]]:
        """The training prompts of ``iteration``: a function of (seed, iteration) only."""
        rng = np.random.default_rng([self.config.seed, iteration])
        picks = rng.choice(len(self.train_examples), self.config.batch_size, replace=False)
        return [self.train_examples[i] for i in picks]

    def step(self) -> dict[str, Any]:
        """Runs one iteration (all its ask/tell rounds) and returns its train record."""
        start = time.perf_counter()
        examples = self.minibatch(self.iteration)
        encoded = self.generator.encode([self.task.prompt(e) for e in examples])
        rewards, invalid, failures = [], 0, 0
        while True:
            candidates = self.strategy.ask()
            self.samples += len(candidates) * len(examples)
            result = self.evaluator.evaluate(candidates, examples, encoded)
            info = self.strategy.tell(candidates, result.rewards)
            rewards.extend(result.rewards.tolist())
            invalid += info.get("invalid", 0)
            failures += result.failures
            if info["complete"]:
                break
        self.iteration += 1
        seconds = time.perf_counter() - start
        self.elapsed += seconds
        values = np.asarray(rewards)
        finite = values[np.isfinite(values)] if np.isfinite(values).any() else np.array([np.nan])
        return {
            "type": "train",
            "iteration": self.iteration,
            "reward_mean": float(finite.mean()),
            "reward_std": float(finite.std()),
            "reward_min": float(finite.min()),
            "reward_max": float(finite.max()),
            "invalid_members": invalid,
            "reward_failures": failures,
            "iteration_seconds": seconds,
            "time": self.elapsed,
            "samples": self.samples,
            "peak_memory_mb": peak_memory_mb(self.model.device),
        }

    def evaluate(self) -> dict[str, Any]:
        """Held-out metrics of the current model, as an eval record (``time``: training only)."""
        start = time.perf_counter()
        config = self.config
        metrics, _ = evaluate_heldout(
            self.generator,
            self.task,
            self.eval_examples,
            samples=config.eval_samples,
            temperature=config.eval_temperature,
            seed=config.seed * 1_000_003 + self.iteration,  # resumes draw the same samples
            reference=self._reference,
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

    def _load_reference(self) -> torch.nn.Module:
        """The base model, loaded again by name, for ``eval_kl``."""
        name = self.config.model
        if name is None or name.startswith("python:"):
            raise ValueError(
                "eval_kl compares with the base model loaded again by name; give --model "
                "(an alias, hub id or folder) rather than a model object"
            )
        reference, _ = load_model(name, self.config.dtype, self.config.device)
        return reference

    def run(self, logger: RunLogger | None = None) -> list[dict[str, Any]]:
        """Trains up to ``config.iterations`` and returns the records logged by this call.

        Without a ``logger`` this starts a new run, and refuses a folder that
        already holds one (resume it instead). The checkpoint of the last
        iteration is written before the closing evaluation, so a run resumed
        from it to more iterations logs exactly what an uninterrupted run would.
        """
        if self.out is not None:
            if logger is None and (self.out / CONFIG_FILE).exists():
                raise FileExistsError(
                    f"{self.out} already holds a run; resume it (--resume {self.out}) "
                    "or choose another --out"
                )
            self.out.mkdir(parents=True, exist_ok=True)
            self._write_config()
            if logger is None:
                logger = RunLogger(self.out, tensorboard=self.config.tensorboard)
        records: list[dict[str, Any]] = []

        def log(record: dict[str, Any]) -> None:
            records.append(record)
            if logger is not None:
                logger.log(record)
            if record["type"] == "eval":
                self.evaluated_at = record["iteration"]

        if self.iteration == 0:
            log(self.evaluate())
        progress = _progress(self.config, self.iteration)
        try:
            while not self.finished():
                spent_before = self.samples
                record = self.step()
                log(record)
                progress.update(1)
                progress.set_postfix(reward=f"{record['reward_mean']:.4f}")
                if self._eval_due(spent_before):
                    log(self.evaluate())
                checkpoint_due = self.finished() or _due(
                    self.iteration, self.config.checkpoint_every
                )
                if self.out is not None and checkpoint_due:
                    self.save_checkpoint(logger.lines)
            if self.evaluated_at != self.iteration:
                log(self.evaluate())
        finally:
            progress.close()
            if logger is not None:
                logger.close()
        if self.out is not None:
            self.save_final(self.out / FINAL_DIR)
        self.records = records
        return records

    def _eval_due(self, spent_before: int) -> bool:
        """Every ``eval_every`` iterations, and each time ``eval_every_samples`` more are spent."""
        every = self.config.eval_every_samples
        crossed = every is not None and self.samples // every > spent_before // every
        return crossed or _due(self.iteration, self.config.eval_every)

    def finished(self) -> bool:
        """Whether the run has reached its iterations, or spent its sample budget."""
        budget = self.config.max_samples
        spent = budget is not None and self.samples >= budget
        return spent or self.iteration >= self.config.iterations

    # --- files ----------------------------------------------------------

    def resolved_config(self) -> dict[str, Any]:
        """The config with every component's full options, as written to ``run_config.json``."""
        config = dataclasses.asdict(self.config)
        config["strategy_options"] = dataclasses.asdict(self.strategy.config)
        config["space_options"] = dataclasses.asdict(self.space.config)
        config["task_options"] = dataclasses.asdict(self.task.config)
        return {"zo_llm_version": __version__, "config": config}

    def _write_config(self) -> None:
        _atomic_write_text(self.out / CONFIG_FILE, json.dumps(self.resolved_config(), indent=2))

    def save_checkpoint(self, metrics_lines: int) -> None:
        """Writes ``checkpoint.pt`` atomically: a crash mid-write leaves the previous one valid."""
        state = {
            "iteration": self.iteration,
            "elapsed": self.elapsed,
            "samples": self.samples,
            "metrics_lines": metrics_lines,
            "strategy": self.strategy.state_dict(),
            "space": self.space.state_dict(),
        }
        path = self.out / CHECKPOINT_FILE
        tmp = path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, path)

    def load_checkpoint(self, path: Path) -> int:
        """Restores strategy and space from a checkpoint; returns the metrics lines it had seen."""
        state = torch.load(path, weights_only=True)
        self.strategy.load_state_dict(state["strategy"])
        self.space.load_state_dict(state["space"])
        self.iteration = int(state["iteration"])
        self.elapsed = float(state["elapsed"])
        self.samples = int(state["samples"])
        return int(state["metrics_lines"])

    def save_final(self, path: Path) -> None:
        """The trained model as a ``save_pretrained`` folder, tokenizer included."""
        self.space.save_pretrained(path)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(str(path))


def _component_name(registry: Any, component: Any) -> str:
    """The registry name of a component object, or ``python:module.Class`` for an unregistered one.

    An unregistered component cannot be rebuilt from ``run_config.json``; a
    resume must pass the object again.
    """
    source = getattr(component, "source", None)  # built from "module:object" or a data path
    if isinstance(source, str):
        return source
    cls = type(component)
    return registry.name_of(cls) or f"python:{cls.__module__}.{cls.__qualname__}"


def _due(iteration: int, every: int) -> bool:
    return every > 0 and iteration % every == 0


def _progress(config: TrainConfig, initial: int):
    from tqdm.auto import tqdm

    return tqdm(
        total=config.iterations,
        initial=initial,
        disable=not config.progress,
        desc="zo-llm",
        unit="it",
        dynamic_ncols=True,
    )


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def train(config: TrainConfig | None = None, **options: Any) -> Experiment:
    """Trains from a config (or keyword options) and returns the finished :class:`Experiment`.

    Objects can stand in for registry names: ``task=MyTask()``,
    ``space=FullWeights(...)``, ``model=<loaded model>`` with ``tokenizer=``.
    ``data=PATH`` is the task's local data (``task_options={"data": PATH}``).

    Example::

        exp = zo_llm.train(model="path/to/model", task="countdown", iterations=20,
                           strategy_options={"population": 16}, out="runs/cd")
    """
    objects = {
        k: options.pop(k) for k in ("task", "space") if not isinstance(options.get(k, ""), str)
    }
    for key in ("model", "tokenizer"):
        if key in options and not isinstance(options[key], (str, type(None))):
            objects[key] = options.pop(key)
    if "data" in options:
        options["task_options"] = {
            **options.get("task_options", {}),
            "data": str(options.pop("data")),
        }
    config = dataclasses.replace(config, **options) if config else TrainConfig(**options)
    experiment = Experiment(config, **objects)
    experiment.run()
    return experiment


def resume(
    run_dir: str | Path,
    iterations: int | None = None,
    *,
    progress: bool | None = None,
    threads: int | None = None,
    **objects: Any,
) -> Experiment:
    """Continues the run in ``run_dir`` from its last checkpoint, up to ``iterations`` in total.

    The saved config is used as it was (only the total ``iterations``, the
    progress bar and the thread count may change), so the continuation
    computes the same numbers as a run that never stopped. ``objects`` are
    components passed to :class:`Experiment` (``model=``, ``task=``...), needed
    when the run used objects that are not registered by name.
    """
    run_dir = Path(run_dir)
    checkpoint = run_dir / CHECKPOINT_FILE
    if not checkpoint.exists():
        raise FileNotFoundError(f"{run_dir} has no {CHECKPOINT_FILE}; nothing to resume")
    saved = load_run_config(run_dir)
    done = int(torch.load(checkpoint, weights_only=True)["iteration"])
    if iterations is not None and iterations < done:
        raise ValueError(
            f"{run_dir} is at iteration {done}; --iterations {iterations} would not continue it "
            f"(give {done} or more)"
        )
    changes = {"iterations": iterations, "progress": progress, "threads": threads}
    saved.update({key: value for key, value in changes.items() if value is not None})
    saved["out"] = str(run_dir)
    experiment = Experiment(TrainConfig(**saved), **objects)
    lines = experiment.load_checkpoint(checkpoint)
    logger = RunLogger(run_dir, keep_lines=lines, tensorboard=experiment.config.tensorboard)
    kept_evals = [r for r in read_metrics(run_dir) if r["type"] == "eval"]
    experiment.evaluated_at = kept_evals[-1]["iteration"] if kept_evals else None
    experiment.run(logger)
    return experiment


def load_run_config(run_dir: str | Path) -> dict[str, Any]:
    """The ``TrainConfig`` fields saved in a run folder."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.exists():
        raise FileNotFoundError(f"{run_dir} is not a zo-llm run folder (no {CONFIG_FILE})")
    return json.loads(path.read_text())["config"]


def run_history(run_dir: str | Path) -> list[dict[str, Any]]:
    """The records of a run's ``metrics.jsonl``."""
    return read_metrics(run_dir)
