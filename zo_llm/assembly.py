"""One assembly: everything a run needs, built from its config in one place.

:func:`build_run` turns a checked :class:`~zo_llm.config.RunConfig` (and any
objects passed instead of names) into a :class:`Run`: model, tokenizer, task
and its splits, space, strategy, generator, scorer and evaluator. The
training loop (:mod:`zo_llm.runner`), the Ray replicas, ``zo-llm eval``, the
held-out evaluation and the KL estimate all use it, so each part is built
one way. Everything that can be checked without the model is checked before
it loads: the config when it was built, here the task's data, the space's
size from the model's shapes, and the space methods the strategy calls.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .components import (
    build_space,
    build_strategy,
    build_task,
    component_class,
    component_name,
    object_name,
)
from .config import SHORTCUTS, RunConfig
from .evaluation import Evaluator, build_evaluator, check_distribution, choose_evaluator
from .evaluation.external import build_reward_sources, check_reward_sources
from .evaluation.rewards import RewardScorer
from .generation import GENERATORS, Generator, stop_strings
from .lazy import torch
from .models.loading import load_model
from .models.quantize import holds_quantized, quantize_base
from .preflight import check_space_size

__all__ = ["Run", "build_run"]

#: What a run is built for: training (the evaluator spread over Ray workers where the
#: config asks), a Ray worker's replica (never spread further), or scoring a model only.
Purpose = Literal["train", "replica", "eval"]


@dataclass
class Probe:
    """A task the run never trains on, scored beside the held-out set: what the run forgets."""

    task: Any
    examples: list[dict[str, Any]]
    scorer: RewardScorer


@dataclass
class Run:
    """The parts of one run, as :func:`build_run` made them (see the module).

    ``space``, ``strategy`` and ``evaluator`` are None for a run built to
    score a model only (``purpose="eval"``).
    """

    config: RunConfig
    model: Any
    tokenizer: Any
    task: Any
    train_examples: list[dict[str, Any]]
    eval_examples: list[dict[str, Any]]
    generator: Generator
    scorer: RewardScorer
    space: Any = None
    strategy: Any = None
    evaluator: Evaluator | None = None
    probe: Probe | None = None

    def state_dict(self) -> dict[str, Any]:
        """The search's state: the strategy's and the space's (what replay rebuilds)."""
        return {"strategy": self.strategy.state_dict(), "space": self.space.state_dict()}

    def load_state_dict(self, state: dict[str, Any], snapshot: Any = None) -> None:
        """Moves the search to ``state``; ``snapshot`` (a run folder's, opened) where it has
        a part for a component spares that component's replay."""
        for component, key in ((self.strategy, "strategy"), (self.space, "space")):
            part = snapshot.part(key) if snapshot is not None else None
            if part is None:
                component.load_state_dict(state[key])
            else:
                component.load_state_dict(state[key], part)

    def snapshot_tensors(self) -> dict[str, Any]:
        """The growing states as tensors (:meth:`Parametrization.snapshot`), keyed by part."""
        tensors = {}
        for component, key in ((self.strategy, "strategy"), (self.space, "space")):
            for name, tensor in (component.snapshot() or {}).items():
                tensors[f"{key}.{name}"] = tensor
        return tensors

    def close(self) -> None:
        """Releases the evaluator's workers and reward process, and the generator's engine."""
        if self.evaluator is not None:
            self.evaluator.close()
        self.scorer.close()
        if self.probe is not None:
            self.probe.scorer.close()
        self.generator.close()


