"""The batched evaluator: the whole population as rows of one ``generate``.

For spaces that can add each member's perturbation next to the shared base
weights (``supports_batched``: ``lowrank``, ``lora``, ``svd``, ``tensor``),
members x prompts become the rows of batched generation, split only by the
row budget (``--generation-batch-size``), each member's rows a block
(:meth:`Generator.generate_blocks`); the space prepares the members once
per population (:meth:`member_batch`) and is told which members a forward's
blocks belong to (:meth:`rows_as_members`), so no member's weights are ever
materialised. Candidates sharing an offset (ESSAM's second round) are
evaluated around it, shifted once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..lazy import torch
from ..tasks.base import Example
from .base import EVALUATORS, Evaluator, around_offsets, score_members

if TYPE_CHECKING:
    from ..candidates import AnyCandidate
    from ..parametrizations.base import Parametrization
    from .scores import Scores


@EVALUATORS.register("batched")
class BatchedEvaluator(Evaluator):
    """Scores all members at once, each as rows of one batched generation over shared weights."""

    preference = 10  # tried before the sequential evaluator where the space supports it
    needs_forward_hooks = True

    @classmethod
    def supports(cls, space: type[Parametrization]) -> bool:
        return space.supports_batched

    @classmethod
    def default_rows(cls, device: Any) -> int:
        """Measured (``benchmarks/throughput.py``): rows per batch that generate fastest.

        On a CPU decoding gains from batching up to a few dozen rows and
        then loses (64 rows of SmolLM2-135M: half the time per row of 8; 240
        rows: slower than 64); on a GPU, where decoding is memory-bound, far
        larger batches keep paying, so the whole population usually fits one.
        """
        return 64 if torch.device(device).type == "cpu" else 512

    def member_groups(self, members: int, prompts: int) -> list[range]:
        """The members sharing a forward batch: scored apart, their rows would differ."""
        return self.generator.member_groups(prompts, members)

    def evaluate(self, candidates: Sequence[AnyCandidate], examples: Sequence[Example]) -> Scores:
        prepared = self.prepare(examples)
        completions: list[list[str]] = []
        for members in around_offsets(self.space, candidates):
            completions += self._generate(members, prepared)
        return score_members(self.scorer, examples, completions)

    def _generate(self, members: list[AnyCandidate], prepared: Any) -> list[list[str]]:
        """Each member's completions of ``prepared``, as blocks of rows of shared batches."""
        batch = self.space.member_batch(members)  # once for all the batches of rows
        return self.generator.generate_blocks(
            prepared,
            len(members),
            around_batch=lambda chosen: self.space.rows_as_members(batch, chosen),
        )
