"""Held-out evaluation of the current model: greedy, sampled, and KL from a base model.

Everything goes through the run's :class:`~zo_llm.generation.Generator`, so it
is the same for every backend.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..fitness import mean_finite
from .base import score
from .rewards import RewardScorer

if TYPE_CHECKING:
    from ..generation import Generator
    from ..tasks.base import Example, Task


def _metrics(
    task: Task,
    examples: Sequence[Example],
    completions: list[str],
    scorer: RewardScorer | None,
) -> dict[str, float]:
    scorer = scorer or RewardScorer(task)
    rewards = score(task, examples, completions, scorer)
    failures = sum(1 for r in rewards if math.isnan(r))
    scorer.all_failed(failures, len(rewards), "the held-out evaluation")
    parts = dict(scorer.last_parts)  # with rewards from elsewhere: each part, and the sum
    metrics = dict(task.metrics(examples, completions, parts.pop("task", rewards)))
    if parts:
        metrics.update({name: mean_finite(values) for name, values in parts.items()})
        metrics["reward_total"] = mean_finite(rewards)
    metrics["reward_failures"] = failures
    return metrics


def evaluate_task(
    generator: Generator,
    task: Task,
    examples: Sequence[Example],
    scorer: RewardScorer | None = None,
) -> tuple[dict[str, float], list[str]]:
    """The task's metrics of the current model on ``examples``, and the completions.

    Rewards go through ``scorer`` where given (a run's, with its time limit).
    """
    completions = generator.generate(generator.prepare([task.prompt(e) for e in examples]))
    return _metrics(task, examples, completions, scorer), completions


def evaluate_sampled(
    generator: Generator,
    task: Task,
    examples: Sequence[Example],
    samples: int,
    temperature: float = 1.0,
    seed: int = 0,
    scorer: RewardScorer | None = None,
) -> tuple[dict[str, float], list[str]]:
    """The task's metrics on ``samples`` sampled completions per example (keys ``sampled_*``).

    Sampling is at ``temperature``, seeded by ``seed`` (:meth:`Generator.sample`).
    Completions are returned example by example, ``samples`` each.
    """
    if samples < 1:
        raise ValueError(f"samples={samples} must be at least 1")
    repeated = [e for e in examples for _ in range(samples)]
    prepared = generator.prepare([task.prompt(e) for e in repeated])
    completions = generator.sample(prepared, temperature, seed)
    metrics = _metrics(task, repeated, completions, scorer)
    return {f"sampled_{k}": v for k, v in metrics.items()}, completions


def evaluate_heldout(
    generator: Generator,
    task: Task,
    examples: Sequence[Example],
    *,
    samples: int = 0,
    temperature: float = 1.0,
    seed: int = 0,
    reference: Any = None,
    scorer: RewardScorer | None = None,
) -> tuple[dict[str, float], dict[str, list[str]]]:
    """Greedy metrics, plus ``sampled_*`` ones (``samples`` > 0) and KL from ``reference``.

    The held-out evaluation of ``zo-llm eval`` and of a run alike. Returns the
    metrics and the completions (``completions``, ``sampled_completions``).
    """
    metrics, completions = evaluate_task(generator, task, examples, scorer)
    outputs = {"completions": completions}
    if samples:
        sampled, outputs["sampled_completions"] = evaluate_sampled(
            generator, task, examples, samples, temperature, seed, scorer
        )
        metrics.update(sampled)
    if reference is not None:
        metrics.update(
            generator.kl_from(reference, generator.prepare([task.prompt(e) for e in examples]))
        )
    return metrics, outputs
