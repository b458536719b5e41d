"""Flags generated from the run config's fields, and parsed back into a settings layer.

Every flag is a field of :mod:`zo_llm.config` (``batch_size`` -> ``--batch-size``,
a section's ``name`` -> ``--model``/``--strategy``/...), so a flag's type,
default and help are written once, in the config. Defaults are suppressed in
the parser, so a flag the user did not type never overrides a TOML file or a
run folder.
"""

from __future__ import annotations

import argparse
import tomllib
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .. import config as run_config

#: Component sections that take ``--NAME-opt KEY=VALUE`` flags.
COMPONENTS = run_config.COMPONENTS


def add_setting_flags(
    parser: argparse.ArgumentParser,
    names: Iterable[str] | None = None,
    *,
    components: Iterable[str] = COMPONENTS,
    shortcuts: Iterable[str] = tuple(run_config.SHORTCUTS),
    default_note: str = "default: {default}",
    defaults: Mapping[str, Any] | None = None,
) -> None:
    """One flag per run setting in ``names`` (all by default), typed and documented by its field.

    Args:
      names: flat setting names (see :func:`zo_llm.config.settings`).
      components: sections that get a repeatable ``--SECTION-opt KEY=VALUE`` flag.
      shortcuts: component options that get a flag of their own (``--population``...).
      default_note: how the default is shown, with ``{default}`` in it.
      defaults: defaults that differ from the run config's here (the bench's own).
    """
    fields = run_config.settings()
    for name in names if names is not None else fields:
        section, field = fields[name]
        default = (defaults or {}).get(name, field.default)
        help_text = f"{field.metadata.get('help', '')} ({default_note.format(default=default)})"
        hints = typing.get_type_hints(run_config.SECTION_CLASSES[section])
        _add(parser, name, _scalar_type(hints[field.name]), help_text)
    for name in shortcuts:
        section, kind, help_text = run_config.SHORTCUTS[name]
        _add(parser, name, kind, f"{help_text}; same as --{section}-opt {name}=...")
    for component in components:
        parser.add_argument(
            f"--{component}-opt",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help=f"{component} option, repeatable (options: zo-llm list)",
        )


def _add(parser: argparse.ArgumentParser, name: str, kind: type, help_text: str) -> None:
    flag = "--" + name.replace("_", "-")
    if kind is bool:
        parser.add_argument(
            flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text
        )
        if name == "progress":
            parser.add_argument(
                "-q",
                "--quiet",
                dest=name,
                action="store_false",
                default=argparse.SUPPRESS,
                help="same as --no-progress: nothing on stderr but warnings and errors",
            )
    else:
        parser.add_argument(flag, type=kind, default=argparse.SUPPRESS, help=help_text)


def _scalar_type(annotation: Any) -> type:
    """``int | None`` -> int."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return args[0] if args else annotation


def flags_layer(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the user typed, as a flat layer.

    Raises:
      ValueError: for a malformed ``KEY=VALUE``, or a shortcut flag that
        contradicts the option it sets (``--population 2 --strategy-opt population=4``).
    """
    layer = {name: getattr(args, name) for name in run_config.settings() if hasattr(args, name)}
    for component in COMPONENTS:
        pairs = getattr(args, f"{component}_opt", None)
        if pairs:
            layer[f"{component}_options"] = parse_key_values(pairs, component)
    # shortcuts as flat keys: the config refuses one that contradicts its own option
    shortcuts = [name for name in run_config.SHORTCUTS if hasattr(args, name)]
    layer.update({name: getattr(args, name) for name in shortcuts})
    run_config.nest(layer, where="flags")  # a bad key or a contradiction, named as flags
    return layer


def parse_key_values(pairs: list[str], what: str) -> dict[str, str]:
    """``["a=1", "b-c=x"]`` -> ``{"a": "1", "b_c": "x"}``; values stay strings."""
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"{what} option {pair!r} is not KEY=VALUE")
        options[key.strip().replace("-", "_")] = value
    return options


def read_toml(path: Path | None, what: str = "config file") -> dict[str, Any]:
    """A TOML file's tables ({} without a path); names the file in every error.

    Raises:
      FileNotFoundError: the file does not exist.
      ValueError: it is a folder, not UTF-8, or not valid TOML (the parser's line and column).
    """
    if path is None:
        return {}
    if not path.exists():
        raise FileNotFoundError(f"{what} {path} does not exist")
    from ..tasks.loading import read_text

    text = read_text(path, what)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{what} {path} is not valid TOML: {error}; fix it there") from None
