"""Shipped run configs ("recipes"): TOML files that ``zo-llm train --config`` reads by name.

Each recipe is a measured setting for one model on one machine, with a comment
on every choice; ``zo-llm train --config smollm2-135m-cpu`` runs the shipped
file, ``--config my.toml`` any other. A checkout also has them at
``recipes/``. ``benchmarks/real_model.py`` measures them.
"""

from __future__ import annotations

from pathlib import Path

FOLDER = Path(__file__).parent


def names() -> list[str]:
    """The shipped recipes' names (their file names without ``.toml``)."""
    return sorted(path.stem for path in FOLDER.glob("*.toml"))


def recipe_path(name_or_path: str | Path) -> Path:
    """A config file: ``name_or_path`` if it exists, else the shipped recipe of that name.

    Raises:
      FileNotFoundError: neither exists (the message lists the shipped recipes).
    """
    path = Path(name_or_path).expanduser()
    if path.exists():
        return path
    shipped = FOLDER / f"{path.name.removesuffix('.toml')}.toml"
    if path.parent == Path(".") or path.parent.name == "recipes":
        if shipped.exists():
            return shipped
    raise FileNotFoundError(
        f"config file {path} does not exist, and no recipe is named {path.stem!r} "
        f"(shipped recipes: {', '.join(names())})"
    )


def describe(name: str) -> str:
    """A recipe's first comment line (what it does and what it was measured to reach)."""
    for line in (FOLDER / f"{name}.toml").read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""
