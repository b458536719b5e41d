"""The strategy protocol: ask for candidates, tell their rewards, update.

Like pycma, evotorch and evosax, a strategy is driven by ``ask``/``tell``. The
public methods here do the shared bookkeeping (generation counter, checks,
non-finite rewards) and call ``_ask``/``_tell``, which a strategy implements.
An iteration may be several ask/tell rounds (ESSAM has two); ``tell`` says
when one is complete.

Candidates are seeds, not tensors: a strategy bound to a ``"seeded"``
parametrization proposes ``(seed, scale)`` pairs and asks the parametrization to
apply updates written as ``[(seed, coeff), ...]``. Strategies over small
``"vector"`` spaces (CMA-ES, evotorch's searchers) propose explicit vectors
instead. Either kind of candidate knows how to apply itself to a space
(:meth:`Candidate.applied_to`), so evaluators never ask which strategy made it.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from ..parametrizations.base import PARAMETRIZATIONS, SEEDED, Parametrization
from ..parametrizations.noise import fold_in
from ..registry import Registry


@dataclass(frozen=True)
class Candidate:
    """One member to evaluate: the point ``theta + scale * eps(seed)``."""

    seed: int
    scale: float

    def applied_to(self, space: Parametrization) -> contextlib.AbstractContextManager[None]:
        """The space perturbed to this member inside the ``with`` block, restored exactly after."""
        return space.perturbed(self.seed, self.scale)


@dataclass(frozen=True, eq=False)
class VectorCandidate:
    """One member to evaluate: the explicit point ``vector`` of a ``"vector"`` space."""

    vector: torch.Tensor

    def applied_to(self, space: Parametrization) -> contextlib.AbstractContextManager[None]:
        """The space set to ``vector`` inside the ``with`` block, its previous values after."""
        return space.at_vector(self.vector)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VectorCandidate) and torch.equal(self.vector, other.vector)

    __hash__ = None  # equal vectors are equal candidates; tensors are not hashable by value


AnyCandidate = Candidate | VectorCandidate


class IncompatibleSpaceError(ValueError):
    """A strategy was paired with a parametrization it cannot search."""


class Strategy(ABC):
    """Base class of all strategies.

    Subclasses set ``config_class`` and ``supported_kinds`` and implement
    :meth:`_ask` and :meth:`_tell`. Rewards are "higher is better".
    """

    config_class: ClassVar[type]
    supported_kinds: ClassVar[frozenset[str]] = frozenset()
    name: ClassVar[str] = "strategy"

    def __init__(self, space: Parametrization, config: Any = None, seed: int = 0) -> None:
        if not self.supported_kinds & space.kinds:
            raise IncompatibleSpaceError(self._pairing_message(space))
        self.space = space
        self.config = config if config is not None else self.config_class()
        self.seed = int(seed)
        self.generation = 0
        self.check_dim()

    def max_dim(self) -> int | None:
        """The largest space this strategy (as configured) can search; None: any size."""
        return None

    def check_dim(self) -> None:
        """Refuses a space too large for this strategy, naming what would fit.

        Called at construction and again by strategies that start on their
        first ask, since a space learns its ``dim`` only when bound to a model.
        """
        limit = self.max_dim()
        if limit is None or self.space.dim <= limit:
            return
        spaces = spaces_searched_by(self.supported_kinds)
        any_size = strategies_searching({SEEDED})
        fixes = [self._too_large_hint(), self.space.size_hint()]
        fixes = [fix for fix in fixes if fix]
        fixes.append(
            f"search another space (spaces that work with {self.name!r}: {', '.join(spaces)})"
        )
        fixes.append(f"search seeded spaces of any size with: {', '.join(any_size)}")
        raise IncompatibleSpaceError(
            f"strategy {self.name!r} searches at most {limit} dimensions as configured, but "
            f"{_space_label(self.space)} has dim={self.space.dim}. To fit: {'; or '.join(fixes)}"
        )

    def _too_large_hint(self) -> str:
        """What to change in this strategy's config for a larger space ("" if nothing)."""
        return ""

    @classmethod
    def test_config(cls) -> Any:
        """A config small enough for unit tests."""
        return cls.config_class()

    def _pairing_message(self, space: Parametrization) -> str:
        """Names both sides: the spaces this strategy searches, and the strategies for ``space``."""
        fitting = spaces_searched_by(self.supported_kinds)
        searchers = strategies_searching(space.kinds)
        label = _space_label(space)
        return (
            f"strategy {self.name!r} searches {'/'.join(sorted(self.supported_kinds))} spaces, "
            f"but {label} is {'/'.join(sorted(space.kinds)) or 'of no kind'}; "
            f"spaces that work with {self.name!r}: {', '.join(fitting) or '(none registered)'}; "
            f"strategies that work with {label}: {', '.join(searchers) or '(none registered)'}"
        )

    def member_seed(self, member: int, stage: int = 0) -> int:
        """Noise seed of ``member``: a hash of (run seed, generation, stage, member)."""
        return fold_in(self.seed, self.generation, stage, member)

    def ask(self) -> list[AnyCandidate]:
        """The candidates of the current round."""
        return self._ask()

    def tell(self, candidates: Sequence[AnyCandidate], rewards: Sequence[float]) -> dict[str, Any]:
        """Takes the rewards of :meth:`ask`'s candidates and updates the search point.

        Non-finite rewards (a failed or NaN reward) are replaced by the worst
        finite reward of the population, so a broken member never pulls the
        update towards itself; if no reward is finite the round is skipped
        and nothing moves. Returns an info dict with ``complete`` (the
        iteration ended) and ``invalid`` (how many rewards were replaced).
        """
        values = np.asarray(rewards, dtype=np.float64)
        if values.shape != (len(candidates),):
            raise ValueError(f"got {values.size} rewards for {len(candidates)} candidates")
        finite = np.isfinite(values)
        invalid = int((~finite).sum())
        if not finite.any():
            return {"complete": True, "invalid": invalid, "skipped": True} | self._skip()
        values = np.where(finite, values, values[finite].min())
        info = {"invalid": invalid, **self._tell(list(candidates), values)}
        info.setdefault("complete", True)
        if info["complete"]:
            self.generation += 1
        return info

    def _skip(self) -> dict[str, Any]:
        """Called when a round has no usable reward; the generation still advances."""
        self.generation += 1
        return {}

    @abstractmethod
    def _ask(self) -> list[AnyCandidate]: ...

    @abstractmethod
    def _tell(self, candidates: list[AnyCandidate], rewards: np.ndarray) -> dict[str, Any]: ...

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-identically (the point itself lives in the space)."""
        return {"generation": self.generation, "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generation = int(state["generation"])
        self.seed = int(state["seed"])


def spaces_searched_by(kinds: Iterable[str]) -> list[str]:
    """Registered spaces a strategy supporting ``kinds`` can search (sharing a kind)."""
    kinds = set(kinds)
    return [name for name in PARAMETRIZATIONS.names() if PARAMETRIZATIONS.get(name).kinds & kinds]


def strategies_searching(kinds: Iterable[str]) -> list[str]:
    """Registered strategies that can search a space of ``kinds``."""
    kinds = set(kinds)
    return [name for name in STRATEGIES.names() if STRATEGIES.get(name).supported_kinds & kinds]


def _space_label(space: Parametrization) -> str:
    """``'lora'`` for a registered space, else its class name (a user's own space)."""
    name = PARAMETRIZATIONS.name_of(type(space))
    return repr(name) if name else type(space).__name__


STRATEGIES: Registry[type[Strategy]] = Registry("strategy")
