"""Fitness shaping: maps a population's raw rewards to the weights of its update.

All functions share one signature, ``f(rewards) -> weights``, take and return a
1-D float64 array, and assume finite input (the strategy base class replaces
non-finite rewards before shaping). Higher reward is better throughout.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..registry import Registry

Shaping = Callable[[np.ndarray], np.ndarray]

SHAPINGS: Registry[Shaping] = Registry("fitness shaping")


@SHAPINGS.register("zscore")
def zscore(rewards: np.ndarray) -> np.ndarray:
    """``(r - mean) / (std + 1e-8)`` with the population std, as Qiu et al. normalise rewards.

    The 1e-8 keeps a population of equal rewards from dividing by zero; its
    weights are then all zero and the step is empty, which is right: equal
    rewards carry no information about a direction.
    """
    return (rewards - rewards.mean()) / (rewards.std() + 1e-8)


@SHAPINGS.register("centered_rank")
def centered_rank(rewards: np.ndarray) -> np.ndarray:
    """Ranks mapped linearly to ``[-0.5, 0.5]`` (OpenAI ES); ties share their mean rank.

    Rank shaping makes the step invariant to any monotone transform of the
    reward and immune to one outlier dominating the update.
    """
    n = len(rewards)
    if n == 1:
        return np.zeros(1)
    order = rewards.argsort(kind="stable")
    ranks = np.empty(n)
    ranks[order] = np.arange(n, dtype=np.float64)
    for value in np.unique(rewards):  # average the ranks of ties
        tied = rewards == value
        ranks[tied] = ranks[tied].mean()
    return ranks / (n - 1) - 0.5


@SHAPINGS.register("raw")
def raw(rewards: np.ndarray) -> np.ndarray:
    """The rewards unchanged (MeZO-style estimators use raw differences)."""
    return rewards.astype(np.float64, copy=True)
