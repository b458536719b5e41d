"""The ``zo-llm`` command: ``train``, ``eval`` and ``list``.

Every training option can come from a TOML file (``--config run.toml``) and be
overridden by a flag; flags are generated from :class:`TrainConfig`, so the two
never disagree. Component options go in the TOML tables ``[strategy]``,
``[space]`` and ``[task]`` (with a ``name`` key), or in ``--strategy-opt
KEY=VALUE`` style flags.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import tomllib
import typing
from pathlib import Path
from typing import Any

from .config import option_help
from .runner import TrainConfig

COMPONENTS = ("strategy", "space", "task")
#: Shortcut flags for the strategy options nearly every run sets.
STRATEGY_SHORTCUTS = {"population": int, "sigma": float, "lr": float}

EPILOG = """\
examples:
  zo-llm list
  zo-llm train --model PATH_OR_HUB_ID --strategy es --space full --task countdown \\
      --iterations 50 --population 30 --sigma 1e-3 --lr 5e-4 --batch-size 16 --out runs/cd
  zo-llm train --config run.toml --seed 1          # flags override the file
  zo-llm train --resume runs/cd --iterations 100   # continue up to 100 iterations in total
  zo-llm eval --model runs/cd/final --task countdown --split eval

run.toml:
  model = "HuggingFaceTB/SmolLM2-135M-Instruct"
  iterations = 50
  batch_size = 16
  [strategy]
  name = "es"
  population = 30
  [space]
  name = "full"
  exclude = ["embed_tokens"]
  [task]
  name = "countdown"
