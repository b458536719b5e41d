"""Fitness shaping: how a population's rewards become the numbers its strategy steps by.

One registry, :data:`FITNESS`, and one option, a strategy's ``shaping``
(``--shaping``). Every function takes the rewards of one round as a
members x prompts array (a function of a vector, as in
:func:`zo_llm.maximize`, is one prompt) and returns one number per member;
higher is better throughout. NaN marks a reward that failed: it is left out
of its member's mean and its prompt's statistics. The strategy base class
guarantees that every member has at least one finite reward before shaping
(a member with none counts as the population's worst).

- ``raw``: each member's mean reward (MeZO's differences, CMA-ES's ranking);
- ``zscore``: the means standardised over the population (Qiu et al.);
- ``centered_rank``: the means' ranks mapped to [-0.5, 0.5] (OpenAI ES);
- ``prompt_zscore``: each prompt's rewards standardised over the members
  first (the GRPO-like baseline of eggroll-vllm), a member's mean of those,
  standardised again, so that every prompt on which the members disagree weighs
  the same however small the disagreement, and a prompt all members answer
  alike weighs nothing.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence

import numpy as np

from .registry import Registry

Shaping = Callable[[np.ndarray], np.ndarray]

FITNESS: Registry[Shaping] = Registry("fitness shaping")


def _matrix(rewards: np.ndarray) -> np.ndarray:
    """Members x prompts as float64; one reward per member is one prompt."""
    values = np.asarray(rewards, dtype=np.float64)
    return values[:, None] if values.ndim == 1 else values


def member_means(per_prompt: np.ndarray) -> np.ndarray:
    """Each member's mean finite reward (NaN for a member with none).

    Summed in prompt order, one Python float at a time (numpy sums pairwise):
    the last bits of a mean decide the last bits of the update, and these are
    the bits the runs before this module computed.
    """
    return np.array([mean_finite(row) for row in _matrix(per_prompt).tolist()], dtype=np.float64)


def mean_finite(values: Sequence[float]) -> float:
    """Mean of the finite values, NaN when there are none."""
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else float("nan")


def _standardised(values: np.ndarray) -> np.ndarray:
    return (values - values.mean()) / (values.std() + 1e-8)


@FITNESS.register("raw")
def raw(per_prompt: np.ndarray) -> np.ndarray:
    """Each member's mean reward, unchanged (MeZO's estimator uses raw differences)."""
    return member_means(per_prompt)


@FITNESS.register("zscore")
def zscore(per_prompt: np.ndarray) -> np.ndarray:
    """``(r - mean) / (std + 1e-8)`` of the members' mean rewards, as Qiu et al. normalise.

    The 1e-8 keeps a population of equal rewards from dividing by zero; its
    weights are then all zero and the step is empty, which is right: equal
    rewards carry no information about a direction.
    """
    return _standardised(member_means(per_prompt))


@FITNESS.register("centered_rank")
def centered_rank(per_prompt: np.ndarray) -> np.ndarray:
    """Ranks of the mean rewards mapped linearly to ``[-0.5, 0.5]`` (OpenAI ES).

    Ties share their mean rank. Rank shaping makes the step invariant to any
    monotone transform of the reward and immune to one outlier dominating the
    update.
    """
    rewards = member_means(per_prompt)
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


@FITNESS.register("prompt_zscore")
def prompt_zscore(per_prompt: np.ndarray) -> np.ndarray:
    """Each prompt's rewards z-scored over the members, averaged per member, z-scored again.

    (Centring alone would change nothing: the mean of centred rewards is the
    centred mean, which the final standardisation centres anyway.)
    """
    per_prompt = _matrix(per_prompt)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a prompt no member scored
        centre = np.nanmean(per_prompt, axis=0)
        spread = np.nanstd(per_prompt, axis=0)
    normalised = (per_prompt - centre) / np.where(spread > 0, spread, np.inf)
    return _standardised(member_means(normalised))


def as_members_by_prompts(rewards: np.ndarray | list, members: int) -> np.ndarray:
    """``rewards`` as a members x prompts float array: one reward per member is one prompt.

    Raises:
      ValueError: when the first axis is not ``members`` long.
    """
    given = np.shape(rewards)
    values = _matrix(rewards)
    if values.ndim != 2 or values.shape[0] != members:
        raise ValueError(
            f"got {given[0] if given else 0} rewards for {members} candidates (shape {given}); "
            "give one reward per candidate, or candidates x prompts"
        )
    return values
