"""Scoring populations (the :class:`Evaluator` seam) and held-out sets.

The evaluators and their registry import no heavy library (Ray is imported
by the ``ray`` wrapper when it starts), so a run config can choose and check
its evaluator before anything loads.
"""

from ..lazy import public_names as _public_names
from . import batched, distributed, sequential  # noqa: F401 -- register the evaluators
from .base import (
    EVALUATORS,
    Evaluator,
    build_evaluator,
    check_distribution,
    choose_evaluator,
    evaluate_candidates,
    score,
)
from .batched import BatchedEvaluator
from .distributed import RayEvaluator
from .heldout import evaluate_heldout, evaluate_sampled, evaluate_task
from .scores import Scores
from .sequential import SequentialEvaluator

__all__ = _public_names(globals())
