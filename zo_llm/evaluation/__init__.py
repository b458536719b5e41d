"""Scoring populations (the :class:`Evaluator` seam) and held-out sets.

The evaluators and their registry import no heavy library, so a run config
can choose and check its evaluator before anything loads; the held-out
functions (which generate text) are imported on first use.
"""

from ..lazy import lazy_exports
from . import batched, sequential  # noqa: F401 -- register the evaluators
from .base import EVALUATORS, Evaluator, choose_evaluator, evaluate_candidates, score
from .batched import BatchedEvaluator
from .sequential import SequentialEvaluator

_EXPORTS = {name: "heldout" for name in ("evaluate_heldout", "evaluate_sampled", "evaluate_task")}

__all__ = [
    "EVALUATORS",
    "BatchedEvaluator",
    "Evaluator",
    "SequentialEvaluator",
    "choose_evaluator",
    "evaluate_candidates",
    "evaluate_heldout",
    "evaluate_sampled",
    "evaluate_task",
    "score",
]

__getattr__ = lazy_exports(__name__, _EXPORTS)
