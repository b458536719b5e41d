"""Every registered strategy on the same functions with the same budget of evaluations.

Prints one table: per function and strategy, the noise-free value of the final
search point after the budget (median and worst over seeds), the evaluations
until the search point first reached the target (median over the seeds that
reached it, and how many did), and the seconds per run.

    python benchmarks/strategies.py [--seeds 5] [--strategies es,cma-es] [--functions sphere]
    python benchmarks/strategies.py --model-task --functions= --seeds 1 --threads 2

Functions (maximised; start at 0): a shifted sphere in 10 dimensions,
Rosenbrock in 2, an ill-conditioned quadratic in 10 with N(0, 0.1^2) noise
on every evaluation. They, their budgets and targets, and the settings per
function and strategy come from :mod:`zo_llm.objectives` (the libraries'
defaults are meant for other scales: ES's for LLM weights), as in
``tests/test_blackbox.py``, which asserts the targets for seed 0.

``--model-task`` (off by default: it takes minutes) adds a second table: the
shipped model ``zo-tiny`` fine-tuned on ``countdown-easy`` by every strategy
through the normal runner (``zo_llm.train``), each with the same budget of
sample evaluations (members x training prompts). Strategies that search
seeded spaces (es, essam, mezo) search all the model's weights (``full``);
the explicit-vector strategies (cma-es, snes, xnes, pgpe, cem) search the
singular values of its weight matrices (``svd``, ESSA's space: the top 16 of
each of the 28 projections, 448 numbers). Iterations per strategy are the
budget divided by what one iteration evaluates, as each strategy states it
(``evaluations_per_iteration``: ESSAM asks 2N members per iteration, MeZO 2q).
The held-out set (first ``--model-eval-size`` eval problems, greedy) is scored
after every iteration. The table gives held-out accuracy before and after,
the final held-out reward (0.1 x format + 1 x correct, averaged), the sample
evaluations spent when held-out accuracy first reached ``--model-target``
("-" if never; the resolution is one iteration), the sample evaluations used
in all, and the wall time of the run (model loading and every evaluation
included). ``--seeds`` sets the runs per strategy there too (seeds 0..N-1;
accuracies and rewards are medians, evaluations to target the median over the
seeds that reached it). With the defaults and one seed it took 6 minutes on
a 2-core CPU shared with other jobs (365 s; vector strategies 34-74 s each).
Where other work shares the cores, use ``--threads 1``: torch's threads wait
for each other, and a run with 2 threads beside a busy core took 10-20x
longer.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch

import zo_llm
from zo_llm.components import build_space, build_strategy
from zo_llm.objectives import PROBLEMS, SETTINGS
from zo_llm.parametrizations import SEEDED


def run(function: str, strategy: str, seeds: int) -> dict:
    problem = PROBLEMS[function]
    finals, reached, seconds = [], [], []
    for seed in range(seeds):
        result = zo_llm.maximize(
            problem.objective(seed),
            problem.x0(),
            strategy=strategy,
            strategy_options=SETTINGS[function].get(strategy, {}),
            max_evaluations=problem.budget,
            monitor=problem.monitor,
            seed=seed,
        )
        finals.append(problem.monitor(result.x))
        hits = [h["evaluations"] for h in result.history if h["monitor"] >= problem.target]
        if hits:
            reached.append(hits[0])
        seconds.append(result.seconds)
    return {
        "median": statistics.median(finals),
        "worst": min(finals),
        "to_target": f"{statistics.median(reached):.0f}" if reached else "-",
        "reached": f"{len(reached)}/{seeds}",
        "seconds": statistics.mean(seconds),
    }


def print_header(header: str) -> float:
    """Prints a table's header and rule; returns the start time of the table."""
    print(header)
    print("-" * len(header))
    return time.perf_counter()


def function_table(functions: list[str], strategies: list[str], seeds: int) -> None:
    start = print_header(
        f"{'function':<16} {'budget':>6} {'target':>7} {'strategy':<8} "
        f"{'final median':>12} {'final worst':>11} {'evals to target':>15} "
        f"{'reached':>7} {'s/run':>6}"
    )
    for function in functions:
        problem = PROBLEMS[function]
        for strategy in strategies:
            row = run(function, strategy, seeds)
            print(
                f"{function:<16} {problem.budget:>6} {problem.target:>7} {strategy:<8} "
                f"{row['median']:>12.3g} {row['worst']:>11.3g} {row['to_target']:>15} "
                f"{row['reached']:>7} {row['seconds']:>6.2f}",
                flush=True,
            )
    print(f"\n{time.perf_counter() - start:.0f} s in total; values are rewards (0 is optimal)")


# --- the shipped model's task ---------------------------------------------------

MODEL = "zo-tiny"
TASK = "countdown-easy"
SEEDED_SPACE: tuple[str, dict[str, Any]] = ("full", {})
VECTOR_SPACE: tuple[str, dict[str, Any]] = ("svd", {})  # top 16 singular values per matrix

# Strategy options on zo-tiny (absent: the defaults; es's are `zo-llm train`'s).
# Rewards are 0/1 correctness + 0.1 x format, averaged over the prompts.
MODEL_SETTINGS: dict[str, dict[str, Any]] = {
    # MeZO's lr 1e-6 was chosen for cross-entropy losses. Here g = dR / (2 eps) with dR a
    # difference of mean 0/1 rewards over 16 prompts (steps of 1/16): g ~ 30 when the two
    # probes differ, 0 when they tie. Measured (seed 0, 1920 samples, q=4, eps 1e-3):
    # lr 1e-8 -> 0.34, 1e-7 -> 0.42, 1e-6 -> 0.91, 1e-5 and 3e-5 -> 0.92, 1e-4 -> 0.87,
    # 1e-3 -> 0.00 (from 0.33). lr 1e-5 sits mid-band; q=4 averages 4 probes per step
    # (q=1 also reached 0.92 at 4800 samples).
    "mezo": {"q": 4, "eps": 1e-3, "lr": 1e-5},
}


