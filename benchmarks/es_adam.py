"""Would an Adam step earn its place in ``es``? ES with and without one, on the black-box problems.

The measurement behind "Why `es` has no Adam option" in docs/guide.md. ES's
gradient estimate ``g = 1/(N sigma) sum_n z_n eps_n`` drives either the plain
step ``theta += lr g`` or an Adam step (beta 0.9 / 0.999), on the problems of
:mod:`zo_llm.objectives` with their budgets, seeds 0-4, and each method's lr
swept. Adam needs its two moments as dense vectors, so it runs on the plain
vector space only, which is what this script does; on seeded spaces of any
size (LLM weights) those moments would be two weight-sized tensors.

    python benchmarks/es_adam.py

Prints median final value, worst final value and median evaluations to the
problem's target (with how many seeds reached it) per (problem, method, lr).
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import dataclass

import torch

import zo_llm
from zo_llm.candidates import VectorStep
from zo_llm.objectives import PROBLEMS, SETTINGS
from zo_llm.strategies.es import ESConfig, OpenAIES, seeded_update


@dataclass(frozen=True)
class AdamESConfig(ESConfig):
    beta1: float = 0.9
    beta2: float = 0.999
    adam_eps: float = 1e-8


class AdamES(OpenAIES):
    """OpenAI-ES whose gradient estimate goes through Adam (vector spaces only)."""

    config_class = AdamESConfig
    name = "es-adam"

    def _tell(self, candidates, fitness):
        config = self.config
        pairs = seeded_update(candidates, fitness, 1.0 / (len(candidates) * config.sigma))
        theta = self.space.get_vector().clone()
        with self.space.shifted(pairs):  # theta + g, through the space's own noise replay
            gradient = self.space.get_vector() - theta
        if not hasattr(self, "moments"):
            self.moments, self.steps = (torch.zeros_like(theta), torch.zeros_like(theta)), 0
        first, second = self.moments
        self.steps += 1
        first.mul_(config.beta1).add_(gradient, alpha=1 - config.beta1)
        second.mul_(config.beta2).addcmul_(gradient, gradient, value=1 - config.beta2)
        first_hat = first / (1 - config.beta1**self.steps)
        second_hat = second / (1 - config.beta2**self.steps)
        step = theta + config.lr * first_hat / (second_hat.sqrt() + config.adam_eps)
        return {"complete": True, "step": VectorStep(step)}


def run(problem_name: str, strategy, options: dict, seeds: list[int]) -> str:
    problem = PROBLEMS[problem_name]
    finals, hits = [], []
    for seed in seeds:
        result = zo_llm.maximize(
            problem.objective(seed),
            problem.x0(),
            strategy=strategy,
            strategy_options=options,
            max_evaluations=problem.budget,
            monitor=problem.monitor,
            seed=seed,
        )
        finals.append(problem.monitor(result.x))
        reached = [h["evaluations"] for h in result.history if h["monitor"] >= problem.target]
        hits.append(reached[0] if reached else None)
    reached = [h for h in hits if h is not None]
    to_target = f"{statistics.median(reached):.0f}" if reached else "-"
    return (
        f"{statistics.median(finals):.3g} | {min(finals):.3g} | "
        f"{to_target} ({len(reached)}/{len(seeds)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--lrs", default="0.003,0.01,0.03,0.1", help="lr values swept")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    lrs = [float(x) for x in args.lrs.split(",")]
    print("| problem (budget, target) | method | lr | median final | worst | evals to target |")
    print("|---|---|---|---|---|---|")
    for name, problem in PROBLEMS.items():
        tuned = SETTINGS[name]["es"]
        label = f"{name} ({problem.budget}, {problem.target})"
        for method, strategy in (("es", "es"), ("es + adam", AdamES)):
            for lr in lrs:
                result = run(name, strategy, {**tuned, "lr": lr}, seeds)
                print(f"| {label} | {method} | {lr} | {result} |", flush=True)


if __name__ == "__main__":
    main()
