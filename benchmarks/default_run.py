"""The default ``zo-llm train`` over several seeds: held-out accuracy before and after.

Runs the out-of-the-box training (the shipped ``zo-tiny`` model on Countdown
with the default ES settings) once per seed, prints a table of the held-out
metric before and after with mean ± std, and plots the held-out metric
against iterations (one line per seed).

    python benchmarks/default_run.py --seeds 0,1,2 --out results/default_run

Extra ``KEY=VALUE`` arguments override TrainConfig fields
(``iterations=20``, ``strategy_options={"sigma": 0.01}`` as JSON).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import zo_llm
from zo_llm.runner import TrainConfig


def run_seed(seed: int, out: Path, overrides: dict) -> dict:
    start = time.perf_counter()
    config = TrainConfig(seed=seed, out=str(out / f"seed{seed}"), progress=False, **overrides)
    experiment = zo_llm.train(config)
    evals = [r for r in experiment.records if r["type"] == "eval"]
    return {
        "seed": seed,
        "metric": _metric(evals[0]),
        "before": evals[0][_metric(evals[0])],
        "after": evals[-1][_metric(evals[0])],
        "curve": [(r["iteration"], r[_metric(evals[0])]) for r in evals],
        "minutes": (time.perf_counter() - start) / 60,
    }


def _metric(record: dict) -> str:
    return "accuracy" if "accuracy" in record else "reward"


def mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {std:.3f}"


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    for result in results:
        iterations, values = zip(*result["curve"], strict=True)
        axes.plot(iterations, values, marker="o", label=f"seed {result['seed']}")
    axes.set_xlabel("iteration")
    axes.set_ylabel(f"held-out {results[0]['metric']}")
    axes.set_title("zo-llm train (defaults)")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", type=Path, default=Path("results/default_run"))
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args()
    overrides = {}
    for pair in args.overrides:
        key, _, value = pair.partition("=")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    args.out.mkdir(parents=True, exist_ok=True)
    results = [run_seed(int(s), args.out, overrides) for s in args.seeds.split(",")]
    metric = results[0]["metric"]
    print(f"| seed | {metric} before | {metric} after | change | minutes |")
    print("|---|---|---|---|---|")
    for r in results:
        change = r["after"] - r["before"]
        print(
            f"| {r['seed']} | {r['before']:.3f} | {r['after']:.3f} | {change:+.3f} "
            f"| {r['minutes']:.1f} |"
        )
    befores, afters = [r["before"] for r in results], [r["after"] for r in results]
    changes = [a - b for a, b in zip(afters, befores, strict=True)]
    print(
        f"| mean ± std | {mean_std(befores)} | {mean_std(afters)} | {mean_std(changes)} "
        f"| {statistics.mean(r['minutes'] for r in results):.1f} |"
    )
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    plot(results, args.out / "heldout_vs_iteration.png")
    print(f"plot: {args.out / 'heldout_vs_iteration.png'}")


if __name__ == "__main__":
    main()
