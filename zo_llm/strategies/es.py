"""OpenAI-style evolution strategies on seeded perturbations (name: ``es``).

Implements the method of Qiu et al., *Evolution Strategies at Scale: LLM
Fine-Tuning Beyond Reinforcement Learning* (arXiv 2509.24372,
https://arxiv.org/abs/2509.24372), after Salimans et al. 2017:

.. math::

    \\theta \\leftarrow (1 - \\alpha\\lambda)\\,\\theta
        + \\frac{\\alpha}{N} \\sum_{n=1}^{N} z_n \\, \\varepsilon_n,
    \\qquad z = \\mathrm{shape}(R(\\theta + \\sigma \\varepsilon_n))

with the paper's defaults N=30, sigma=1e-3, alpha=5e-4, z-scored rewards and
no weight decay. The 1/sigma of the gradient estimate is folded into alpha, as
in the paper. Antithetic pairs, centred-rank shaping, weight decay and a
geometric learning-rate decay (alpha_g = alpha * lr_decay^g at iteration g)
are options, off by default so that the default is the paper's setting.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..candidates import SEEDED, Candidate, SeededPairs, SeededStep
from .base import STRATEGIES, Strategy, StrategyConfig


@dataclass(frozen=True)
class ESConfig(StrategyConfig):
    """Hyperparameters of OpenAI-style ES; defaults are Qiu et al.'s."""

    population: int = field(default=30, metadata={"help": "members per iteration (N)"})
    sigma: float = field(default=1e-3, metadata={"help": "perturbation scale"})
    lr: float = field(
        default=5e-4, metadata={"help": "learning rate alpha (1/sigma folded in, as in the paper)"}
    )
    antithetic: bool = field(
        default=False, metadata={"help": "evaluate pairs +eps/-eps (population must be even)"}
    )
    shaping: str = field(
        default="zscore",
        metadata={
            "help": "how rewards become fitness: zscore (the paper's), centered_rank, raw or "
            "prompt_zscore (each prompt z-scored over the members first)"
        },
    )
    weight_decay: float = field(
        default=0.0, metadata={"help": "decoupled weight decay: theta *= 1 - lr * weight_decay"}
    )
    lr_decay: float = field(
        default=1.0,
        metadata={
            "help": "lr is multiplied by this after every iteration (1: constant, the paper's); "
            "below 1, large early steps, then smaller ones that settle instead of wandering"
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.population < 2:
            raise ValueError(f"population={self.population} is too small; use 2 or more")
        if self.antithetic and self.population % 2:
            raise ValueError(
                f"population={self.population} with antithetic=True must be even; "
                f"use {self.population + 1}"
            )
        for name in ("sigma", "lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}={getattr(self, name)} must be positive")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay={self.weight_decay} must be >= 0")
        if not 0 < self.lr_decay <= 1:
            raise ValueError(f"lr_decay={self.lr_decay} must be in (0, 1]; 1 keeps lr constant")


@STRATEGIES.register("es")
class OpenAIES(Strategy):
    """OpenAI-style ES with seeded noise (Qiu et al. 2025)."""

    config_class = ESConfig
    supported_kinds = frozenset({SEEDED})

    @classmethod
    def test_config(cls) -> ESConfig:
        return ESConfig(population=4, sigma=0.05, lr=0.05)

    def evaluations_per_iteration(self) -> int:
        return self.config.population

    def _ask(self) -> list[Candidate]:
        return self._population(stage=0)

    def learning_rate(self) -> float:
        """This iteration's lr: ``lr * lr_decay ** generation`` (the generation is checkpointed)."""
        return self.config.lr * self.config.lr_decay**self.generation

    def _population(self, stage: int, offset: SeededPairs = ()) -> list[Candidate]:
        """N members around ``offset``, seeded by (run seed, generation, ``stage``, member)."""
        config = self.config
        if config.antithetic:
            seeds = [self.member_seed(m, stage) for m in range(config.population // 2)]
            return [
                Candidate(s, sign * config.sigma, offset) for s in seeds for sign in (1.0, -1.0)
            ]
        seeds = [self.member_seed(m, stage) for m in range(config.population)]
        return [Candidate(s, config.sigma, offset) for s in seeds]

    def _tell(self, candidates: list[Candidate], fitness: np.ndarray) -> dict[str, Any]:
        config = self.config
        lr = self.learning_rate()
        step = SeededStep(
            seeded_update(candidates, fitness, lr / len(candidates)), decay=lr * config.weight_decay
        )
        return {"complete": True, "step": step}


def seeded_update(candidates: list[Candidate], weights: np.ndarray, step: float) -> SeededPairs:
    """``((seed, coeff), ...)`` for ``step * sum_n w_n eps_n``, eps_n = sign(scale_n) eps(seed_n).

    Antithetic members share a seed, so their coefficients merge into one pair
    and the noise of that seed is generated once per tensor.
    """
    coeffs: dict[int, float] = defaultdict(float)
    for candidate, weight in zip(candidates, weights, strict=True):
        coeffs[candidate.seed] += step * float(weight) * float(np.sign(candidate.scale))
    return tuple(coeffs.items())
