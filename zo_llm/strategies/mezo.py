"""Zeroth-order SGD with two-point (SPSA) estimates, as in MeZO (name: ``mezo``).

Implements Malladi et al., *Fine-Tuning Language Models with Just Forward
Passes* (NeurIPS 2023, arXiv 2305.17333, https://arxiv.org/abs/2305.17333),
after Spall's SPSA. Per step, q seeds z_1..z_q, each evaluated at
theta + eps z and theta - eps z on the same minibatch (the runner scores
every member of a round on the same prompts):

.. math::

    g_i = \\frac{R(\\theta + \\epsilon z_i) - R(\\theta - \\epsilon z_i)}{2\\epsilon},
    \\qquad
    \\theta \\leftarrow (1 - \\eta\\lambda)\\,\\theta + \\frac{\\eta}{q} \\sum_i g_i z_i

(``+``: rewards are maximised; MeZO minimises a loss with ``-``). Rewards are
not normalised: g_i is a finite-difference directional derivative, so lr acts
on the reward's own scale. Defaults: MeZO's eps=1e-3 and its full-parameter
learning rate lr=1e-6 (chosen there for cross-entropy losses of OPT models;
rescale it with your reward's range), q=1.

Variants: ``sign=True`` steps along sign(g_i) z_i (ZO-SGD-Sign, MeZO's
appendix); ``momentum=beta`` keeps m_t = beta m_{t-1} + g_t. A momentum of
seeded directions is itself a seeded update, ``sum_k beta^(t-k) g_k``, so the
strategy keeps the last ``momentum_window`` steps' ``(seed, g)`` pairs and
replays them (q * window noise draws per step); older terms, weighted
beta^window or less, are dropped (0.9^50 < 0.6%).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..candidates import SEEDED, Candidate, SeededStep
from ..parametrizations.base import Parametrization
from .base import STRATEGIES, Equivalent, Strategy, StrategyConfig


@dataclass(frozen=True)
class MeZOConfig(StrategyConfig):
    """Hyperparameters of MeZO's ZO-SGD; defaults are the paper's full-parameter setting."""

    q: int = field(default=1, metadata={"help": "seeds per step (2q evaluations), averaged"})
    eps: float = field(default=1e-3, metadata={"help": "perturbation scale epsilon"})
    lr: float = field(default=1e-6, metadata={"help": "learning rate eta (on the reward's scale)"})
    weight_decay: float = field(
        default=0.0, metadata={"help": "weight decay, as MeZO: theta *= 1 - lr * weight_decay"}
    )
    sign: bool = field(default=False, metadata={"help": "step along sign(g) z (ZO-SGD-Sign)"})
    momentum: float = field(default=0.0, metadata={"help": "heavy-ball momentum beta (0: off)"})
    momentum_window: int = field(
        default=50, metadata={"help": "past steps replayed by momentum (older ones dropped)"}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.q < 1:
            raise ValueError(f"q={self.q} must be >= 1")
        for name in ("eps", "lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}={getattr(self, name)} must be positive")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay={self.weight_decay} must be >= 0")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum={self.momentum} must be in [0, 1)")
        if self.momentum_window < 1:
            raise ValueError(f"momentum_window={self.momentum_window} must be >= 1")


def q_of_population(population: Any) -> int:
    """The generic ``population`` counts members, two per seed (+eps and -eps): q is half."""
    population = int(population)
    if population % 2:
        q = max(population // 2, 1)
        raise ValueError(
            "mezo evaluates 2q members (+eps and -eps per seed): population must be even; "
            f"got {population} (q={q} is population {2 * q})"
        )
    return population // 2


@STRATEGIES.register("mezo")
class MeZO(Strategy):
    """Zeroth-order SGD with two-point estimates (Malladi et al. 2023)."""

    config_class = MeZOConfig
    supported_kinds = frozenset({SEEDED})
    equivalents = {"population": Equivalent("q", q_of_population), "sigma": Equivalent("eps")}

    def __init__(
        self, space: Parametrization, config: MeZOConfig | None = None, seed: int = 0
    ) -> None:
        super().__init__(space, config, seed)
        self._steps: list[list[tuple[int, float]]] = []  # recent (seed, g/q) pairs, oldest first

    @classmethod
    def test_config(cls) -> MeZOConfig:
        return MeZOConfig(q=2, eps=0.05, lr=0.05)

    def evaluations_per_iteration(self) -> int:
        return 2 * self.config.q

    def _ask(self) -> list[Candidate]:
        eps = self.config.eps
        seeds = [self.member_seed(i) for i in range(self.config.q)]
        return [Candidate(s, sign * eps) for s in seeds for sign in (1.0, -1.0)]

    def _tell(self, candidates: list[Candidate], fitness: np.ndarray) -> dict[str, Any]:
        config = self.config
        grads = (fitness[0::2] - fitness[1::2]) / (2 * config.eps)  # projected gradients
        steps = np.sign(grads) if config.sign else grads
        self._steps.append(
            [(c.seed, float(g) / config.q) for c, g in zip(candidates[0::2], steps, strict=True)]
        )
        window = config.momentum_window if config.momentum else 1
        self._steps = self._steps[-window:]
        update = tuple(
            (seed, config.lr * config.momentum**age * coeff)
            for age, pairs in enumerate(reversed(self._steps))
            for seed, coeff in pairs
        )
        step = SeededStep(update, decay=config.lr * config.weight_decay)
        return {"complete": True, "step": step, "projected_grad": float(np.mean(grads))}

    def state_dict(self) -> dict[str, Any]:
        steps = [[[seed, coeff] for seed, coeff in pairs] for pairs in self._steps]
        return {**super().state_dict(), "steps": steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._steps = [[(int(s), float(c)) for s, c in pairs] for pairs in state["steps"]]
