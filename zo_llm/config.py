"""The one run config: frozen sections, built and checked in full before any model loads.

A run is one :class:`RunConfig` made of sections: ``model``, ``strategy``,
``space``, ``task``, ``loop``, ``evaluation`` and ``output``. The three
component sections hold a registry name and that component's own frozen
option object (``ESConfig``, ``LoraSpaceConfig``, ...), so a misspelled option,
an unknown name or a strategy that cannot search the space fails when the
config is built, not minutes later when the model has loaded.

Settings come in layers, later ones winning: the defaults < a run folder's
saved config < a TOML file < flags or keyword arguments. :func:`resolve`
merges layers; ``zo-llm train``, ``eval`` and ``bench`` all go through it, and
their flags and TOML keys are generated from the sections' fields (see
:func:`settings`), so no default is written twice.

A layer is a mapping in either of two spellings, which may be mixed:

- nested, as ``run_config.json`` and TOML tables: ``{"loop": {"iterations": 5},
  "strategy": {"name": "es", "population": 8}}`` (a component's options sit
  next to its ``name``);
- flat, as flags and keyword arguments: ``{"iterations": 5, "strategy": "es",
  "strategy_options": {"population": 8}}``; every field name is unique across
  sections. The shortcuts ``population``, ``sigma`` and ``lr`` are strategy
  options and ``eval_size`` and ``data`` task options.

A later layer naming another component starts from that component's
defaults; naming the same one adds its options to those before it.

This module imports no heavy library: the CLI builds its flags from it.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .options import same_value

__all__ = ["RunConfig", "resolve"]

#: The sections of a run config, in the order they are written.
SECTIONS = ("model", "strategy", "space", "task", "loop", "evaluation", "output")
#: The sections that name a registry component and hold its options.
COMPONENTS = ("strategy", "space", "task")
#: Flat keys that are options of a component rather than fields of a section.
#: The strategy ones mean the same for every strategy: each maps them onto its own options.
SHORTCUTS = {
    "population": ("strategy", int, "members per iteration (a strategy's own equivalent)"),
    "sigma": ("strategy", float, "perturbation scale (a strategy's own equivalent)"),
    "lr": ("strategy", float, "learning rate (a strategy's own equivalent)"),
    "shaping": (
        "strategy",
        str,
        "how rewards become fitness: raw, zscore, centered_rank or prompt_zscore (every "
        "strategy's option; default: the strategy's own)",
    ),
    "eval_size": ("task", int, "held-out examples (the task's eval_size option; default: all)"),
    "data": ("task", str, "local data file or folder for the task (the task's data option)"),
}
DTYPES = ("float32", "bfloat16", "float16")


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass(frozen=True)
class ModelSection:
    """Which model, and how it runs."""

    name: str | None = field(
        default="zo-tiny",
        metadata=_help("alias (zo-llm list), hub id, local model folder or .gguf file"),
    )
    dtype: str = field(
        default="float32",
        metadata=_help(
            "float32, bfloat16 or float16 (float32: on a 2-core CPU bfloat16 generated 4x "
            "slower and scored lower, README 'Real models')"
        ),
    )
    device: str = field(default="auto", metadata=_help("auto, cpu, cuda or cuda:N"))
    quantize: str | None = field(
        default=None,
        metadata=_help(
            "int8: the frozen base's linear layers stored in int8 (torchao; pip install "
            "'zo-llm[quant]'), for the spaces that never write them (lora, svd); the searched "
            "adapter stays in dtype. None: the base in dtype"
        ),
    )
    backend: str = field(
        default="hf",
        metadata=_help("generation backend (zo-llm list): hf, transformers' generate"),
    )
    threads: int | None = field(default=None, metadata=_help("torch CPU threads (None: torch's)"))
    max_new_tokens: int = field(default=64, metadata=_help("tokens generated per prompt"))
    stop: str | None = field(
        default=None,
        metadata=_help(
            "stop string ending each completion before scoring (escapes understood: '\\n' is "
            "a newline; '' none); None: the task's own (arithmetic: a newline)"
        ),
    )
    generation_batch_size: int | None = field(
        default=None,
        metadata=_help(
            "rows per forward batch (batched evaluator: members x prompts); None: the "
            "evaluator's measured default for the device (32 sequential; batched 64 on CPU, "
            "512 on GPU)"
        ),
    )

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}; use one of: {', '.join(DTYPES)}")
        from .generation import GENERATORS
        from .models.quantize import check_quantization

        GENERATORS.get(self.backend)  # an unknown name lists the known ones
        check_quantization(self.quantize)
        _at_least(self, 1, "max_new_tokens")
        if self.generation_batch_size is not None:
            _at_least(self, 1, "generation_batch_size")
        if self.threads is not None:
            _at_least(self, 1, "threads")


@dataclass(frozen=True)
class ComponentSection:
    """A registry component by name, with its frozen option object.

    ``options`` may be given as a dict (flags, TOML, JSON): it is turned into
    the component's config class here, so bad options fail now. Names that
    cannot be resolved without running user code (``module:object`` tasks)
    or objects passed from Python (``python:...``) keep their options as given.
    """

    kind: ClassVar[str]
    name: str = ""
    options: Any = None

    def __post_init__(self) -> None:
        from .components import resolve_options

        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"{self.kind} name {self.name!r} must be a non-empty string")
        object.__setattr__(self, "options", resolve_options(self.kind, self.name, self.options))

    def options_dict(self) -> dict[str, Any]:
        """The options as plain values, every default filled in where the class is known."""
        if dataclasses.is_dataclass(self.options):
            return _plain(dataclasses.asdict(self.options))
        return _plain(dict(self.options or {}))


@dataclass(frozen=True)
class StrategySection(ComponentSection):
    """How candidates are proposed and rewards turned into a step (``zo-llm list``)."""

    kind: ClassVar[str] = "strategy"
    name: str = field(default="es", metadata=_help("strategy name (zo-llm list)"))


@dataclass(frozen=True)
class SpaceSection(ComponentSection):
    """Which numbers of the model are searched."""

    kind: ClassVar[str] = "space"
    name: str = field(default="full", metadata=_help("parametrization name (zo-llm list)"))


@dataclass(frozen=True)
class TaskSection(ComponentSection):
    """Data, prompts and reward."""

    kind: ClassVar[str] = "task"
    name: str = field(
        default="countdown-easy",
        metadata=_help("task name (zo-llm list), module:object, or a data file"),
    )


@dataclass(frozen=True)
class LoopSection:
    """How long the run is, and what feeds each iteration."""

    iterations: int = field(default=10, metadata=_help("iterations in total"))
    max_samples: int | None = field(
        default=None,
        metadata=_help("stop once this many sample evaluations (members x prompts) are spent"),
    )
    batch_size: int = field(default=16, metadata=_help("training prompts per iteration"))
    seed: int = field(default=0, metadata=_help("seeds noise and minibatches"))
    reward_timeout: float = field(
        default=60.0,
        metadata=_help(
            "seconds one reward call may take; a slower one is a failure and the run goes on "
            "(rewards run in a child process; 0: in this process, without a limit)"
        ),
    )
    workers: int = field(
        default=1,
        metadata=_help(
            "Ray workers scoring each population, each a replica of the model (1: this "
            "process alone); the same numbers for any count"
        ),
    )
    ray_address: str | None = field(
        default=None,
        metadata=_help("an existing Ray cluster (auto, or HOST:PORT); None: a local one"),
    )
    worker_cpus: float = field(
        default=1.0, metadata=_help("CPUs Ray reserves per worker (its torch threads, locally)")
    )
    worker_gpus: float = field(
        default=0.0, metadata=_help("GPUs Ray reserves per worker (1: one GPU each)")
    )
    evaluator: str = field(
        default="auto",
        metadata=_help(
            "how a population is scored: an evaluator of zo-llm list, or auto (the best "
            "one the space supports)"
        ),
    )

    def __post_init__(self) -> None:
        _at_least(self, 1, "iterations", "batch_size")
        if self.max_samples is not None:
            _at_least(self, 1, "max_samples")
        if self.seed < 0:
            raise ValueError(f"seed={self.seed} must be >= 0")
        _at_least(self, 1, "workers")
        if not self.worker_cpus > 0 or not self.worker_gpus >= 0:
            raise ValueError(
                f"worker_cpus={self.worker_cpus} must be > 0 and worker_gpus="
                f"{self.worker_gpus} >= 0"
            )
        if (self.workers > 1 or self.ray_address) and importlib.util.find_spec("ray") is None:
            raise ValueError("workers > 1 needs Ray: pip install 'zo-llm[ray]'")
        if not self.reward_timeout >= 0:
            raise ValueError(
                f"reward_timeout={self.reward_timeout} must be >= 0 seconds (0: no limit)"
            )


@dataclass(frozen=True)
class EvaluationSection:
    """When and how the held-out set is scored during a run."""

    eval_every: int = field(
        default=2, metadata=_help("held-out evaluation period in iterations (0: start/end)")
    )
    eval_every_samples: int | None = field(
        default=None,
        metadata=_help("also evaluate each time this many more sample evaluations are spent"),
    )
    eval_samples: int = field(
        default=0,
        metadata=_help("also score N sampled completions per held-out prompt (sampled_*)"),
    )
    eval_temperature: float = field(
        default=1.0, metadata=_help("sampling temperature of --eval-samples")
    )
    eval_kl: bool = field(
        default=False,
        metadata=_help(
            "also report KL(model || base model) per token on the held-out prompts "
            "(holds a second copy of the base model)"
        ),
    )

    def __post_init__(self) -> None:
        _at_least(self, 0, "eval_every", "eval_samples")
        if self.eval_every_samples is not None:
            _at_least(self, 1, "eval_every_samples")
        if not (math.isfinite(self.eval_temperature) and self.eval_temperature > 0):
            raise ValueError(f"eval_temperature={self.eval_temperature} must be > 0")


@dataclass(frozen=True)
class OutputSection:
    """Where the run is written, and what watches it."""

    out: str | None = field(
        default=None,
        metadata=_help("run folder (created; the CLI picks runs/TASK-STRATEGY-TIME without it)"),
    )
    checkpoint_every: int = field(
        default=1,
        metadata=_help(
            "checkpoint period in iterations (a seeded checkpoint is kilobytes; a kill loses "
            "at most the iterations since the last one)"
        ),
    )
    snapshot_every: int = field(
        default=20,
        metadata=_help(
            "iterations between snapshots of a growing state (the full/lowrank weights, "
            "pycma's object): resume replays at most this many iterations"
        ),
    )
    progress: bool = field(default=True, metadata=_help("show a progress bar"))
    tensorboard: bool = field(default=True, metadata=_help("write TensorBoard events"))
    wandb_project: str | None = field(
        default=None,
        metadata=_help("also log to this Weights & Biases project (pip install 'zo-llm[wandb]')"),
    )

    def __post_init__(self) -> None:
        _at_least(self, 1, "checkpoint_every", "snapshot_every")
        if self.wandb_project is not None and importlib.util.find_spec("wandb") is None:
            raise ValueError(
                f"wandb_project={self.wandb_project!r} needs the wandb package: "
                "pip install 'zo-llm[wandb]'"
            )


SECTION_CLASSES: dict[str, type] = {
    "model": ModelSection,
    "strategy": StrategySection,
    "space": SpaceSection,
    "task": TaskSection,
    "loop": LoopSection,
    "evaluation": EvaluationSection,
    "output": OutputSection,
}


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs, checked when built: see the module docstring."""

    model: ModelSection = field(default_factory=ModelSection)
    strategy: StrategySection = field(default_factory=StrategySection)
    space: SpaceSection = field(default_factory=SpaceSection)
    task: TaskSection = field(default_factory=TaskSection)
    loop: LoopSection = field(default_factory=LoopSection)
    evaluation: EvaluationSection = field(default_factory=EvaluationSection)
    output: OutputSection = field(default_factory=OutputSection)

    def __post_init__(self) -> None:
        check_run(self)

    def to_dict(self) -> dict[str, Any]:
        """The nested, JSON-ready form that ``run_config.json`` holds (options in full)."""
        raw: dict[str, Any] = {}
        for section in SECTIONS:
            value = getattr(self, section)
            if section in COMPONENTS:
                raw[section] = {"name": value.name, **value.options_dict()}
            else:
                raw[section] = _plain(dataclasses.asdict(value))
        return raw

    def flat(self) -> dict[str, Any]:
        """Every setting under its flat name (``iterations``, ``strategy_options``, ...)."""
        return flatten(self.to_dict())

    def with_settings(self, **settings: Any) -> RunConfig:
        """A copy with flat settings replaced, resolved as one more layer."""
        return resolve(self.to_dict(), settings)


