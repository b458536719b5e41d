"""``zo-llm train``: a run from defaults < ``--config`` TOML < flags, or ``--resume RUN``."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from .. import config as run_config
from .flags import add_setting_flags, flags_layer, read_toml

EPILOG = """\
examples:
  zo-llm list
  zo-llm train --model PATH_OR_HUB_ID --strategy es --space full --task countdown \\
      --iterations 50 --population 30 --sigma 1e-3 --lr 5e-4 --batch-size 16 --out runs/cd
  zo-llm train --config run.toml --seed 1          # flags override the file
  zo-llm train --resume runs/cd --iterations 100   # continue up to 100 iterations in total
  zo-llm eval --model runs/cd/final --task countdown --split eval

run.toml (top-level keys are the flags' names; [loop], [evaluation], ... tables work too):
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

--population, --sigma and --lr mean the same for every strategy: each maps them onto
its own options (mezo: population = 2q members, sigma = eps), or says which option to use.
"""


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "train",
        help="fine-tune a model",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Fine-tune a model. Defaults < --config TOML < flags; everything is "
        "checked before the model loads.",
    )
    parser.add_argument(
        "--config",
        type=Path,
        help="TOML file with any of the options below, or a shipped recipe by name (zo-llm list)",
    )
    parser.add_argument(
        "--resume",
        type=Path,
        metavar="RUN",
        help="continue the run folder RUN with its saved config (only "
        f"{_spelled(run_config.RESUMABLE)} may change: they change no number)",
    )
    add_setting_flags(parser)
    parser.set_defaults(handler=cmd_train)


def _spelled(names: tuple[str, ...]) -> str:
    """``--a, --b and --c``."""
    flags = [f"--{name.replace('_', '-')}" for name in names]
    return f"{', '.join(flags[:-1])} and {flags[-1]}" if len(flags) > 1 else flags[0]


def toml_layer(path: Path | None) -> dict[str, Any]:
    """A ``zo-llm train`` TOML file (or a shipped recipe's name) as a settings layer, its keys
    checked (naming the file)."""
    if path is not None:
        from ..recipes import recipe_path

        path = recipe_path(path)
    layer = read_toml(path)
    run_config.nest(layer, where=str(path))
    return layer


def resolve_train_config(args: argparse.Namespace) -> run_config.RunConfig:
    """The run config of ``zo-llm train``: defaults < ``--config`` TOML < flags."""
    flags = flags_layer(args)
    config = run_config.resolve(toml_layer(args.config), flags)
    if args.config is None and not {"strategy", "space", "task"} & set(flags):
        _suggest_recipe(config.model.name)
    if config.output.out is None:
        config = config.with_settings(out=default_run_folder(config))
    return with_model_checked(config)


def with_model_checked(config: run_config.RunConfig) -> run_config.RunConfig:
    """``config``, once its model's name is known to exist (a folder with weights and a
    tokenizer, a file, an alias or a hub id) and its reward server to answer: refused here,
    before torch loads."""
    from ..evaluation.external import check_reward_url
    from ..models.source import check_model_source

    name = config.model.name
    if name is not None and not name.startswith("python:"):
        check_model_source(name)
    if config.loop.reward_url is not None:
        check_reward_url(config.loop.reward_url)
    return config


#: The search the defaults are sized for: the shipped demo model and its task.
DEMO_MODEL = "zo-tiny"


def _suggest_recipe(model: str | None) -> None:
    """Names the recipe to start from when a real model meets the demo's defaults.

    zo-llm's defaults (ES on all the weights at the paper's sigma, Countdown-easy)
    train the shipped zo-tiny in a minute; a pretrained model scores nothing on
    that task and barely moves at that scale, so the run would look broken.
    """
    if model == DEMO_MODEL:
        return
    from ..recipes import names

    print(
        f"zo-llm train: note: the defaults (es on all weights, countdown-easy) are sized for "
        f"the shipped {DEMO_MODEL}; for a pretrained model start from a recipe that was "
        f"measured to learn, e.g. zo-llm train --config smollm2-135m-cpu --model {model} "
        f"(recipes: {', '.join(names())}; zo-llm list shows what each reaches)",
        file=sys.stderr,
    )


def cmd_train(args: argparse.Namespace) -> int:
    # every mistake that needs no model is refused here, before torch and transformers load
    if args.resume is not None:
        overrides = _resume_overrides(args)
        _check_resume(args.resume, overrides)
    else:
        config = resolve_train_config(args)
    from . import quiet_transformers

    quiet_transformers()
    from ..runner import Experiment, RunInterrupted, TrainingDiverged, resume

    try:
        if args.resume is not None:
            experiment = resume(args.resume, **overrides)
        else:
            experiment = Experiment(config)
            experiment.run()
    except RunInterrupted as stop:
        print(f"\nzo-llm train: {stop}", file=sys.stderr)
        return stop.exit_code
    except KeyboardInterrupt:  # before the run started (the model loading, say)
        print("\nzo-llm train: interrupted before the run started", file=sys.stderr)
        return 130
    except TrainingDiverged as error:
        print(f"zo-llm train: error: {error}", file=sys.stderr)
        return 1
    _report(experiment)
    return 0


def default_run_folder(config: run_config.RunConfig) -> str:
    """``runs/TASK-STRATEGY-YYYYmmdd-HHMMSS``: every CLI run leaves a folder to inspect."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return str(Path("runs") / f"{Path(config.task.name).stem}-{config.strategy.name}-{stamp}")


