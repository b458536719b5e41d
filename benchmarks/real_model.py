"""The shipped SmolLM2-135M recipes, run as a user runs them: a table and learning curves.

Each recipe is trained once per seed by ``zo-llm train --config RECIPE --seed S``
in its own process; the table gives the held-out main metric (accuracy on the
recipe's task) before, at the end, and at its best, with the minutes it took,
and the plot the held-out curve of every seed against training minutes.

    python benchmarks/real_model.py --seeds 0,1,2            # both recipes, 3 seeds
    python benchmarks/real_model.py --model /tmp/smollm2     # a saved plain folder: loads in 2 s
    python benchmarks/real_model.py --recipes smollm2-135m-cpu --seeds 0

``--model`` replaces the recipe's model (the same weights saved as a folder
load faster than the GGUF file). Finished runs are read back, not redone (the
folders stay under ``--out``), so an interrupted benchmark continues. Run it
alone on the machine: the minutes are wall-clock times.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from zo_llm.recipes import recipe_path
from zo_llm.rundir import read_metrics
from zo_llm.tasks.base import main_metric

DEFAULT_RECIPES = "smollm2-135m-cpu,smollm2-135m-es-cpu"


def train(recipe: str, seed: int, out: Path, model: str | None) -> float:
    """Trains one recipe and seed into ``out`` (unless done already); the wall seconds."""
    done = out / "wall_seconds"
    if (out / "final").exists() and done.exists():
        return float(done.read_text())
    command = [sys.executable, "-m", "zo_llm", "train", "--config", str(recipe_path(recipe))]
    command += ["--seed", str(seed), "--out", str(out), "--no-progress"]
    if model:
        command += ["--model", model]
    if out.exists():  # an interrupted run: continue it
        command = [sys.executable, "-m", "zo_llm", "train", "--resume", str(out), "--no-progress"]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    done.write_text(f"{seconds:.1f}")
    return seconds


def curve(out: Path) -> tuple[list[float], list[float], str]:
    """(run minutes, held-out metric) at each held-out evaluation, and the metric's name.

    Run minutes count training and the evaluations before it, not the model's loading.
    """
    records = read_metrics(out)
    evals = [r for r in records if r["type"] == "eval"]
    metric = main_metric(evals[0])
    minutes, values, evaluating = [], [], 0.0
    for record in evals:
        evaluating += record["eval_seconds"]
        minutes.append((record["time"] + evaluating) / 60)
        values.append(record[metric])
    return minutes, values, metric


def plot(curves: dict[str, list[tuple[int, list[float], list[float]]]], path: Path, metric: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.6), squeeze=False)
    for axis, (recipe, runs) in zip(axes[0], curves.items(), strict=True):
        for seed, minutes, values in runs:
            axis.plot(minutes, values, marker="o", label=f"seed {seed}")
        axis.set_title(recipe)
        axis.set_xlabel("minutes (training + held-out evaluations)")
        axis.set_ylabel(f"held-out {metric}")
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", default=DEFAULT_RECIPES, help="shipped names or TOML files")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--model", default=None, help="replaces the recipes' model")
    parser.add_argument("--out", type=Path, default=Path("results/real_model"))
    parser.add_argument("--plot", type=Path, default=Path("docs/img/real_model.png"))
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    print("| recipe | seed | minutes (wall) | run minutes | before | after | best | gain |")
    print("|---|---|---|---|---|---|---|---|")
    curves: dict[str, list[tuple[int, list[float], list[float]]]] = {}
    gains: dict[str, list[float]] = {}
    metric = "accuracy"
    for recipe in args.recipes.split(","):
        name = Path(recipe).stem
        for seed in seeds:
            out = args.out / name / f"seed{seed}"
            wall = train(recipe, seed, out, args.model)
            minutes, values, metric = curve(out)
            curves.setdefault(name, []).append((seed, minutes, values))
            gain = values[-1] - values[0]
            gains.setdefault(name, []).append(gain)
            print(
                f"| {name} | {seed} | {wall / 60:.1f} | {minutes[-1]:.1f} | {values[0]:.3f} | "
                f"{values[-1]:.3f} | {max(values):.3f} | {100 * gain:+.1f} points |",
                flush=True,
            )
    for name, values in gains.items():
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        print(
            f"\n{name}: gain {100 * statistics.mean(values):+.1f} ± {100 * spread:.1f} points "
            f"over {len(values)} seeds (min {100 * min(values):+.1f})"
        )
    plot(curves, args.plot, metric)
    (args.out / "curves.json").write_text(json.dumps(curves))
    print(f"\ncurves: {args.plot}")


if __name__ == "__main__":
    main()
