"""``zo-llm bench``: strategies side by side on one budget (see :mod:`zo_llm.bench`)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from pathlib import Path
from typing import Any

from .. import config as run_config
from ..bench import BENCH_KEYS, PER_RUN, RUN_DEFAULTS, BenchConfig
from .flags import add_setting_flags, flags_layer
from .train import with_model_checked

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
  [[strategies]]         # the gradient baseline: TRL's GRPO (pip install 'zo-llm[baseline]')
  name = "grpo"          # on the same budget of training completions (budget is required)
  spaces = ["full"]      # full: every weight; lora: a peft adapter (add a lora space)
  completions = 4        # per prompt; prompts_per_step = 4, lr = 1e-5, beta = 0, temperature = 1

"""

#: Singular spellings of the list flags (``--space full`` as ``zo-llm train`` spells it).
ALIASES = {"strategies": "--strategy", "spaces": "--space", "tasks": "--task", "seeds": "--seed"}


def _bench_fields() -> list[tuple[str, Any, str, Any]]:
    """(name, parse, help, default) of the bench's own keys, from :class:`BenchConfig`'s fields.

    ``parse`` is ``"names"`` or ``"ints"`` for the comma-separated lists, else the type.
    """
    hints = typing.get_type_hints(BenchConfig)
    rows = []
    for f in dataclasses.fields(BenchConfig):
        if f.name not in BENCH_KEYS or f.name == "out":
            continue
        hint = hints[f.name]
        if typing.get_origin(hint) is tuple:
            parse = "ints" if typing.get_args(hint)[0] is int else "names"
            given = () if f.default is dataclasses.MISSING else f.default
            default = ",".join(str(getattr(v, "name", v)) for v in given) or "required"
        else:
            parse = next(a for a in typing.get_args(hint) if a is not type(None))
            default = f.default
        rows.append((f.name, parse, f.metadata["help"], default))
    return rows


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
    for name, parse, help_text, default in _bench_fields():
        flags = (f"--{name}", ALIASES[name]) if name in ALIASES else (f"--{name}",)
        parser.add_argument(
            *flags,
            dest=name,
            type=str if parse in ("names", "ints") else parse,
            default=argparse.SUPPRESS,
            help=f"{help_text} (default: {default})",
        )
    shared = [name for name in run_config.settings() if name not in PER_RUN]
    add_setting_flags(
        parser, shared, components=(), shortcuts=("eval_size", "data"), defaults=RUN_DEFAULTS
    )
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
    for name, parse, _, _ in _bench_fields():
        if hasattr(args, name):
            value = getattr(args, name)
            listed = parse in ("names", "ints")
            layer[name] = _parse_list(f"--{name}", parse, value) if listed else value
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
    with_model_checked(config.base)  # a missing model folder, before any run starts
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
