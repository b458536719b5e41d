"""``zo-llm eval``: score a model on a task, with train's settings resolved the same way.

Settings: defaults < the run that saved the model (``--model RUN/final`` reads
``RUN/run_config.json``) < ``--config`` TOML < flags, through the same
:func:`zo_llm.config.resolve` as ``zo-llm train``. So ``zo-llm eval --model
RUN/final`` repeats the run's held-out evaluation (greedy: the run's
``eval_samples`` and ``eval_kl`` are not repeated; ``--samples`` and
``--reference`` do that).

A model whose weights hold NaN or inf (saved by a run that diverged, say) is
still scored, after one warning on stderr: its scores are not meaningful.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .. import config as run_config
from ..generation.base import ENGINE_SETTINGS
from ..rundir import BEST_DIR, FINAL_DIR, RunDir
from .flags import add_setting_flags, flags_layer
from .train import toml_layer, with_model_checked

#: The run settings ``zo-llm eval`` takes: the model section and the task.
EVAL_SETTINGS = (
    "model",
    "task",
    "dtype",
    "device",
    "quantize",
    "backend",
    "threads",
    "max_new_tokens",
    "stop",
    "generation_batch_size",
    *ENGINE_SETTINGS,
)

EPILOG = """\
examples:
  zo-llm eval --model runs/cd/final                 # the run's task and settings
  zo-llm eval --model runs/cd/best                  # its best held-out model (best.json)
  zo-llm eval --model runs/cd/final --split train
  zo-llm eval --model zo-tiny --task countdown-easy --eval-size 50 --samples 4 --reference zo-tiny
  zo-llm eval --config run.toml                     # the model and task of a train config
"""


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "eval",
        help="score a model on a task's held-out data",
        description="Score a model on a task. Settings: train's defaults < the run that saved "
        "the model (--model RUN/final reads RUN/run_config.json) < --config TOML < flags.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config", type=Path, help="TOML file of zo-llm train: its model, task and generation"
    )
    add_setting_flags(
        parser,
        EVAL_SETTINGS,
        components=("task",),
        shortcuts=("eval_size", "data"),
        default_note="default: the run's, else {default}",
    )
    parser.add_argument(
        "--split", default="eval", choices=["train", "eval"], help="examples scored (default: eval)"
    )
    parser.add_argument(
        "--samples",
        type=int,
        default=0,
        metavar="N",
        help="also score N sampled completions per prompt (sampled_* metrics; default: none)",
    )
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument(
        "--reference",
        metavar="BASE",
        help="base model (alias, hub id or folder): also report KL(model || BASE) per token "
        "on the model's greedy completions of the prompts",
    )
    parser.add_argument("--out", type=Path, help="also write metrics and completions as JSON here")
    parser.set_defaults(handler=cmd_eval)


def resolve_eval_config(args: argparse.Namespace) -> tuple[run_config.RunConfig, str | None]:
    """The settings of ``zo-llm eval`` and the run config file they came from, if any."""
    toml, flags = toml_layer(args.config), flags_layer(args)
    if args.split == "train" and "eval_size" in flags:
        raise ValueError(
            "--eval-size sets the task's held-out size, which --split train does not score; "
            "to score fewer training examples set --task-opt train_size=N"
        )
    model = flags.get("model") or run_config.nest(toml).get("model", {}).get("name")
    model = model or run_config.ModelSection().name
    layers: list[dict[str, Any] | None] = []
    source = None
    folder = RunDir(Path(model).parent)
    if Path(model).name in (FINAL_DIR, BEST_DIR) and folder.holds_run():
        saved = folder.read_config()
        layer = {key: saved[key] for key in ("model", "task") if key in saved}
        if "model" in layer:  # a run over an int8 base saves a float model: score it as saved
            layer["model"] = {k: v for k, v in layer["model"].items() if k != "quantize"}
        layers.append(layer)
        source = str(folder.config_file)
    config = run_config.resolve(*layers, toml, flags, {"model": model})
    if config.task.name.startswith("python:") and "task" not in flags:
        raise ValueError(
            f"the run was trained on a task object ({config.task.name[7:]}) that eval cannot "
            "rebuild; pass --task (a registered name, module:object or data file)"
        )
    return with_model_checked(config), source


def cmd_eval(args: argparse.Namespace) -> int:
    config, source = resolve_eval_config(args)  # a mistake is refused before torch loads
    from . import quiet_transformers

    quiet_transformers()
    from ..assembly import build_run
    from ..evaluation import evaluate_heldout
    from ..models import load_model

    run = build_run(config, purpose="eval")
    examples = run.train_examples if args.split == "train" else run.eval_examples
    warn_non_finite(run.model, config.model.name)
    reference = None
    if args.reference:
        reference, _ = load_model(args.reference, config.model.dtype, config.model.device)
        warn_non_finite(reference, args.reference)
    try:
        metrics, outputs = evaluate_heldout(
            run.generator,
            run.task,
            examples,
            samples=args.samples,
            temperature=args.temperature,
            seed=args.seed,
            reference=reference,
            scorer=run.scorer,
        )
    finally:
        run.close()
    report = {
        "model": config.model.name,
        "task": config.task.name,
        **({"settings_from": source} if source else {}),
        "split": args.split,
        "examples": len(examples),
        **({"reference": args.reference} if args.reference else {}),
        **metrics,
    }
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"metrics": metrics, **outputs}, indent=2))
    return 0


def non_finite_parameters(model: Any) -> dict[str, int]:
    """``{parameter name: count of its NaN/inf values}`` for each parameter that has any.

    Read in chunks of 16M values, so the check never holds a mask of a whole
    embedding matrix.
    """
    import torch

    found = {}
    for name, parameter in model.named_parameters():
        flat = parameter.detach().reshape(-1)
        bad = sum(chunk.numel() - int(torch.isfinite(chunk).sum()) for chunk in flat.split(1 << 24))
        if bad:
            found[name] = bad
    return found


def warn_non_finite(model: Any, name: str) -> None:
    """One warning on stderr if ``model``'s weights hold NaN or inf."""
    found = non_finite_parameters(model)
    if not found:
        return
    tensors = sum(1 for _ in model.parameters())
    shown = ", ".join(list(found)[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
    print(
        f"zo-llm eval: warning: {name} has {sum(found.values())} non-finite (NaN or inf) "
        f"weights in {len(found)} of its {tensors} parameter tensors ({shown}); its scores "
        "below are not meaningful (was it saved by a run that diverged?)",
        file=sys.stderr,
    )
