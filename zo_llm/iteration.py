"""One iteration of any strategy: ask -> evaluate -> tell, until the strategy says it is complete.

Written once and used by the runner, :func:`zo_llm.maximize`, the tests and
the benchmarks. An iteration may be several ask/tell rounds (ESSAM has two);
what evaluates a round is a function of its candidates, so a model-free
objective and a population of language models go through the same loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .candidates import AnyCandidate
    from .evaluation.scores import Scores
    from .strategies.base import Strategy

__all__ = ["IterationResult", "run_iteration"]


@dataclass
class IterationResult:
    """Every round of one iteration, put together."""

    rewards: np.ndarray  # each evaluated candidate's mean reward, in the order evaluated
    evaluations: int  # candidates evaluated over all rounds
    invalid: int  # rewards the strategy replaced (not finite)
    failures: int  # completion rewards that failed
    info: dict[str, Any] = field(default_factory=dict)  # the completing tell's info

    def summary(self) -> dict[str, float]:
        """Mean, std, min and max over the finite rewards (NaN when none is finite)."""
        finite = self.rewards[np.isfinite(self.rewards)]
        if not finite.size:
            finite = np.array([np.nan])
        return {
            "reward_mean": float(finite.mean()),
            "reward_std": float(finite.std()),
            "reward_min": float(finite.min()),
            "reward_max": float(finite.max()),
        }


Evaluate = Callable[["Sequence[AnyCandidate]"], "Scores"]


def run_iteration(strategy: Strategy, evaluate: Evaluate) -> IterationResult:
    """Runs every ask/tell round of the strategy's current iteration.

    Args:
      strategy: any :class:`~zo_llm.strategies.base.Strategy`.
      evaluate: scores one round's candidates (same order), e.g. an
        evaluator's ``evaluate`` bound to the iteration's prompts.
    """
    rewards: list[float] = []
    evaluations = invalid = failures = 0
    while True:
        candidates = strategy.ask()
        scores = evaluate(candidates)
        info = strategy.tell(candidates, scores.per_prompt)
        rewards.extend(scores.rewards.tolist())
        evaluations += len(candidates)
        invalid += info.get("invalid", 0)
        failures += scores.failures
        if info["complete"]:
            return IterationResult(np.asarray(rewards), evaluations, invalid, failures, info)
