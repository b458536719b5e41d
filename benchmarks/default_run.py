"""The default ``zo-llm train`` over several seeds: held-out accuracy before and after.

Runs the out-of-the-box training (the shipped ``zo-tiny`` model on Countdown
with the default ES settings) once per seed, prints a table of the held-out
metric before and after with mean ± std, and plots the held-out metric
against iterations (one line per seed).

    python benchmarks/default_run.py --seeds 0,1,2 --out results/default_run

Running it again with the same ``--out`` reuses the finished seeds and
continues interrupted ones (refusing folders made with other settings).
Minutes are training plus held-out evaluation.

Extra ``KEY=VALUE`` arguments override run settings (their flat names, as the flags)
(``iterations=20``, ``strategy_options={"sigma": 0.01}`` as JSON).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
from pathlib import Path

import zo_llm
from zo_llm.bench_report import with_wall_time
from zo_llm.config import RunConfig, differences, resolve
from zo_llm.rundir import CHECKPOINT_FILE, RunDir


def run_seed(seed: int, out: Path, overrides: dict) -> dict:
    """Trains one seed, or continues its folder from an earlier call (a finished one is reused)."""
    folder = out / f"seed{seed}"
    config = resolve({"seed": seed, "out": str(folder), "progress": False}, overrides)
    if (folder / CHECKPOINT_FILE).exists():
        check_same_settings(folder, config)
    if (folder / "final").exists():
        pass  # finished by an earlier call: read its numbers back
    elif (folder / CHECKPOINT_FILE).exists():
        zo_llm.resume(folder, iterations=config.loop.iterations, progress=False)
    else:
        if folder.exists():
            shutil.rmtree(folder)  # started but never checkpointed: nothing to keep
        zo_llm.Experiment(config).run()
    evals = with_wall_time(zo_llm.read_metrics(folder))
    metric = _metric(evals[0])
    return {
        "seed": seed,
        "metric": metric,
        "before": evals[0][metric],
        "after": evals[-1][metric],
        "curve": [(r["iteration"], r[metric]) for r in evals],
        "minutes": evals[-1]["wall"] / 60,
    }


def check_same_settings(folder: Path, config: RunConfig) -> None:
    """Refuses to reuse a seed folder made with other settings than this call's."""
    differing = differences(RunDir(folder).read_config(), config.to_dict())
    if differing:
        raise SystemExit(
            f"{folder} was made with other settings ({'; '.join(differing)}); "
            "pass another --out or delete it"
        )


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
    iterations = " ".join(str(i) for i, _ in results[0]["curve"])
    print(
        f"| seed | {metric} before | {metric} after | change | at iterations {iterations} "
        "| minutes |"
    )
    print("|---|---|---|---|---|---|")
    for r in results:
        change = r["after"] - r["before"]
        curve = " ".join(f"{value:.3f}" for _, value in r["curve"])
        print(
            f"| {r['seed']} | {r['before']:.3f} | {r['after']:.3f} | {change:+.3f} | {curve} "
            f"| {r['minutes']:.1f} |"
        )
    befores, afters = [r["before"] for r in results], [r["after"] for r in results]
    changes = [a - b for a, b in zip(afters, befores, strict=True)]
    print(
        f"| mean ± std | {mean_std(befores)} | {mean_std(afters)} | {mean_std(changes)} | "
        f"| {statistics.mean(r['minutes'] for r in results):.1f} |"
    )
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    plot(results, args.out / "heldout_vs_iteration.png")
    print(f"plot: {args.out / 'heldout_vs_iteration.png'}")


if __name__ == "__main__":
    main()
