"""Candidates and steps: the vocabulary strategies, spaces and evaluators share (a leaf).

A strategy proposes *candidates* and moves its space by *steps*; a
parametrization turns both into changes of weights; an evaluator applies
candidates one by one or as rows of a batch. All three import these values
from here, downward, and tell the kinds apart by :attr:`Candidate.kind`
rather than by the attributes a value happens to have.

Candidates are seeds, not tensors: over a ``"seeded"`` space a member is
``(seed, scale)``, possibly around an offset point (ESSAM's neighbour of
theta), and a step is ``((seed, coeff), ...)``, replayable anywhere. Over a
small ``"vector"`` space (CMA-ES, evotorch's searchers) both are explicit
vectors. Either kind applies itself (:meth:`Candidate.applied_to`,
:meth:`SeededStep.apply_to`), so evaluators never ask which strategy made it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from .lazy import torch

#: The space kind whose perturbations are named by seeds (any size).
SEEDED = "seeded"
#: The space kind small enough to exchange explicit vectors.
VECTOR = "vector"

#: A seeded update: ``theta += coeff * eps(seed)`` for each pair.
SeededUpdate = Sequence[tuple[int, float]]
#: A seeded update held as a value (hashable, comparable): ``((seed, coeff), ...)``.
SeededPairs = tuple[tuple[int, float], ...]

#: The largest coefficient an fp32 accumulation takes (torch refuses larger scalars).
FP32_MAX = 3.4028234663852886e38


@dataclass(frozen=True)
class Candidate:
    """One member to evaluate: ``theta + sum(c * eps(s) for s, c in offset) + scale * eps(seed)``.

    ``offset`` is the point the member is perturbed around (ESSAM's second
    round: the neighbour of theta); empty, theta itself. The evaluator shifts the
    space there once for all consecutive members that share it
    (:func:`zo_llm.evaluation.evaluate_candidates`); :meth:`applied_to` only
    perturbs.
    """

    kind: ClassVar[str] = SEEDED
    seed: int
    scale: float
    offset: SeededPairs = ()

    def applied_to(self, space: Any) -> contextlib.AbstractContextManager[None]:
        """The space perturbed by ``scale * eps(seed)`` inside the ``with`` block, restored after.

        Around the space's current point: the caller shifts it to ``offset`` first.
        """
        return space.perturbed(self.seed, self.scale)


@dataclass(frozen=True, eq=False)
class VectorCandidate:
    """One member to evaluate: the explicit point ``vector`` of a ``"vector"`` space."""

    kind: ClassVar[str] = VECTOR
    vector: torch.Tensor

    @property
    def offset(self) -> SeededPairs:
        """Empty: an explicit point is perturbed around nothing (see :attr:`Candidate.offset`)."""
        return ()

    def applied_to(self, space: Any) -> contextlib.AbstractContextManager[None]:
        """The space set to ``vector`` inside the ``with`` block, its previous values after."""
        return space.at_vector(self.vector)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VectorCandidate) and torch.equal(self.vector, other.vector)

    __hash__ = None  # equal vectors are equal candidates; tensors are not hashable by value


AnyCandidate = Candidate | VectorCandidate


def update_pairs(update: SeededUpdate) -> list[tuple[int, float]]:
    """``update`` as ``(int, float)`` pairs; a coefficient beyond fp32's range is refused.

    Why: such a step (a huge learning rate times a huge reward) can only make
    the weights inf; torch would raise its own overflow error mid-update.

    Raises:
      OverflowError: naming the coefficient (the runner stops the run on it).
    """
    pairs = [(int(seed), float(coeff)) for seed, coeff in update]
    for seed, coeff in pairs:
        if not abs(coeff) <= FP32_MAX:
            raise OverflowError(f"update coefficient {coeff:g} of seed {seed} is beyond fp32")
    return pairs


@dataclass(frozen=True)
class SeededStep:
    """A strategy's move of a seeded space, as a value: ``apply_update(pairs, decay)``.

    Strategies return their step rather than applying it, so whoever drives
    them applies it (:meth:`Strategy.tell`) and can replay the very same step
    elsewhere, e.g. on the replicas of a distributed evaluator. Either kind
    of step applies itself, so callers never ask which one they hold.
    """

    pairs: SeededPairs
    decay: float = 0.0

    def apply_to(self, space: Any) -> None:
        space.apply_update(self.pairs, decay=self.decay)


@dataclass(frozen=True, eq=False)
class VectorStep:
    """A strategy's move of a vector space, as a value: the space is set to ``vector``."""

    vector: torch.Tensor

    def apply_to(self, space: Any) -> None:
        space.set_vector(self.vector)