def _resume_overrides(args: argparse.Namespace) -> dict[str, Any]:
    given = flags_layer(args)
    if args.config:
        given["config"] = args.config
    refused = sorted(set(given) - set(run_config.RESUMABLE))
    if refused:
        raise ValueError(
            f"--resume continues a run with its saved config; {', '.join(refused)} cannot change "
            f"(only {_spelled(run_config.RESUMABLE)} can). Start a new run with --out instead."
        )
    return given


def _check_resume(folder: Path, overrides: dict[str, Any]) -> None:
    """The saved config with the new settings, checked as :func:`zo_llm.resume` will (a missing
    or foreign folder, a bad value), without loading the checkpoint."""
    from ..rundir import RunDir

    with_model_checked(
        run_config.resolve(RunDir(folder).read_config(), overrides, {"out": str(folder)})
    )


def _report(experiment: Any) -> None:
    if experiment.out is None:
        return
    evals = [r for r in experiment.rundir.metrics() if r["type"] == "eval"]
    if evals:
        print(f"held-out before: {_metrics_line(evals[0])}")
        print(f"held-out after:  {_metrics_line(evals[-1])}")
    print(f"run folder: {experiment.out}")
    chosen = experiment.rundir.read_best()
    if chosen is not None:
        print(
            f"best model: {experiment.rundir.best} (held-out {chosen['metric']}="
            f"{chosen['value']:.4g} at iteration {chosen['iteration']})"
        )
    print(f"evaluate:   {eval_command(experiment, experiment.rundir.final)}")


def eval_command(experiment: Any, model: Path) -> str:
    """The ``zo-llm eval`` command that repeats the run's held-out evaluation on ``model``."""
    config = experiment.config
    parts = ["--model", str(model), "--task", config.task.name]
    task_config = experiment.task.config
    if not dataclasses.is_dataclass(task_config):
        task_config = None
    if task_config is not None:
        defaults = type(task_config)()
        for field in dataclasses.fields(task_config):
            value = getattr(task_config, field.name)
            if field.name == "eval_size":  # as --eval-size, below
                continue
            if value != getattr(defaults, field.name):
                shown = ",".join(map(str, value)) if isinstance(value, tuple) else value
                parts += ["--task-opt", f"{field.name}={shown}"]
    if task_config is not None and "eval_size" in {f.name for f in dataclasses.fields(task_config)}:
        parts += ["--eval-size", str(len(experiment.eval_examples))]
    parts += ["--max-new-tokens", str(config.model.max_new_tokens)]
    if config.model.stop is not None:
        stops = experiment.generator.stop
        parts += ["--stop", stops[0].encode("unicode_escape").decode() if stops else ""]
    if config.model.generation_batch_size is not None:
        parts += ["--generation-batch-size", str(config.model.generation_batch_size)]
    parts += ["--dtype", config.model.dtype]
    return " ".join(["zo-llm eval", *map(shlex.quote, parts)])


def _metrics_line(record: dict[str, Any]) -> str:
    skip = {"type", "split", "time"}
    return ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in record.items()
        if k not in skip
    )
