"""Turning option dictionaries (TOML tables, CLI flags, keyword arguments) into typed options.

Every registry entry declares a frozen dataclass ``config_class`` whose fields
carry defaults and ``metadata={"help": ...}``; this module is the one place that
maps loose options onto those dataclasses, so unknown or mistyped options fail
with the list of valid ones instead of being ignored.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, TypeVar

C = TypeVar("C")


def option_help(config_class: type) -> list[tuple[str, Any, str]]:
    """Returns ``(name, default, help)`` for every field of a config dataclass."""
    rows = []
    for field in dataclasses.fields(config_class):
        if field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            default = None
        rows.append((field.name, default, field.metadata.get("help", "")))
    return rows


def make_config(config_class: type[C], options: dict[str, Any] | None, owner: str) -> C:
    """Builds ``config_class(**options)`` after checking names and coercing simple types.

    Args:
      config_class: a dataclass type.
      options: field values; strings from the command line are converted to the
        field's type (``"1e-3"`` -> ``0.001``, ``"true"`` -> ``True``).
      owner: what the options belong to, for error messages (``"strategy 'es'"``).
    """
    options = dict(options or {})
    fields = {f.name: f for f in dataclasses.fields(config_class)}
    unknown = sorted(set(options) - set(fields))
    if unknown:
        raise ValueError(
            f"{owner} has no option {', '.join(map(repr, unknown))}; "
            f"its options are: {', '.join(sorted(fields))}"
        )
    hints = typing.get_type_hints(config_class)
    values = {name: _coerce(value, hints[name], name, owner) for name, value in options.items()}
    try:
        config = config_class(**values)
    except ValueError as error:  # its own check: say whose option it is
        raise ValueError(f"{owner}: {error}") from None
    return check_finite(config, owner)


def check_finite(config: C, owner: str) -> C:
    """``config`` itself, after checking that none of its float fields is inf or NaN.

    Why every float: no option of zo-llm means anything at infinity, and a NaN
    learning rate or sigma runs to the end and saves a model of NaNs.
    """
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{owner}: option {field.name}={value} must be a finite number")
    return config


def _coerce(value: Any, annotation: Any, name: str, owner: str) -> Any:
    """Converts command-line strings (and TOML ints for float fields) to the annotated type."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        annotation = args[0] if len(args) == 1 else annotation
        origin = typing.get_origin(annotation)
    try:
        if annotation is bool and isinstance(value, str):
            lowered = value.lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(value)
            return lowered in ("true", "1", "yes")
        if annotation is float and isinstance(value, (int, str)) and not isinstance(value, bool):
            return float(value)
        if annotation is int and isinstance(value, str):
            return int(value)
        if origin is tuple and isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        if origin is tuple and isinstance(value, list):
            return tuple(value)
    except ValueError:
        raise ValueError(
            f"{owner}: option {name}={value!r} is not a valid "
            f"{getattr(annotation, '__name__', annotation)}"
        ) from None
    return value


def same_value(a: Any, b: Any) -> bool:
    """Equal as given, or as numbers (``"1e-3"`` and ``0.001``: flags are strings)."""
    if a == b:
        return True
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return False