"""


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _quiet_transformers()
    try:
        return args.handler(args)
    except (ValueError, FileNotFoundError, OSError, KeyError) as error:
        print(f"zo-llm {args.command}: error: {error}", file=sys.stderr)
        return 2


def _quiet_transformers() -> None:
    """Our own progress bar is the one to watch; transformers' load/save bars only add noise."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zo-llm",
        description="Fine-tune language models without gradients (evolution strategies, "
        "zeroth-order methods).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser(
        "train",
        help="fine-tune a model",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Fine-tune a model. Defaults < --config TOML < flags.",
    )
    train.add_argument("--config", type=Path, help="TOML file with any of the options below")
    train.add_argument(
        "--resume",
        type=Path,
        metavar="RUN",
        help="continue the run folder RUN with its saved config (only "
        "--iterations, --progress and --threads may change)",
    )
    _add_config_flags(train)
    train.set_defaults(handler=cmd_train)

    evaluate = commands.add_parser(
        "eval",
        help="score a model on a task's held-out data",
        description="Score a model on a task. Settings: train's defaults < the run that saved "
        "the model (--model RUN/final reads RUN/run_config.json) < --config TOML < flags.",
        epilog=EVAL_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    evaluate.add_argument(
        "--config", type=Path, help="TOML file of zo-llm train: its model, task and generation"
    )
    evaluate.add_argument(
        "--model",
        default=argparse.SUPPRESS,
        help="alias, hub id, model folder or .gguf file, e.g. RUN/final (default: the TOML's, "
        "else zo-tiny)",
    )
    evaluate.add_argument(
        "--task",
        default=argparse.SUPPRESS,
        help="task name, module:object, or data file (default: the run's, else countdown-easy)",
    )
    evaluate.add_argument(
        "--task-opt",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="task option, repeatable (see zo-llm list)",
    )
    evaluate.add_argument(
        "--split", default="eval", choices=["train", "eval"], help="examples scored (default: eval)"
    )
    hints, fields = (
        typing.get_type_hints(TrainConfig),
        {f.name: f for f in dataclasses.fields(TrainConfig)},
    )
    for name in EVAL_SETTINGS:
        default = getattr(TrainConfig(), name)
        evaluate.add_argument(
            "--" + name.replace("_", "-"),
            type=_scalar_type(hints[name]),
            default=argparse.SUPPRESS,
            help=f"{fields[name].metadata['help']} (default: the run's, else {default})",
        )
    _add_data_flag(evaluate)
    evaluate.add_argument(
        "--samples",
        type=int,
        default=0,
        metavar="N",
        help="also score N sampled completions per prompt (sampled_* metrics; default: none)",
    )
    evaluate.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    evaluate.add_argument("--seed", type=int, default=0, help="sampling seed")
    evaluate.add_argument(
        "--reference",
        metavar="BASE",
        help="base model (alias, hub id or folder): also report KL(model || BASE) per token "
        "on the model's greedy completions of the prompts",
    )
    evaluate.add_argument(
        "--out", type=Path, help="also write metrics and completions as JSON here"
    )
    evaluate.set_defaults(handler=cmd_eval)

    bench = commands.add_parser(
        "bench",
        help="compare strategies on one budget: table and plots",
        description="Runs every strategy x space x task x seed as a run folder under OUT/runs, "
        "then writes OUT/results.csv, OUT/results.md and two plots. Defaults < --config TOML "
        "< flags. Re-running resumes: finished runs are not redone.",
        epilog=BENCH_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_bench_flags(bench)
    bench.set_defaults(handler=cmd_bench)

    listing = commands.add_parser(
        "list", help="strategies, parametrizations, tasks and model aliases"
    )
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(handler=cmd_list)
    return parser


#: TrainConfig fields that ``zo-llm eval`` shares with ``zo-llm train`` (flags and help alike).
EVAL_SETTINGS = ("eval_size", "max_new_tokens", "generation_batch_size", "dtype", "device")

EVAL_EPILOG = """\
examples:
  zo-llm eval --model runs/cd/final                 # the run's task and settings
  zo-llm eval --model runs/cd/final --split train --eval-size 50
  zo-llm eval --model zo-tiny --task countdown-easy --samples 4 --reference zo-tiny
  zo-llm eval --config run.toml                     # the model and task of a train config
"""

BENCH_EPILOG = """\
examples:
  zo-llm bench --strategies es,essam,mezo --seeds 0,1 --budget 9600 --eval-every 0 \\
      --eval-every-samples 960 --target 0.8 --out results/
  zo-llm bench --config benchmarks/configs/compare.toml --out results/compare

bench.toml:
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
"""

#: ``zo-llm bench`` flags: (flag, type, help). Lists are comma-separated.
BENCH_FLAGS = [
    ("--model", str, "model alias, hub id or folder (default: zo-tiny)"),
    ("--strategies", str, "comma-separated strategy names"),
    ("--spaces", str, "comma-separated parametrization names (default: full)"),
    ("--tasks", str, "comma-separated task names (default: countdown-easy)"),
    ("--seeds", str, "comma-separated integer seeds, e.g. 0,1,2 (default: 0)"),
    ("--budget", int, "sample evaluations (members x prompts) per run"),
    ("--iterations", int, "iterations per run (an upper bound when --budget is set)"),
    ("--batch-size", int, "training prompts per iteration (default: 16)"),
    ("--max-new-tokens", int, "tokens generated per prompt (default: 64)"),
    ("--eval-every", int, "held-out evaluation period in iterations (default: 2)"),
    ("--eval-every-samples", int, "also evaluate each time this many samples are spent"),
    ("--eval-size", int, "held-out examples (default: all)"),
    ("--target", float, "held-out metric value for the samples-to-target column"),
    ("--metric", str, "held-out metric to compare (default: accuracy, else reward)"),
    ("--threads", int, "torch CPU threads per run (default: 1)"),
    ("--dtype", str, "float32, bfloat16 or float16"),
    ("--device", str, "auto, cpu, cuda or cuda:N"),
]


#: Singular spellings of the list flags (``--space full`` as ``zo-llm train`` spells it).
BENCH_ALIASES = {
    "--strategies": ("--strategy",),
    "--spaces": ("--space",),
    "--tasks": ("--task",),
    "--seeds": ("--seed",),
}


def _add_bench_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML file with any of the options below")
    parser.add_argument("--out", help="results folder (created)")
    for flag, kind, help_text in BENCH_FLAGS:
        flags = (flag, *BENCH_ALIASES.get(flag, ()))
        dest = flag[2:].replace("-", "_")
        parser.add_argument(*flags, dest=dest, type=kind, default=argparse.SUPPRESS, help=help_text)


def _bench_seeds(value: str) -> list[int]:
    try:
        return [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise ValueError(
            f"--seeds {value!r}: expected comma-separated integers, e.g. --seeds 0,1,2"
        ) from None


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import BenchConfig, run_bench

    flags = {}
    for flag, _, _ in BENCH_FLAGS:
        name = flag[2:].replace("-", "_")
        if hasattr(args, name):
            value = getattr(args, name)
            if name in ("strategies", "spaces", "tasks"):
                value = [part.strip() for part in value.split(",") if part.strip()]
            elif name == "seeds":
                value = _bench_seeds(value)
            flags[name] = value
    if args.out:
        flags["out"] = args.out
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


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field (``batch_size`` -> ``--batch-size``), defaults suppressed.

    Suppressed defaults let us tell a flag the user typed from one they did
    not, so flags override the TOML file and the TOML file overrides defaults.
    """
    hints = typing.get_type_hints(TrainConfig)
    defaults = TrainConfig()
    for field in dataclasses.fields(TrainConfig):
        if field.name.endswith("_options"):
            continue
        flag = "--" + field.name.replace("_", "-")
        help_text = f"{field.metadata.get('help', '')} (default: {getattr(defaults, field.name)})"
        kind = _scalar_type(hints[field.name])
        if kind is bool:
            parser.add_argument(
                flag,
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=help_text,
            )
        else:
            parser.add_argument(flag, type=kind, default=argparse.SUPPRESS, help=help_text)
    for name, kind in STRATEGY_SHORTCUTS.items():
        parser.add_argument(
            f"--{name}",
            type=kind,
            default=argparse.SUPPRESS,
            help=f"strategy option {name} (same as --strategy-opt {name}=...)",
        )
    _add_data_flag(parser)
    for component in COMPONENTS:
        parser.add_argument(
            f"--{component}-opt",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help=f"{component} option, repeatable (options: zo-llm list)",
        )


def _add_data_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="local data file or folder for the task (same as --task-opt data=PATH)",
    )


def _scalar_type(annotation: Any) -> type:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return args[0] if args else annotation


def parse_key_values(pairs: list[str], what: str) -> dict[str, str]:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"{what} option {pair!r} is not KEY=VALUE")
        options[key.strip().replace("-", "_")] = value
    return options


def config_from_toml(path: Path) -> dict[str, Any]:
    """TrainConfig fields from a TOML file; ``[strategy]`` etc. become name + options."""
    if not path.exists():
        raise FileNotFoundError(f"config file {path} does not exist")
    with path.open("rb") as handle:
        raw = tomllib.load(handle)
    fields: dict[str, Any] = {}
    for key, value in raw.items():
        key = key.replace("-", "_")
        if key in COMPONENTS and isinstance(value, dict):
            table = {k.replace("-", "_"): v for k, v in value.items()}
            if "name" in table:
                fields[key] = table.pop("name")
            fields[f"{key}_options"] = table
        else:
            fields[key] = value
    return fields


def train_toml(path: Path | None) -> dict[str, Any]:
    """The TrainConfig fields of a ``zo-llm train`` TOML file ({} without one); checks keys."""
    fields = config_from_toml(path) if path else {}
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(fields) - names)
    if unknown:
        raise ValueError(
            f"{path}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(names))}"
        )
    return fields


def resolve_train_config(args: argparse.Namespace) -> dict[str, Any]:
    """Merges defaults, the TOML file and flags into TrainConfig keyword arguments."""
    fields = train_toml(args.config)
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    for name in names:
        if hasattr(args, name):
            fields[name] = getattr(args, name)
    for component in COMPONENTS:
        options = dict(fields.get(f"{component}_options", {}))
        options.update(parse_key_values(getattr(args, f"{component}_opt"), component))
        if component == "strategy":
            options.update({k: getattr(args, k) for k in STRATEGY_SHORTCUTS if hasattr(args, k)})
        if component == "task" and hasattr(args, "data"):
            options["data"] = args.data
        fields[f"{component}_options"] = options
    return fields


def cmd_train(args: argparse.Namespace) -> int:
    from .runner import FINAL_DIR, resume, train

    if args.resume is not None:
        changed = _resume_overrides(args)
        experiment = resume(args.resume, **changed)
    else:
        fields = resolve_train_config(args)
        if not fields.get("out"):
            fields["out"] = default_run_folder(fields)
        experiment = train(TrainConfig(**fields))
    _report(experiment, FINAL_DIR)
    return 0


def default_run_folder(fields: dict[str, Any]) -> str:
    """``runs/TASK-STRATEGY-YYYYmmdd-HHMMSS``: every CLI run leaves a folder to inspect."""
    import time

    defaults = TrainConfig()
    task = fields.get("task", defaults.task)
    strategy = fields.get("strategy", defaults.strategy)
    return str(Path("runs") / f"{task}-{strategy}-{time.strftime('%Y%m%d-%H%M%S')}")


def _resume_overrides(args: argparse.Namespace) -> dict[str, Any]:
    allowed = {"iterations", "progress", "threads"}
    given = {
        name for name in vars(args) if name in {f.name for f in dataclasses.fields(TrainConfig)}
    }
    given |= {k for k in STRATEGY_SHORTCUTS if hasattr(args, k)}
    given |= {"data"} if hasattr(args, "data") else set()
    given |= {f"{c}_opt" for c in COMPONENTS if getattr(args, f"{c}_opt")}
    if args.config:
        given.add("config")
    refused = sorted(given - allowed)
    if refused:
        raise ValueError(
            f"--resume continues a run with its saved config; {', '.join(refused)} cannot change "
            "(only --iterations, --progress and --threads can). Start a new run with --out instead."
        )
    return {name: getattr(args, name) for name in given}


def _report(experiment: Any, final_dir: str) -> None:
    from .logging import read_metrics

    if experiment.out is None:
        return
    evals = [r for r in read_metrics(experiment.out) if r["type"] == "eval"]
    if evals:
        print(f"held-out before: {_metrics_line(evals[0])}")
        print(f"held-out after:  {_metrics_line(evals[-1])}")
    print(f"run folder: {experiment.out}")
    print(f"evaluate:   {eval_command(experiment, experiment.out / final_dir)}")


def eval_command(experiment: Any, model: Path) -> str:
    """The ``zo-llm eval`` command that repeats the run's held-out evaluation on ``model``."""
    config = experiment.config
    parts = ["zo-llm eval", "--model", str(model), "--task", config.task]
    task_config = experiment.task.config
    defaults = type(task_config)()
    for field in dataclasses.fields(task_config):
        value = getattr(task_config, field.name)
        if value != getattr(defaults, field.name):
            shown = ",".join(map(str, value)) if isinstance(value, tuple) else value
            parts += ["--task-opt", f"{field.name}={shown}"]
    parts += ["--eval-size", str(len(experiment.eval_examples))]
    parts += ["--max-new-tokens", str(config.max_new_tokens)]
    parts += ["--generation-batch-size", str(config.generation_batch_size)]
    parts += ["--dtype", config.dtype]
    return " ".join(shlex.quote(p) if i and p != "zo-llm eval" else p for i, p in enumerate(parts))


def _metrics_line(record: dict[str, Any]) -> str:
    skip = {"type", "split", "time"}
    return ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in record.items()
        if k not in skip
    )


def resolve_eval_settings(args: argparse.Namespace) -> tuple[dict[str, Any], str | None]:
    """Eval settings: train's defaults < the model's run < ``--config`` TOML < flags.

    A model saved by a run (``RUN/final``) is scored on that run's task with its
    generation settings unless told otherwise, so ``zo-llm eval --model RUN/final``
    repeats the run's held-out evaluation (greedy: the run's ``eval_samples`` and
    ``eval_kl`` are not repeated; ``--samples`` and ``--reference`` do that). A
    later layer naming another task starts from that task's defaults; naming the
    same task adds its options to those before it. Returns the settings and the
    run config file they came from, if any.
    """
    from .runner import CONFIG_FILE, FINAL_DIR

    defaults = dataclasses.asdict(TrainConfig())
    toml = train_toml(args.config)
    flags = {name: getattr(args, name) for name in EVAL_SETTINGS if hasattr(args, name)}
    if hasattr(args, "task"):
        flags["task"] = args.task
    flags["task_options"] = parse_key_values(args.task_opt, "task")
    if hasattr(args, "data"):
        flags["task_options"]["data"] = args.data
    model = getattr(args, "model", toml.get("model", defaults["model"]))
    run_config = Path(model).parent / CONFIG_FILE
    keys = ("task", "task_options", *EVAL_SETTINGS)
    layers = [{key: defaults[key] for key in keys}]
    source = None
    if Path(model).name == FINAL_DIR and run_config.exists():
        saved = json.loads(run_config.read_text())["config"]
        run = {key: saved[key] for key in keys if key in saved}
        if args.split != "eval":
            run.pop("eval_size", None)  # the run's eval_size counts held-out examples
        layers.append(run)
        source = str(run_config)
    layers += [{key: toml[key] for key in keys if key in toml}, flags]
    settings: dict[str, Any] = {"task_options": {}}
    for layer in layers:
        if "task" in layer and layer["task"] != settings.get("task"):
            settings["task_options"] = {}  # another task's options do not carry over
        options = {**settings["task_options"], **layer.get("task_options", {})}
        settings.update(layer, task_options=options)
    if settings["task"].startswith("python:") and "task" not in flags:
        raise ValueError(
            f"the run was trained on a task object ({settings['task'][7:]}) that eval cannot "
            "rebuild; pass --task (a registered name, module:object or data file)"
        )
    return {"model": model, **settings}, source


def cmd_eval(args: argparse.Namespace) -> int:
    from .evaluation import evaluate_heldout
    from .models import TextGenerator, load_model
    from .runner import build_task

    settings, source = resolve_eval_settings(args)
    task = build_task(settings["task"], settings["task_options"])
    model, tokenizer = load_model(settings["model"], settings["dtype"], settings["device"])
    examples = list(task.examples(args.split))[: settings["eval_size"]]
    generator = TextGenerator(
        model, tokenizer, settings["max_new_tokens"], settings["generation_batch_size"]
    )
    reference = None
    if args.reference:
        reference, _ = load_model(args.reference, settings["dtype"], settings["device"])
    metrics, outputs = evaluate_heldout(
        generator,
        task,
        examples,
        samples=args.samples,
        temperature=args.temperature,
        seed=args.seed,
        reference=reference,
    )
    print(
        json.dumps(
            {
                "model": settings["model"],
                "task": settings["task"],
                **({"settings_from": source} if source else {}),
                "split": args.split,
                "examples": len(examples),
                **({"reference": args.reference} if args.reference else {}),
                **metrics,
            },
            indent=2,
        )
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"metrics": metrics, **outputs}, indent=2))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from .parametrizations import PARAMETRIZATIONS
    from .strategies import STRATEGIES
    from .strategies.base import spaces_searched_by
    from .tasks import TASKS

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
    from .models.aliases import ALIASES

    listing["models"] = {name: {"summary": alias.description} for name, alias in ALIASES.items()}
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


def _describe(entry: type) -> dict[str, Any]:
    doc = (entry.__doc__ or "").strip().splitlines()
    kinds = getattr(entry, "supported_kinds", None) or getattr(entry, "kinds", None)
    return {
        "summary": doc[0] if doc else "",
        "kinds": ",".join(sorted(kinds)) if kinds else "",
        "options": option_help(entry.config_class),
    }


if __name__ == "__main__":
    sys.exit(main())
