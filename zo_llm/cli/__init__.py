"""The ``zo-llm`` command: ``train``, ``eval``, ``bench`` and ``list``.

Every setting can come from a TOML file (``--config run.toml``) and be
overridden by a flag; flags are generated from the run config's fields
(:mod:`zo_llm.config`), so the two never disagree. Component options go in
the TOML tables ``[strategy]``, ``[space]`` and ``[task]`` (with a ``name``
key), or in ``--strategy-opt KEY=VALUE`` style flags. Nothing heavy is
imported until a command runs, so ``--help`` and ``list`` answer at once.

Errors: a mistake in the user's input (a bad value, a malformed or missing
file, a model folder without a tokenizer) or an exception raised in the user's
own code (a ``--task module:object`` factory) is one line, ``zo-llm CMD: error:
...``, and exit code 2. Any other exception is a bug in zo-llm: its traceback,
then a line saying so, and exit code 1. ``KeyboardInterrupt`` is not caught here.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import traceback

from . import bench, evaluate, listing, train

EPILOG = train.EPILOG

#: Exceptions that mean a mistake in the user's input; zo-llm raises them with a
#: message that names the bad value or file (FileNotFoundError is an OSError).
USER_ERRORS = (ValueError, OSError, KeyError)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except Exception as error:  # not BaseException: Ctrl-C and SystemExit pass through
        return report_error(args.command, error, sys.argv[1:] if argv is None else argv)


def report_error(command: str, error: Exception, argv: list[str]) -> int:
    """Prints ``error`` for the user of ``zo-llm command``; returns the exit code.

    One line and 2 for a user's mistake (:data:`USER_ERRORS`; an exception in
    the user's own code, a task factory say, arrives as one); the traceback, a
    line asking for a report, and 1 for a bug in zo-llm.
    """
    prefix = f"zo-llm {command}: error:"
    if isinstance(error, USER_ERRORS):
        print(f"{prefix} {error_text(error)}", file=sys.stderr)
        return 2
    if isinstance(error, _memory_errors()):
        print(
            f"{prefix} out of memory ({error_text(error).splitlines()[0]}); lower "
            "--generation-batch-size, --batch-size or --population, or use a smaller --dtype",
            file=sys.stderr,
        )
        return 1
    from ..version import __version__

    traceback.print_exception(error)
    print(
        f"zo-llm {command}: internal error: the {type(error).__name__} above is a bug in "
        f"zo-llm {__version__}, not a mistake in your input; please report it with the "
        f"command line (zo-llm {shlex.join(argv)}) and this traceback",
        file=sys.stderr,
    )
    return 1


def _memory_errors() -> tuple[type[BaseException], ...]:
    torch = sys.modules.get("torch")  # imported by any command that can run out of it
    return (MemoryError, *([torch.OutOfMemoryError] if hasattr(torch, "OutOfMemoryError") else []))


def error_text(error: BaseException) -> str:
    """The message of ``error``; a bare ``KeyError('x')`` without its repr quotes."""
    if type(error) is KeyError and len(error.args) == 1:
        return str(error.args[0])
    return str(error) or type(error).__name__


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
    """Our own progress bar is the one to watch; transformers' load/save bars only add noise
    (and so do torchao's import notes, where it is installed)."""
    from transformers.utils import logging as hf_logging

    from ..models.quantize import quiet_torchao

    quiet_torchao()
    hf_logging.disable_progress_bar()