def check_run(config: RunConfig) -> None:
    """What can be checked of a run without its model: the pairing (and the space methods
    the strategy calls), the evaluator, and whether the space can search over a quantised base.
    """
    from .components import component_class
    from .evaluation import choose_evaluator

    strategy = component_class("strategy", config.strategy.name)
    space = component_class("space", config.space.name)
    if strategy is not None and space is not None:
        strategy.check_pairing(space, config.strategy.options)
    if space is not None:
        choose_evaluator(config.loop.evaluator, space)
    quantize = config.model.quantize
    if quantize and space is not None:
        problem = space.quantized_base_problem(config.space.options)
        if problem:
            raise ValueError(
                f"quantize={quantize!r} keeps the base frozen in {quantize}, which space "
                f"{config.space.name!r} cannot use: {problem}. Use --space lora or svd, or "
                "drop --quantize"
            )


# --- layers -----------------------------------------------------------------


def flatten(nested: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The nested spelling (``run_config.json``) in the flat one, as flags name settings."""
    values: dict[str, Any] = {}
    for section, table in nested.items():
        table = dict(table)
        if section in COMPONENTS:
            values[section] = table.pop("name")
            values[f"{section}_options"] = table
        else:
            if "name" in table:
                values[section] = table.pop("name")
            values.update(table)
    return values


#: Settings two runs may differ in without computing different numbers (as on resume).
MACHINE = (
    "threads",
    "progress",
    "out",
    "tensorboard",
    "wandb_project",
    "checkpoint_every",
    "snapshot_every",
    "workers",
    "ray_address",
    "worker_cpus",
    "worker_gpus",
)
#: What a resumed run may change: its total iterations, and every setting that changes no
#: number but its folder (the one declaration: ``zo-llm train --resume``, :func:`zo_llm.resume`).
RESUMABLE = ("iterations", *(name for name in MACHINE if name != "out"))


def differences(saved: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    """``key (run: ..., config: ...)`` for each setting of two nested configs that differs,
    by flat name; the :data:`MACHINE` settings, which change no number, are not compared."""
    have, want = flatten(saved), flatten(wanted)
    differing = []
    for key in sorted(set(have) | set(want)):
        if key in MACHINE:
            continue
        if isinstance(want.get(key), dict):
            options_have, options_want = have.get(key) or {}, want[key]
            differing += [
                f"{key}.{option} (run: {options_have.get(option)!r}, "
                f"config: {options_want.get(option)!r})"
                for option in sorted(set(options_have) | set(options_want))
                if options_have.get(option) != options_want.get(option)
            ]
        elif have.get(key) != want.get(key):
            differing.append(f"{key} (run: {have.get(key)!r}, config: {want.get(key)!r})")
    return differing


def settings() -> dict[str, tuple[str, dataclasses.Field]]:
    """Every flat setting name -> (section, field): the source of flags and TOML keys.

    A section's ``name`` is spelled as the section (``model``, ``strategy``);
    component options and shortcuts are not listed (see :data:`SHORTCUTS`).
    """
    names: dict[str, tuple[str, dataclasses.Field]] = {}
    for section in SECTIONS:
        for f in _fields(section):
            if f.name == "options":
                continue
            names[section if f.name == "name" else f.name] = (section, f)
    return names


def nest(layer: Mapping[str, Any], where: str = "settings") -> dict[str, dict[str, Any]]:
    """One layer in the nested spelling: ``{section: {field or option: value}}``.

    Raises:
      ValueError: for a key that is no setting, naming ``where`` (a file, say)
        and the valid keys.
    """
    flat = settings()
    nested: dict[str, dict[str, Any]] = {}
    shortcuts: dict[str, dict[str, Any]] = {}
    for raw_key, value in layer.items():
        key = raw_key.replace("-", "_")
        value = os.fspath(value) if isinstance(value, os.PathLike) else value
        if key in SECTIONS and isinstance(value, Mapping):
            table = {k.replace("-", "_"): v for k, v in value.items()}
            if key not in COMPONENTS:
                _check_fields(key, table, where)
            nested.setdefault(key, {}).update(table)
        elif key.endswith("_options") and key[: -len("_options")] in COMPONENTS:
            options = {k.replace("-", "_"): v for k, v in dict(value or {}).items()}
            nested.setdefault(key[: -len("_options")], {}).update(options)
        elif key in SHORTCUTS:
            shortcuts.setdefault(SHORTCUTS[key][0], {})[key] = value
        elif key in flat:
            section, f = flat[key]
            nested.setdefault(section, {})[f.name] = value
        else:
            valid = sorted([*flat, *SHORTCUTS, *(f"{c}_options" for c in COMPONENTS)])
            raise ValueError(f"{where}: unknown key {raw_key!r}; valid keys: {', '.join(valid)}")
    for section, values in shortcuts.items():
        options = nested.setdefault(section, {})
        for key, value in values.items():
            if key in options and not same_value(options[key], value):
                raise ValueError(
                    f"{where}: {key}={value!r} contradicts the {section} option "
                    f"{key}={options[key]!r}; give one of them"
                )
            options[key] = value
    return nested


def resolve(*layers: Mapping[str, Any] | None, where: str = "settings") -> RunConfig:
    """The run config of ``layers`` merged in order (later wins), built and checked.

    ``None`` layers are skipped. Strategy options given by their generic
    names (``population``, ``sigma``, ``lr``) are translated per layer into the
    strategy's own options, so a later layer's ``--population`` overrides an
    earlier layer's ``q`` for MeZO.
    """
    from .components import translate_options

    merged: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
    for layer in layers:
        if not layer:
            continue
        for section, values in nest(layer, where).items():
            if section not in COMPONENTS:
                merged[section].update(values)
                continue
            values = dict(values)
            before = merged[section].get("name", _default_name(section))
            name = values.pop("name", before)
            kept = merged[section] if name == before else {}
            options = translate_options(section, name, values)
            merged[section] = {**kept, **options, "name": name}
    return build(merged)


def build(nested: Mapping[str, Mapping[str, Any]]) -> RunConfig:
    """A :class:`RunConfig` from the nested spelling of one complete layer."""
    sections: dict[str, Any] = {}
    for section in SECTIONS:
        values = dict(nested.get(section, {}))
        if section in COMPONENTS:
            name = values.pop("name", _default_name(section))
            sections[section] = SECTION_CLASSES[section](name=name, options=values)
        else:
            _check_fields(section, values, "settings")
            sections[section] = _typed_section(section, values)
    return RunConfig(**sections)


def _typed_section(section: str, values: Mapping[str, Any]) -> Any:
    """A section from values converted to its fields' types (TOML and flags give strings,
    ints for floats); a value of another type is refused, naming the key."""
    from .options import make_config

    cls = SECTION_CLASSES[section]
    hints = typing.get_type_hints(cls)
    built = make_config(cls, dict(values), f"[{section}]")
    for name in values:
        value, hint = getattr(built, name), hints[name]
        allowed = tuple(t for t in typing.get_args(hint) or (hint,) if isinstance(t, type))
        if float in allowed and isinstance(value, int) and not isinstance(value, bool):
            continue
        if isinstance(value, bool) and bool not in allowed:
            allowed = ()
        if not isinstance(value, allowed):
            expected = " or ".join("none" if t is type(None) else t.__name__ for t in allowed)
            raise ValueError(f"{name}={value!r} is not a valid {expected}")
    return built


def _default_name(section: str) -> str:
    return next(f.default for f in _fields(section) if f.name == "name")


def _fields(section: str) -> tuple[dataclasses.Field, ...]:
    return dataclasses.fields(SECTION_CLASSES[section])


def _check_fields(section: str, values: Mapping[str, Any], where: str) -> None:
    valid = {f.name for f in _fields(section)}
    unknown = sorted(set(values) - valid)
    if unknown:
        raise ValueError(
            f"{where}: [{section}] has no key {', '.join(map(repr, unknown))}; "
            f"its keys: {', '.join(sorted(valid))}"
        )


def _at_least(section: Any, minimum: int, *names: str) -> None:
    for name in names:
        value = getattr(section, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise ValueError(f"{name}={value!r} must be an integer >= {minimum}")


def _plain(value: Any) -> Any:
    """Tuples as lists (as JSON reads them back), recursively; other values as they are."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
