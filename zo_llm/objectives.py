"""Classic black-box objectives with known optima, maximised (higher is better).

Small functions of a vector on which every strategy is checked and compared
through :func:`zo_llm.maximize`: ``tests/test_blackbox.py`` asserts that each
registered strategy reaches :attr:`Problem.target` within
:attr:`Problem.budget` for seed 0, and ``benchmarks/strategies.py`` prints the
same runs over several seeds. Every search starts at the origin
(:meth:`Problem.x0`)::

    import zo_llm
    from zo_llm.objectives import PROBLEMS, SETTINGS

    problem = PROBLEMS["rosenbrock"]
    result = zo_llm.maximize(problem.objective(0), problem.x0(), strategy="cma-es",
                             strategy_options=SETTINGS["rosenbrock"]["cma-es"],
                             max_evaluations=problem.budget, monitor=problem.monitor)

:data:`SETTINGS` holds the options of each strategy per problem. The
strategies' defaults are meant for other scales (ES's and MeZO's for LLM
weights, pycma's and evotorch's for unit-scale vectors), so they were tuned
once on seeds 0-4, and each target leaves a margin of about 2x over the worst
final value of those seeds (the comment next to each problem gives it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

Objective = Callable[[torch.Tensor], float]

SHIFT = torch.linspace(-1.0, 2.0, 10, dtype=torch.float64)
"""Optimum of :func:`sphere`."""
CURVATURE = torch.linspace(1.0, 10.0, 10, dtype=torch.float64)
"""Per-coordinate curvatures of :func:`quadratic` (condition number 10)."""
CENTER = torch.linspace(1.0, -1.0, 10, dtype=torch.float64)
"""Optimum of :func:`quadratic`."""


def sphere(x: torch.Tensor) -> float:
    """Shifted sphere ``-||x - SHIFT||^2`` in 10 dimensions: maximum 0 at SHIFT; -11.67 at 0."""
    return -float(((x - SHIFT) ** 2).sum())


def rosenbrock(x: torch.Tensor) -> float:
    """Rosenbrock's banana valley, negated: maximum 0 at (1, ..., 1); -1 at 0 in 2 dimensions.

    ``-sum_i 100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2``, for any dimension >= 2.
    """
    return -float((100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum())


def quadratic(x: torch.Tensor) -> float:
    """Ill-conditioned ``-sum_i c_i (x_i - CENTER_i)^2``, c = CURVATURE (1..10).

    Maximum 0 at CENTER; -22.4 at 0.
    """
    return -float((CURVATURE * (x - CENTER) ** 2).sum())


def noisy_quadratic(seed: int = 0, std: float = 0.1) -> Objective:
    """:func:`quadratic` plus fresh N(0, std^2) noise at every evaluation, seeded by ``seed``.

    Maximum 0 in expectation at CENTER; -22.4 at 0. Score the search point
    with the noise-free :func:`quadratic`.
    """
    generator = torch.Generator().manual_seed(seed)

    def objective(x: torch.Tensor) -> float:
        noise = torch.randn((), generator=generator, dtype=torch.float64)
        return quadratic(x) + std * float(noise)

    return objective


def _noise_free(objective: Objective) -> Callable[[int], Objective]:
    """A factory that ignores its seed: the objective is deterministic."""

    def make(seed: int) -> Objective:
        del seed
        return objective

    return make


@dataclass(frozen=True)
class Problem:
    """A benchmark problem: what to maximise, how to score the result, and what counts as solved.

    Attributes:
      name: key in :data:`PROBLEMS`.
      objective: ``objective(seed)`` returns the function the strategy sees
        (noisy problems draw their noise from ``seed``).
      monitor: the noise-free function that scores the search point.
      dim: length of the search vector.
      budget: objective evaluations allowed.
      target: monitor value to reach within the budget (the optimum is 0).
    """

    name: str
    objective: Callable[[int], Objective]
    monitor: Objective
    dim: int
    budget: int
    target: float

    def x0(self) -> torch.Tensor:
        """The start point: the origin, in float64."""
        return torch.zeros(self.dim, dtype=torch.float64)


PROBLEMS: dict[str, Problem] = {
    problem.name: problem
    for problem in (
        # worst final value over seeds 0-4 at the budget: pgpe -8.6e-3
        Problem("sphere", _noise_free(sphere), sphere, dim=10, budget=3000, target=-0.02),
        # worst: cem -0.17, essam -0.12 (fixed-step ES-type methods creep along the valley)
        Problem("rosenbrock", _noise_free(rosenbrock), rosenbrock, dim=2, budget=6000, target=-0.3),
        # scored without noise; worst: pgpe -0.083, xnes -0.082
        Problem("noisy_quadratic", noisy_quadratic, quadratic, dim=10, budget=3000, target=-0.15),
    )
}
"""The problems by name, in the order the benchmark prints them."""

ES_SMOOTH: dict[str, Any] = {"population": 20, "sigma": 0.05, "lr": 0.03, "antithetic": True}
"""ES on the smooth 10-dimensional problems."""
ESSAM_SMOOTH: dict[str, Any] = {**ES_SMOOTH, "lr": 0.06, "rho": 0.01}
"""ESSAM on the smooth 10-dimensional problems."""

_SMOOTH: dict[str, dict[str, Any]] = {
    "es": ES_SMOOTH,
    "essam": ESSAM_SMOOTH,
    "mezo": {"eps": 1e-3, "lr": 0.002},
    "cma-es": {"sigma": 0.5},
    "snes": {"sigma": 0.5},
    "xnes": {"sigma": 0.5},
    "pgpe": {"sigma": 0.3, "center_lr": 0.02},
    "cem": {"sigma": 0.5, "stdev_max_change": 0.1},
}

SETTINGS: dict[str, dict[str, dict[str, Any]]] = {
    "sphere": _SMOOTH,
    "rosenbrock": {
        **_SMOOTH,
        "es": {"population": 10, "sigma": 0.02, "lr": 0.01, "antithetic": True},
        "essam": {"population": 10, "sigma": 0.02, "lr": 0.02, "antithetic": True, "rho": 0.002},
        "mezo": {"eps": 1e-3, "lr": 0.001},
        "snes": {"sigma": 0.2},
        "pgpe": {"population": 10, "sigma": 0.1, "center_lr": 0.01},
        "cem": {"population": 10, "sigma": 0.5, "stdev_max_change": 0.05},
    },
    "noisy_quadratic": {
        **_SMOOTH,
        # two-point differences of independent noise: eps must dwarf noise/|g|, unlike 1e-3
        "mezo": {"eps": 0.05, "lr": 0.001},
        "cma-es": {"population": 20, "sigma": 0.5},
    },
}
"""``SETTINGS[problem][strategy]``: strategy options tuned once on seeds 0-4 (see the module)."""
