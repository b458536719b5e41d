"""ES with a sharpness-aware two-stage step (name: ``essam``).

Implements ESSAM (Sun et al., *ESSAM: A Novel Competitive Evolution
Strategies Approach to Reinforcement Learning for Memory Efficient LLMs
Fine-Tuning*, arXiv 2602.01003, https://arxiv.org/abs/2602.01003): SAM
(Foret et al. 2021) with both gradients estimated by OpenAI-style ES.

.. math::

    g = \\sum_n z_n \\varepsilon_n \\quad (\\text{stage 1, at } \\theta), \\qquad
    \\tilde\\theta = \\theta - \\rho \\, g / \\lVert g \\rVert, \\\\
    \\theta \\leftarrow (1 - \\alpha\\lambda)\\,\\theta
        + \\frac{\\alpha}{N} \\sum_m z'_m \\varepsilon'_m
    \\quad (\\text{stage 2: fresh seeds, rewards at } \\tilde\\theta + \\sigma \\varepsilon'_m)

Rewards are maximised, so the neighbour point lies *against* g: towards
lower reward, the worst point of the rho-ball to first order. Both moves are
seeded: stage 2's candidates carry the neighbour point as their ``offset``, a
``(seed, coeff)`` combination of stage 1's noise, and the evaluator shifts
the space there once for the round (:meth:`Parametrization.shifted`) and back
exactly after it, so memory stays at inference level, asking moves nothing
and the update history records only the real step.

‖g‖ (option ``grad_norm``):

- ``"exact"`` (default): regenerates stage 1's noise once more and sums
  squares chunk by chunk (N noise draws, one fp32 chunk buffer; about a
  seventh of an iteration's noise work: 2N+2N to perturb and restore, N to
  shift, N to unshift, N to update);
- ``"estimate"``: ``sqrt(dim * sum_n c_n^2)``, the expectation of ‖g‖² for
  independent Gaussian noise; relative error about ``sqrt(2 / dim)``, so
  fine for models, poor for small vectors;
- ``"none"``: no normalisation, the neighbour is ``theta - rho/N sum z_n eps_n``
  as in the authors' released script (github.com/szs777/ESSAM), where rho is
  then a coefficient (their default 5e-4), not a radius.

Defaults are ES's (the script's N=30, sigma=1e-3, lr=5e-4) with rho=0.05,
SAM's usual radius.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..candidates import Candidate, SeededPairs
from ..parametrizations.base import Parametrization
from .base import STRATEGIES
from .es import ESConfig, OpenAIES, seeded_update

GRAD_NORMS = ("exact", "estimate", "none")


@dataclass(frozen=True)
class ESSAMConfig(ESConfig):
    """ES's hyperparameters plus the neighbourhood radius."""

    rho: float = field(
        default=0.05, metadata={"help": "neighbourhood radius: step to theta - rho * g/||g||"}
    )
    grad_norm: str = field(
        default="exact",
        metadata={"help": "||g||: exact (regenerated noise), estimate (sqrt(dim sum c^2)) or none"},
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.rho > 0:
            raise ValueError(f"rho={self.rho} must be positive")
        if self.grad_norm not in GRAD_NORMS:
            raise ValueError(
                f"grad_norm={self.grad_norm!r} is not valid; use one of: {', '.join(GRAD_NORMS)}"
            )


@STRATEGIES.register("essam")
class ESSAM(OpenAIES):
    """ES with a sharpness-aware two-stage step (Sun et al. 2026)."""

    config_class = ESSAMConfig

    @classmethod
    def space_methods(cls, config: ESSAMConfig) -> tuple[str, ...]:
        """The neighbour point is a temporary shift of the space; its exact norm is computed
        by the space (``grad_norm="exact"``)."""
        exact = ("update_norm",) if config.grad_norm == "exact" else ()
        return ("shift", "unshift", *exact)

    def __init__(
        self, space: Parametrization, config: ESSAMConfig | None = None, seed: int = 0
    ) -> None:
        super().__init__(space, config, seed)
        self.stage = 0
        self._neighbour: SeededPairs = ()  # the offset of the neighbour point from theta

    @classmethod
    def test_config(cls) -> ESSAMConfig:
        return ESSAMConfig(population=4, sigma=0.05, lr=0.05, rho=0.05)

    def evaluations_per_iteration(self) -> int:
        return 2 * self.config.population

    def _ask(self) -> list[Candidate]:
        if self.stage == 0:
            return self._population(stage=0)
        return self._population(stage=1, offset=self._neighbour)

    def _tell(self, candidates: list[Candidate], fitness: np.ndarray) -> dict[str, Any]:
        if self.stage == 0:
            direction = seeded_update(candidates, fitness, 1.0)  # g = sum c_n eps_n
            norm = self._norm(direction, len(candidates))
            rho = self.config.rho
            self._neighbour = tuple((s, -rho * c / norm) for s, c in direction) if norm > 0 else ()
            self.stage = 1
            info: dict[str, Any] = {"complete": False}
            if self.config.grad_norm != "none":
                info["grad_norm"] = norm
            return info
        self._reset()
        return super()._tell(candidates, fitness)

    def _norm(self, direction: SeededPairs, population: int) -> float:
        """‖g‖ as chosen by ``grad_norm``; for "none" the divisor N that gives the script's step."""
        if self.config.grad_norm == "exact":
            return self.space.update_norm(direction)
        if self.config.grad_norm == "estimate":
            return math.sqrt(self.space.dim * sum(c * c for _, c in direction))
        return float(population)

    def _reset(self) -> None:
        self.stage, self._neighbour = 0, ()

    def _skip(self) -> dict[str, Any]:
        """A round without rewards ends the iteration; the next starts again with stage 1."""
        self._reset()
        return super()._skip()

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "stage": self.stage,
            "neighbour": [[s, c] for s, c in self._neighbour],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.stage = int(state["stage"])
        self._neighbour = tuple((int(s), float(c)) for s, c in state["neighbour"])
