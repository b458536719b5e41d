"""``zo-llm bench``: strategies side by side on one budget (see :mod:`zo_llm.bench`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .. import config as run_config
from ..bench import PER_RUN
from .flags import add_setting_flags, flags_layer

EPILOG = """\
examples:
  zo-llm bench --strategies es,essam,mezo --seeds 0,1 --budget 9600 --eval-every 0 \\
      --eval-every-samples 960 --target 0.8 --out results/
  zo-llm bench --config benchmarks/configs/compare.toml --out results/compare

bench.toml (any zo-llm train setting applies to every run, e.g. batch_size, eval_size):
  model = "zo-tiny"
  out = "results/cmp"    # or --out
  seeds = [0, 1, 2]
  budget = 9600          # sample evaluations (members x prompts) per run
  target = 0.8           # held-out metric for "samples to target"
  spaces = ["full", "svd"]
  tasks = [{ name = "countdown-easy", eval_size = 100 }]
  [[strategies]]         # tables come last in TOML
  name = "es"
  [[strategies]]         # the same strategy twice: a label tells them apart
  name = "es"
  label = "es-sigma1e-2"
  sigma = 1e-2
  [[strategies]]
  name = "cma-es"
  spaces = ["svd"]       # vector strategies cannot search full; run it on svd only

Runs get one torch thread each and no progress bar unless told otherwise.
"""

#: The bench's own flags: (flag, parse, help). Lists are comma-separated.
BENCH_FLAGS = [
    ("--strategies", "names", "comma-separated strategy names"),
    ("--spaces", "names", "comma-separated parametrization names (default: full)"),
    ("--tasks", "names", "comma-separated task names (default: countdown-easy)"),
    ("--seeds", "ints", "comma-separated integer seeds, e.g. 0,1,2 (default: 0)"),
    ("--budget", int, "sample evaluations (members x prompts) per run"),
    ("--target", float, "held-out metric value for the samples-to-target column"),
    ("--metric", str, "held-out metric to compare (default: accuracy, else reward)"),
]
#: Singular spellings of the list flags (``--space full`` as ``zo-llm train`` spells it).
ALIASES = {"--strategies": "--strategy", "--spaces": "--space", "--tasks": "--task"}


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "bench",
        help="compare strategies on one budget: table and plots",
        description="Runs every strategy x space x task x seed as a run folder under OUT/runs, "
        "then writes OUT/results.csv, OUT/results.md and two plots. Defaults < --config TOML "
        "< flags. Re-running resumes: finished runs are not redone.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", type=Path, help="TOML file with any of the options below")
    parser.add_argument("--out", help="results folder (created)")
    for flag, kind, help_text in BENCH_FLAGS:
        flags = (flag, ALIASES[flag]) if flag in ALIASES else (flag,)
        parser.add_argument(
            *flags,
            dest=flag[2:],
            type=str if kind in ("names", "ints") else kind,
            default=argparse.SUPPRESS,
            help=help_text,
        )
    shared = [name for name in run_config.settings() if name not in PER_RUN]
    add_setting_flags(parser, shared, components=(), shortcuts=("eval_size", "data"))
    parser.set_defaults(handler=cmd_bench)


def _parse_list(flag: str, kind: Any, value: str) -> list[Any]:
    parts = [part.strip() for part in value.split(",") if part.strip()]
    if kind != "ints":
        return parts
    try:
        return [int(part) for part in parts]
    except ValueError:
        raise ValueError(
            f"{flag} {value!r}: expected comma-separated integers, e.g. {flag} 0,1,2"
        ) from None


def bench_layer(args: argparse.Namespace) -> dict[str, Any]:
    """The bench keys and run settings the user typed."""
    layer = flags_layer(args)
    layer.pop("out", None)  # the bench's own --out, below
    for flag, kind, _ in BENCH_FLAGS:
        name = flag[2:]
        if hasattr(args, name):
            value = getattr(args, name)
            layer[name] = _parse_list(flag, kind, value) if kind in ("names", "ints") else value
    layer.update(layer.pop("task_options", {}))  # --eval-size and --data: for every task
    if args.out:
        layer["out"] = args.out
    return layer


def cmd_bench(args: argparse.Namespace) -> int:
    from ..bench import BenchConfig, run_bench

    flags = bench_layer(args)
    if args.config:
        config = BenchConfig.from_toml(args.config, **flags)
    else:
        missing = [k for k in ("strategies", "out") if k not in flags]
        if missing:
            raise ValueError(f"zo-llm bench needs --{' and --'.join(missing)} (or --config)")
        config = BenchConfig.from_dict(flags)
    try:
        executed = run_bench(config)
    except RuntimeError as error:  # a run failed in its own process: its message, no traceback
        print(f"zo-llm bench: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            "zo-llm bench: interrupted; run the same command again to resume "
            "(finished runs are kept, the interrupted one continues from its checkpoint)",
            file=sys.stderr,
        )
        return 130
    out = Path(config.out)
    print(f"runs executed: {len(executed)} (finished runs are kept and not redone)")
    print((out / "results.md").read_text(), end="")
    print(f"tables: {out / 'results.csv'}, {out / 'results.md'}")
    print(f"plots:  {out / 'heldout_vs_samples.png'}, {out / 'heldout_vs_time.png'}")
    return 0
