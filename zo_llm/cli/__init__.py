"""The ``zo-llm`` command: ``train``, ``eval``, ``bench`` and ``list``.

Every setting can come from a TOML file (``--config run.toml``) and be
overridden by a flag; flags are generated from the run config's fields
(:mod:`zo_llm.config`), so the two never disagree. Component options go in
the TOML tables ``[strategy]``, ``[space]`` and ``[task]`` (with a ``name``
key), or in ``--strategy-opt KEY=VALUE`` style flags. Nothing heavy is
imported until a command runs, so ``--help`` and ``list`` answer at once.
"""

from __future__ import annotations

import argparse
import sys

from . import bench, evaluate, listing, train

EPILOG = train.EPILOG


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except (ValueError, FileNotFoundError, OSError, KeyError) as error:
        print(f"zo-llm {args.command}: error: {error}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zo-llm",
        description="Fine-tune language models without gradients (evolution strategies, "
        "zeroth-order methods).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for module in (train, evaluate, bench, listing):
        module.add_parser(commands)
    return parser


def quiet_transformers() -> None:
    """Our own progress bar is the one to watch; transformers' load/save bars only add noise."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