def build_run(
    config: RunConfig,
    *,
    model: Any = None,
    tokenizer: Any = None,
    task: Any = None,
    space: Any = None,
    purpose: Purpose = "train",
) -> Run:
    """Builds the run of ``config``: objects passed stand in for the config's names.

    ``model``/``tokenizer`` reuse an already-loaded model; ``task``/``space``
    are a user's own objects. The model loads only after everything that can
    be checked without it (see the module).

    Raises:
      ValueError: for a mistake in the config or the objects, naming it.
    """
    searching = purpose != "eval"
    if purpose == "train":
        check_distribution(config)
    task = task if task is not None else build_task(config.task.name, config.task.options)
    train_examples, eval_examples = list(task.examples("train")), list(task.examples("eval"))
    if searching and config.loop.batch_size > len(train_examples):
        raise ValueError(
            f"batch_size={config.loop.batch_size} exceeds the {len(train_examples)} "
            "training examples of the task; lower --batch-size or give the task more data"
        )
    probe = build_probe(config) if purpose == "train" else None
    backend = GENERATORS.get(config.model.backend)
    if searching:
        space = space if space is not None else build_space(config.space.name, config.space.options)
        strategy_class = component_class("strategy", config.strategy.name)
        if strategy_class is not None:
            # a user's space too, before the model loads
            strategy_class.check_pairing(space, config.strategy.options)
        backend.check(config.model, type(space))
        check_space_size(config, space, model)  # before loading: from the model's shapes
    check_reward_sources(config.loop)  # before the policy model loads
    if config.model.threads:
        torch.set_num_threads(config.model.threads)
    if model is None:
        model, tokenizer = load_base(config)
    elif config.model.quantize and not holds_quantized(model):
        quantize_base(model, config.model.quantize)  # a passed model, in place, as a loaded one
    evaluator_class = Evaluator
    if searching:
        hooks = backend.runs_forward_hooks
        evaluator_class = choose_evaluator(config.loop.evaluator, type(space), hooks)
    rows = config.model.generation_batch_size or evaluator_class.default_rows(model.device)
    stop = stop_strings(config.model.stop, task)
    prompts = [task.prompt(example) for example in train_examples + eval_examples]
    if probe is not None:
        prompts += [probe.task.prompt(example) for example in probe.examples]
    generator = backend.create(model, tokenizer, config.model, rows, stop, prompts)
    scorer = scorer_of(config, task, build_reward_sources(config.loop, model.device))
    run = Run(config, model, tokenizer, task, train_examples, eval_examples, generator, scorer)
    run.probe = probe
    if searching:
        space.bind(model)  # first: a strategy checks the bound space's size
        space = generator.mirror(space)  # a backend's own weights move with the space
        run.space = space
        run.strategy = build_strategy(
            config.strategy.name, space, config.strategy.options, seed=config.loop.seed
        )
        run.evaluator = build_evaluator(
            evaluator_class(space, generator, task, scorer),
            config,
            driver_state=run.state_dict,
            replica=build_run if purpose == "train" else None,
        )
    return run


def scorer_of(config: RunConfig, task: Any, sources: Sequence[Any] = ()) -> RewardScorer:
    """``task``'s rewards under the run's time limit and timeout budget, weighted and summed
    with ``sources`` (the run's reward model and server) where given."""
    loop = config.loop
    return RewardScorer(
        task,
        loop.reward_timeout or None,
        loop.max_reward_timeouts,
        sources,
        loop.task_reward_weight,
    )


def build_probe(config: RunConfig) -> Probe | None:
    """The config's probe task (``--probe-task``), its first ``probe_size`` held-out examples."""
    name = config.evaluation.probe_task
    if name is None:
        return None
    task = build_task(name, {})
    examples = list(task.examples("eval"))[: config.evaluation.probe_size]
    if not examples:
        raise ValueError(f"probe_task={name!r} has no held-out examples to score")
    return Probe(task, examples, scorer_of(config, task))


def load_base(config: RunConfig, name: str | None = None) -> tuple[Any, Any]:
    """The model (``name``, default: the config's) and its tokenizer, as the config loads it.

    Raises:
      ValueError: for no name, or a model object's record (``python:...``), which
        cannot be loaded again.
    """
    name = name or config.model.name
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


def layer_of_objects(objects: dict[str, Any]) -> dict[str, Any]:
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


def refuse_options_of_objects(objects: dict[str, Any], settings: dict[str, Any]) -> None:
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
