"""The sequential evaluator: each member in turn, on the one model in memory."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..iteration import Scores
from ..tasks.base import Example, mean_finite
from .base import EVALUATORS, Evaluator, evaluate_candidates, score

if TYPE_CHECKING:
    from ..strategies.base import AnyCandidate


@EVALUATORS.register("sequential")
class SequentialEvaluator(Evaluator):
    """Scores members one after another: apply the candidate, generate, score, restore.

    Works for every space and candidate kind: each candidate applies itself
    (a seeded perturbation, or an explicit vector) and restores the space
    exactly. All members see the same encoded prompts.
    """

    def evaluate(
        self,
        candidates: Sequence[AnyCandidate],
        examples: Sequence[Example],
        encoded: list[list[int]],
    ) -> Scores:
        generations = evaluate_candidates(
            self.space, candidates, lambda: self.generator.generate(encoded)
        )
        rewards, failures = [], 0
        for completions in generations:  # scored with the space restored, in member order
            values = score(self.task, examples, completions)
            failures += sum(1 for v in values if math.isnan(v))
            rewards.append(mean_finite(values))
        return Scores(np.asarray(rewards, dtype=np.float64), failures)
