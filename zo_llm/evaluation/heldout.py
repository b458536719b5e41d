"""Held-out evaluation of the current model: greedy, sampled, and KL from a base model."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..models.generation import TextGenerator
from ..tasks.base import Example, Task
from .base import score
from .rewards import RewardScorer


def evaluate_task(
    generator: TextGenerator,
    task: Task,
    examples: Sequence[Example],
    scorer: RewardScorer | None = None,
) -> tuple[dict[str, float], list[str]]:
    """The task's metrics of the current model on ``examples``, and the completions.

    Rewards go through ``scorer`` where given (a run's, with its time limit).
    """
    completions = generator.generate(generator.encode([task.prompt(e) for e in examples]))
    rewards = score(task, examples, completions, scorer)
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
    scorer: RewardScorer | None = None,
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
        stop=generator.stop,
    )
    sampler.on_batch = generator.on_batch
    repeated = [e for e in examples for _ in range(samples)]
    device = generator.model.device
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        completions = sampler.generate(sampler.encode([task.prompt(e) for e in repeated]))
    rewards = score(task, repeated, completions, scorer)
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
        from ..divergence import kl_from_reference

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
