"""Shared machinery of strategies that exchange explicit vectors with a ``"vector"`` space.

CMA-ES and evotorch's searchers keep a search distribution over the space's
vector. They differ only in how they sample and update it; what is common
lives here:

- the distribution starts from the space's vector on the first :meth:`ask`
  (a space may be bound to its model after the strategy is built, and knows
  its ``dim`` only then, so the size check is repeated there);
- :meth:`ask` returns the same population until :meth:`tell` (asking twice
  draws nothing new, and a round skipped for lack of rewards re-offers it);
- each :meth:`tell` steps the space to the distribution's mean (a
  :class:`VectorStep`), the point that held-out evaluation and
  ``save_pretrained`` see.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import numpy as np

from ..candidates import VECTOR, VectorCandidate, VectorStep
from ..lazy import torch
from ..parametrizations.base import Parametrization
from ..parametrizations.noise import fold_in
from .base import Strategy


class VectorStrategy(Strategy):
    """Base of explicit-vector strategies; subclasses implement the distribution."""

    supported_kinds = frozenset({VECTOR})
    #: Largest dim a diagonal/separable distribution accepts: its population
    #: is held as explicit vectors (popsize x dim numbers).
    separable_max_dim = 1_000_000

    def __init__(self, space: Parametrization, config: Any = None, seed: int = 0) -> None:
        super().__init__(space, config, seed)
        self.started = False
        self._pending: torch.Tensor | None = None  # the asked, not yet told, population

    @property
    def library_seed(self) -> int:
        """The seed handed to the wrapped library's generator: from the run seed, in [1, 2**32)."""
        return fold_in(self.seed, 0x5EED) % (2**32 - 1) + 1

    def _ask(self) -> list[VectorCandidate]:
        if not self.started:
            self.check_dim()
            self._start(self.space.get_vector())
            self.started = True
        if self._pending is None:
            self._pending = self._sample()
        return [VectorCandidate(x) for x in self._pending]

    def _tell(self, candidates: list[VectorCandidate], rewards: np.ndarray) -> dict[str, Any]:
        if self._pending is None or len(candidates) != len(self._pending):
            raise RuntimeError("tell() must get the rewards of the population ask() returned")
        info = self._update(self._pending, rewards)
        self._pending = None
        return {"complete": True, "step": VectorStep(self.mean), **info}

    @abstractmethod
    def _start(self, x0: torch.Tensor) -> None:
        """Creates the search distribution centred on ``x0``."""

    @abstractmethod
    def _sample(self) -> torch.Tensor:
        """A new population, shape (popsize, dim)."""

    @abstractmethod
    def _update(self, population: torch.Tensor, rewards: np.ndarray) -> dict[str, Any]:
        """Moves the distribution given the rewards (higher is better) of ``population``."""

    @property
    @abstractmethod
    def mean(self) -> torch.Tensor:
        """The distribution's mean, the strategy's current recommendation."""

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "started": self.started, "pending": self._pending}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.started = bool(state["started"])
        self._pending = state["pending"]
