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
import os
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .options import make_config, same_value
from .sections import (
    COMPONENTS,
    SECTION_CLASSES,
    SECTIONS,
    SHORTCUTS,
    EvaluationSection,
    LoopSection,
    ModelSection,
    OutputSection,
    SpaceSection,
    StrategySection,
    TaskSection,
    plain,
)

__all__ = ["RunConfig", "resolve"]


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
                raw[section] = plain(dataclasses.asdict(value))
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
    from .generation import GENERATORS

    strategy = component_class("strategy", config.strategy.name)
    space = component_class("space", config.space.name)
    if strategy is not None and space is not None:
        strategy.check_pairing(space, config.strategy.options)
    backend = GENERATORS.get(config.model.backend)
    backend.check(config.model, space)
    if space is not None:
        choose_evaluator(config.loop.evaluator, space, backend.runs_forward_hooks)
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
    by flat name; the :data:`MACHINE` settings, which change no number, are not compared,
    and a setting the saved run does not have (added to zo-llm since) is its default."""
    have, want = flatten(saved), flatten(wanted)
    fields = settings()
    for key, (_, known) in fields.items():
        if key not in have and known.default is not dataclasses.MISSING:
            have[key] = known.default
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
