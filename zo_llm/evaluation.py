"""Scoring completions and populations.

Reward policy (documented in docs/): a reward function that raises, or returns
NaN/inf, for one completion does not stop the run. That completion's reward is
recorded as NaN and counted in ``reward_failures``; a member's reward is the
mean of its finite completion rewards (NaN if none is finite), and the
strategy replaces a NaN member by the population's worst finite reward.
The first failure of each kind is logged with its example.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .models.generation import TextGenerator
from .parametrizations.base import Parametrization
from .strategies.base import AnyCandidate
from .tasks.base import Example, Task, mean_finite

logger = logging.getLogger(__name__)


def score(task: Task, examples: Sequence[Example], completions: Sequence[str]) -> list[float]:
    """Rewards of ``completions``; failures become NaN (see the module's reward policy)."""
    rewards = []
    for example, completion in zip(examples, completions, strict=True):
        try:
            value = float(task.reward(example, completion))
        except Exception as error:  # a user's reward must not kill a long run
            _warn_once(f"reward raised {type(error).__name__}: {error}", example)
            value = float("nan")
        if not math.isfinite(value):
            _warn_once(f"reward returned {value}", example)
            value = float("nan")
        rewards.append(value)
    return rewards


_warned: set[str] = set()


def _warn_once(message: str, example: Example) -> None:
    if message not in _warned:
        _warned.add(message)
        logger.warning("%s (scored as NaN; example: %r)", message, example)


@dataclass
class PopulationResult:
    """Mean reward per member, and how many completion rewards failed."""

    rewards: np.ndarray
    failures: int


class SequentialEvaluator:
    """Scores members one after another: apply the candidate, generate, score, restore.

    Works for every space and candidate kind: each candidate applies itself
    (a seeded perturbation, or an explicit vector) and restores the space
    exactly. All members see the same encoded prompts.
    """

    def __init__(self, space: Parametrization, generator: TextGenerator, task: Task) -> None:
        self.space = space
        self.generator = generator
        self.task = task

    def evaluate(
        self,
        candidates: Sequence[AnyCandidate],
        examples: Sequence[Example],
        encoded: list[list[int]],
    ) -> PopulationResult:
        rewards, failures = [], 0
        for candidate in candidates:
            with candidate.applied_to(self.space):
                completions = self.generator.generate(encoded)
            values = score(self.task, examples, completions)
            failures += sum(1 for v in values if math.isnan(v))
            rewards.append(mean_finite(values))
        return PopulationResult(np.asarray(rewards, dtype=np.float64), failures)


def evaluate_task(
    generator: TextGenerator, task: Task, examples: Sequence[Example]
) -> tuple[dict[str, float], list[str]]:
    """The task's metrics of the current model on ``examples``, and the completions."""
    completions = generator.generate(generator.encode([task.prompt(e) for e in examples]))
    rewards = score(task, examples, completions)
    metrics = dict(task.metrics(examples, completions, rewards))
    metrics["reward_failures"] = sum(1 for r in rewards if math.isnan(r))
    return metrics, completions


def evaluate_sampled(
    generator: TextGenerator,
    task: Task,
    examples: Sequence[Example],
    samples: int,
    temperature: float = 1.0,
    seed: int = 0,
) -> tuple[dict[str, float], list[str]]:
    """The task's metrics on ``samples`` sampled completions per example (keys ``sampled_*``).

    Sampling uses ``generator``'s model and tokenizer at ``temperature`` and is
    seeded by ``seed``; the caller's global torch RNG state is left as it was
    (the seeding happens inside :func:`torch.random.fork_rng`). Completions are
    returned example by example, ``samples`` each.
    """
    if samples < 1:
        raise ValueError(f"samples={samples} must be at least 1")
    sampler = TextGenerator(
        generator.model,
        generator.tokenizer,
        generator.generation_config.max_new_tokens,
        generator.batch_size,
        do_sample=True,
        temperature=temperature,
    )
    repeated = [e for e in examples for _ in range(samples)]
    device = generator.model.device
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        completions = sampler.generate(sampler.encode([task.prompt(e) for e in repeated]))
    rewards = score(task, repeated, completions)
    metrics = dict(task.metrics(repeated, completions, rewards))
    metrics["reward_failures"] = sum(1 for r in rewards if math.isnan(r))
    return {f"sampled_{k}": v for k, v in metrics.items()}, completions


def evaluate_heldout(
    generator: TextGenerator,
    task: Task,
    examples: Sequence[Example],
    *,
    samples: int = 0,
    temperature: float = 1.0,
    seed: int = 0,
    reference: torch.nn.Module | None = None,
) -> tuple[dict[str, float], dict[str, list[str]]]:
    """Greedy metrics, plus ``sampled_*`` ones (``samples`` > 0) and KL from ``reference``.

    The held-out evaluation of ``zo-llm eval`` and of a run alike. Returns the
    metrics and the completions (``completions``, ``sampled_completions``).
    """
    metrics, completions = evaluate_task(generator, task, examples)
    outputs = {"completions": completions}
    if samples:
        sampled, outputs["sampled_completions"] = evaluate_sampled(
            generator, task, examples, samples, temperature, seed
        )
        metrics.update(sampled)
    if reference is not None:
        from .divergence import kl_from_reference

        prompts = [task.prompt(e) for e in examples]
        metrics.update(
            kl_from_reference(
                generator.model,
                reference,
                generator.tokenizer,
                prompts,
                generator.generation_config.max_new_tokens,
                generator.batch_size,
            )
        )
    return metrics, outputs
