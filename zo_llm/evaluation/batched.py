"""The batched evaluator: the whole population as rows of one ``generate``.

For spaces that can add each member's perturbation next to the shared base
weights (``supports_batched``, e.g. ``lowrank``), members x prompts become
the rows of batched generation, split only by the row budget
(``--generation-batch-size``); the space prepares the members' factors once
(:meth:`member_factors`) and is told which member each row of a forward pass
belongs to (:meth:`rows_as_members`), so no member's weights are ever
materialised. Candidates sharing an offset (ESSAM's second round) are
evaluated around it, shifted once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..iteration import Scores
from ..tasks.base import Example
from .base import EVALUATORS, Evaluator, around_offsets, score_members

if TYPE_CHECKING:
    from ..parametrizations.base import Parametrization
    from ..strategies.base import AnyCandidate


@EVALUATORS.register("batched")
class BatchedEvaluator(Evaluator):
    """Scores all members at once, each as rows of one batched generation over shared weights."""

    preference = 10  # tried before the sequential evaluator where the space supports it

    @classmethod
    def supports(cls, space: type[Parametrization]) -> bool:
        return bool(getattr(space, "supports_batched", False))

    def evaluate(
        self,
        candidates: Sequence[AnyCandidate],
        examples: Sequence[Example],
        encoded: list[list[int]],
    ) -> Scores:
        completions: list[list[str]] = []
        for members in around_offsets(self.space, candidates):
            completions += self._generate(members, encoded)
        return score_members(self.task, examples, completions)

    def _generate(self, members: list[AnyCandidate], encoded: list[list[int]]) -> list[list[str]]:
        """Each member's completions of ``encoded``; rows are (member, prompt), member-major."""
        prompts = len(encoded)
        rows = [ids for _ in members for ids in encoded]
        owner = [row // prompts for row in range(len(rows))]
        factors = self.space.member_factors(members)  # once for all the batches of rows
        texts = self.generator.generate(
            rows,
            around_batch=lambda batch: self.space.rows_as_members(
                factors, [owner[row] for row in batch]
            ),
        )
        return [texts[m * prompts : (m + 1) * prompts] for m in range(len(members))]