def space_for(strategy: str) -> tuple[str, dict[str, Any]]:
    """All the weights for strategies that search seeded spaces, else the singular values."""
    kinds = zo_llm.STRATEGIES.get(strategy).supported_kinds
    return SEEDED_SPACE if SEEDED in kinds else VECTOR_SPACE


def members_per_iteration(strategy: str, options: dict[str, Any]) -> tuple[int, int]:
    """(members, dim): what one iteration evaluates, as the strategy states it (no dry run).

    Vector strategies size their population from the dim, so the space is
    bound to the model first.
    """
    model, _ = zo_llm.load_model(MODEL)
    space = build_space(*space_for(strategy))
    space.bind(model)
    return build_strategy(strategy, space, options).evaluations_per_iteration(), space.dim


def run_model_task(strategy: str, args: argparse.Namespace) -> dict[str, Any]:
    options = MODEL_SETTINGS.get(strategy, {})
    space, space_options = space_for(strategy)
    members, dim = members_per_iteration(strategy, options)
    iterations = args.model_budget // (members * args.model_batch_size)
    row: dict[str, Any] = {"space": f"{space} ({dim})", "iterations": iterations}
    if iterations < 1:
        return row | {"samples": 0, "note": f"one iteration needs {members} members"}
    before, after, rewards, reached, seconds = [], [], [], [], []
    for seed in range(args.seeds):
        settings = dict(
            model=MODEL,
            task=TASK,
            strategy=strategy,
            space=space,
            strategy_options=options,
            space_options=space_options,
            iterations=iterations,
            batch_size=args.model_batch_size,
            max_new_tokens=32,
            eval_every=1,
            eval_size=args.model_eval_size,
            seed=seed,
            threads=args.threads,
            progress=False,
            tensorboard=False,
        )
        start = time.perf_counter()
        records = zo_llm.train(**settings).records
        seconds.append(time.perf_counter() - start)
        evals = [r for r in records if r["type"] == "eval"]
        before.append(evals[0]["accuracy"])
        after.append(evals[-1]["accuracy"])
        rewards.append(evals[-1]["reward"])
        hits = [r["samples"] for r in evals if r["accuracy"] >= args.model_target]
        if hits:
            reached.append(hits[0])
    return row | {
        "samples": iterations * members * args.model_batch_size,
        "before": statistics.median(before),
        "after": statistics.median(after),
        "reward": statistics.median(rewards),
        "to_target": f"{statistics.median(reached):.0f}" if reached else "-",
        "reached": f"{len(reached)}/{args.seeds}",
        "seconds": statistics.mean(seconds),
    }


def model_task_table(strategies: list[str], args: argparse.Namespace) -> None:
    print(
        f"\n{MODEL} on {TASK}: {args.model_budget} sample evaluations (members x "
        f"{args.model_batch_size} prompts), held-out accuracy and reward on "
        f"{args.model_eval_size} problems after every iteration, target accuracy "
        f"{args.model_target}, {args.seeds} seed(s)"
    )
    start = print_header(
        f"{'strategy':<8} {'space (dim)':<16} {'iterations':>10} {'samples':>7} "
        f"{'acc before':>10} {'acc after':>9} {'final reward':>12} {'evals to target':>15} "
        f"{'reached':>7} {'s/run':>6}"
    )
    for strategy in strategies:
        row = run_model_task(strategy, args)
        if "note" in row:
            print(f"{strategy:<8} {row['space']:<16} {0:>10} {0:>7}  skipped: {row['note']}")
            continue
        print(
            f"{strategy:<8} {row['space']:<16} {row['iterations']:>10} {row['samples']:>7} "
            f"{row['before']:>10.2f} {row['after']:>9.2f} {row['reward']:>12.3f} "
            f"{row['to_target']:>15} {row['reached']:>7} {row['seconds']:>6.0f}",
            flush=True,
        )
    print(f"\n{time.perf_counter() - start:.0f} s in total")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5, help="runs per cell (seeds 0..N-1)")
    parser.add_argument("--strategies", help="comma-separated names (default: all registered)")
    parser.add_argument(
        "--functions",
        help=f"comma-separated, of: {', '.join(PROBLEMS)} (default: all; empty: none)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument(
        "--model-task",
        action="store_true",
        help=f"also fine-tune {MODEL} on {TASK} with every strategy (minutes)",
    )
    parser.add_argument(
        "--model-budget",
        type=int,
        default=1920,
        help="sample evaluations (members x prompts) per model run",
    )
    parser.add_argument(
        "--model-batch-size", type=int, default=16, help="training prompts per iteration"
    )
    parser.add_argument("--model-eval-size", type=int, default=100, help="held-out problems scored")
    parser.add_argument(
        "--model-target",
        type=float,
        default=0.6,
        help="held-out accuracy that counts as reached (zo-tiny starts at about 0.3)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    strategies = args.strategies.split(",") if args.strategies else zo_llm.STRATEGIES.names()
    if args.functions is None:
        functions = list(PROBLEMS)
    else:
        functions = [name for name in args.functions.split(",") if name]

    if functions:
        function_table(functions, strategies, args.seeds)
    if args.model_task:
        model_task_table(strategies, args)


if __name__ == "__main__":
    main()
