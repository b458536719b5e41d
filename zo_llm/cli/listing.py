"""``zo-llm list``: strategies, parametrizations, tasks, evaluators, fitness shapings,
generation backends, model aliases, recipes, every option."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..options import option_help


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "list",
        help="strategies, parametrizations, tasks, evaluators, shapings, backends, model "
        "aliases and recipes",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=cmd_list)


def cmd_list(args: argparse.Namespace) -> int:
    from ..parametrizations import PARAMETRIZATIONS
    from ..strategies import STRATEGIES
    from ..strategies.base import spaces_searched_by
    from ..tasks import TASKS

    sections = {"strategies": STRATEGIES, "parametrizations": PARAMETRIZATIONS, "tasks": TASKS}
    listing = {
        section: {name: _describe(registry.get(name)) for name in registry.names()}
        for section, registry in sections.items()
    }
    # the pairing matrix: a strategy searches the spaces that have a kind it supports
    for strategy in STRATEGIES.names():
        spaces = spaces_searched_by(STRATEGIES.get(strategy).supported_kinds)
        listing["strategies"][strategy]["spaces"] = spaces
        for space in spaces:
            listing["parametrizations"][space].setdefault("strategies", []).append(strategy)
    from ..evaluation import EVALUATORS
    from ..fitness import FITNESS
    from ..generation import GENERATORS
    from ..models.aliases import ALIASES

    for section, registry in (
        ("evaluators", EVALUATORS),
        ("shapings", FITNESS),
        ("backends", GENERATORS),
    ):
        listing[section] = {name: {"summary": _summary(registry.get(name))} for name in registry}

    listing["models"] = {name: {"summary": alias.description} for name, alias in ALIASES.items()}
    from ..recipes import describe, names

    listing["recipes"] = {name: {"summary": describe(name)} for name in names()}
    if args.json:
        print(json.dumps(listing, indent=2, default=str))
        return 0
    for section, entries in listing.items():
        print(f"{section}:")
        for name, info in entries.items():
            kinds = f"  [{info['kinds']}]" if info.get("kinds") else ""
            print(f"  {name}{kinds}  {info['summary']}")
            for key in ("spaces", "strategies"):
                if key in info:
                    print(f"      {key}: {', '.join(info[key]) or '(none)'}")
            for option, default, help_text in info.get("options", []):
                shown = repr(default)
                shown = shown if len(shown) <= 40 else shown[:37] + "...'"
                print(f"      {option} = {shown}  {help_text}")
        print()
    return 0


def _summary(entry: type) -> str:
    """The first line of an entry's docstring."""
    doc = (entry.__doc__ or "").strip().splitlines()
    return doc[0] if doc else ""


def _describe(entry: type) -> dict[str, Any]:
    kinds = getattr(entry, "supported_kinds", None) or getattr(entry, "kinds", None)
    return {
        "summary": _summary(entry),
        "kinds": ",".join(sorted(kinds)) if kinds else "",
        "options": option_help(entry.config_class),
    }
