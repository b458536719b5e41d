"""The sequential evaluator: each member in turn, on the one model in memory."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..tasks.base import Example
from .base import EVALUATORS, Evaluator, evaluate_candidates, score_members

if TYPE_CHECKING:
    from ..candidates import AnyCandidate
    from .scores import Scores


@EVALUATORS.register("sequential")
class SequentialEvaluator(Evaluator):
    """Scores members one after another: apply the candidate, generate, score, restore.

    Works for every space and candidate kind: each candidate applies itself
    (a seeded perturbation, or an explicit vector) and restores the space
    exactly. All members see the same prepared prompts.
    """

    def evaluate(self, candidates: Sequence[AnyCandidate], examples: Sequence[Example]) -> Scores:
        prepared = self.prepare(examples)
        generations = evaluate_candidates(
            self.space, candidates, lambda: self.generator.generate(prepared)
        )
        return score_members(self.scorer, examples, generations)
