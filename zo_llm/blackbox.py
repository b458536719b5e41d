"""Maximise a Python function of a vector with any registered strategy.

The same strategies that fine-tune models search a plain vector here (the
``tensor`` space), scored by a Python callable instead of a task. This is how
the strategies are tested on functions with known optima, and how
``benchmarks/strategies.py`` compares them::

    import torch, zo_llm

    def reward(x):                                    # higher is better
        return -float(((x - 3.0) ** 2).sum())

    result = zo_llm.maximize(reward, torch.zeros(10), strategy="cma-es",
                             strategy_options={"sigma": 1.0}, max_evaluations=2000)
    result.x, result.reward, result.evaluations

The loop is the runner's, without models or tasks: ask, evaluate every
candidate (a seeded perturbation or an explicit vector, applied to the space
and restored), tell, until the strategy says the iteration is complete.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .evaluation import evaluate_candidates
from .evaluation.scores import Scores
from .iteration import run_iteration
from .options import make_config
from .parametrizations.base import Parametrization
from .parametrizations.tensor import TensorSpace
from .strategies.base import STRATEGIES, Strategy

__all__ = ["BlackBoxResult", "maximize"]

Objective = Callable[[torch.Tensor], float]


@dataclass
class BlackBoxResult:
    """The outcome of :func:`maximize`.

    Attributes:
      x: the final search point (ES/MeZO's theta, CMA-ES's and evotorch's mean).
      reward: ``objective(x)``, one closing call not counted in ``evaluations``.
      best_x, best_reward: the best candidate evaluated during the search.
      evaluations: objective calls made for candidates.
      evaluations_to_target: ``evaluations`` when ``target`` was first reached (or None).
      history: one dict per iteration: ``iteration``, ``evaluations``,
        ``reward_mean``/``reward_max`` (over its candidates), ``best_reward``,
        and ``monitor`` (the monitor's value at the search point) if one was given.
      seconds: wall time of the search.
    """

    x: torch.Tensor
    reward: float
    best_x: torch.Tensor
    best_reward: float
    evaluations: int
    evaluations_to_target: int | None
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


def maximize(
    objective: Objective,
    x0: torch.Tensor | Sequence[float] | Parametrization,
    *,
    strategy: str | type[Strategy] = "es",
    strategy_options: dict[str, Any] | None = None,
    iterations: int | None = None,
    max_evaluations: int | None = None,
    target: float | None = None,
    monitor: Objective | None = None,
    seed: int = 0,
) -> BlackBoxResult:
    """Searches for a vector that maximises ``objective`` with a registered strategy.

    Args:
      objective: ``f(x) -> float`` for a 1-D tensor ``x`` (a copy: changing it
        changes nothing); higher is better. A NaN or infinite value counts as
        the population's worst (see :meth:`Strategy.tell`).
      x0: the start point (a 1-D tensor or sequence; float64 unless a float
        tensor says otherwise), or a space such as a configured
        :class:`TensorSpace`.
      strategy: a registry name (``zo-llm list``) or a :class:`Strategy` subclass.
      strategy_options: the strategy's config fields, e.g. ``{"sigma": 0.5}``.
      iterations: stop after this many iterations.
      max_evaluations: stop after the iteration in which the objective has
        been called this many times (an iteration is never cut short).
      target: stop once this value is reached: by ``monitor`` at the search
        point if a monitor is given, else by the best candidate's reward.
      monitor: ``g(x) -> float`` evaluated at the search point after every
        iteration, for progress without noise (not counted in evaluations).
      seed: the run seed; the same seed gives the same numbers.

    Returns:
      A :class:`BlackBoxResult`.
    """
    if iterations is None and max_evaluations is None:
        raise ValueError("give iterations= or max_evaluations= (or both) to bound the search")
    space = x0 if isinstance(x0, Parametrization) else TensorSpace(x0=x0)
    cls = STRATEGIES.get(strategy) if isinstance(strategy, str) else strategy
    options = cls.translate_options(strategy_options or {})  # population, sigma, lr: as train's
    config = make_config(cls.config_class, options, f"strategy {cls.name!r}")
    search = cls(space, config, seed=seed)

    def point_and_value() -> tuple[torch.Tensor, float]:
        x = space.get_vector()  # at a candidate: a model bound to the space sees it too
        return x, float(objective(x))

    start = time.perf_counter()
    best_reward, best_x = -math.inf, space.get_vector()
    evaluations, reached, history = 0, None, []

    def evaluate(candidates: Sequence[Any]) -> Scores:
        nonlocal best_reward, best_x, evaluations, reached
        values = []
        for x, value in evaluate_candidates(space, candidates, point_and_value):
            evaluations += 1
            values.append(value)
            if value > best_reward:
                best_reward, best_x = value, x
            if target is not None and monitor is None and reached is None and value >= target:
                reached = evaluations
        return Scores(np.asarray(values, dtype=np.float64)[:, None])

    while True:
        result = run_iteration(search, evaluate)
        summary = result.summary()
        record = {
            "iteration": len(history) + 1,
            "evaluations": evaluations,
            "reward_mean": summary["reward_mean"],
            "reward_max": summary["reward_max"],
            "best_reward": best_reward,
        }
        if monitor is not None:
            record["monitor"] = float(monitor(space.get_vector()))
            if target is not None and reached is None and record["monitor"] >= target:
                reached = evaluations
        history.append(record)
        if (
            (iterations is not None and len(history) >= iterations)
            or (max_evaluations is not None and evaluations >= max_evaluations)
            or reached is not None
        ):
            break
    x = space.get_vector()
    return BlackBoxResult(
        x=x,
        reward=float(objective(x.clone())),
        best_x=best_x,
        best_reward=best_reward,
        evaluations=evaluations,
        evaluations_to_target=reached,
        history=history,
        seconds=time.perf_counter() - start,
    )
