"""Scoring populations (the :class:`Evaluator` seam) and held-out sets."""

from . import sequential  # noqa: F401 -- registers the sequential evaluator
from .base import EVALUATORS, Evaluator, choose_evaluator, evaluate_candidates, score
from .heldout import evaluate_heldout, evaluate_sampled, evaluate_task
from .sequential import SequentialEvaluator

__all__ = [
    "EVALUATORS",
    "Evaluator",
    "SequentialEvaluator",
    "choose_evaluator",
    "evaluate_candidates",
    "evaluate_heldout",
    "evaluate_sampled",
    "evaluate_task",
    "score",
]
