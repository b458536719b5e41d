"""The CLI reference page (``docs/cli.md``), generated from the parsers' own ``--help``.

One source for the flags: the page is what ``zo-llm COMMAND --help`` prints,
at a fixed width, so it cannot drift from the code (a test compares them).

    python -m zo_llm.cli.reference > docs/cli.md
"""

from __future__ import annotations

import argparse
import os

#: The width the help is wrapped at, whatever the terminal: the page must not depend on it.
WIDTH = "100"


def command_help(parser: argparse.ArgumentParser) -> str:
    """``parser``'s ``--help`` text, wrapped at :data:`WIDTH` columns."""
    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH  # argparse wraps at the terminal's width, read from here
    try:
        return parser.format_help()
    finally:
        if saved is None:
            os.environ.pop("COLUMNS")
        else:
            os.environ["COLUMNS"] = saved


def reference() -> str:
    """The Markdown page: ``zo-llm --help``, then each command's ``--help``."""
    from . import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    parts = [
        "# CLI reference\n",
        "Generated from the commands' own `--help` (`python -m zo_llm.cli.reference > "
        "docs/cli.md`); every flag is also a TOML key of `--config` (dashes as underscores).\n",
        "## zo-llm\n",
        f"```text\n{command_help(parser)}```\n",
    ]
    for name, subparser in commands.choices.items():
        parts += [f"## zo-llm {name}\n", f"```text\n{command_help(subparser)}```\n"]
    return "\n".join(parts)


if __name__ == "__main__":
    print(reference(), end="")
