"""Conciseness: answer a short factual question in as many characters as the reference.

The task of Qiu et al. 2025, *Evolution Strategies at Scale: LLM Fine-Tuning
Beyond Reinforcement Learning* (https://arxiv.org/abs/2509.24372). Reward =
-|len(completion) - len(answer)| in characters, on the completion only; the
paper also reports it rescaled to [0, 1] (0 at -2000 or below, 1 at 0).

The reward says nothing about being right, so it can be hacked (an answer of
the right length but wrong): the paper therefore reports the held-out reward
with sampled responses as well as greedy, and the KL divergence of the
fine-tuned model from the base model. Both are evaluation tools, not part of
the task: :func:`zo_llm.evaluation.evaluate_sampled` and
:func:`zo_llm.divergence.kl_from_reference` (``zo-llm eval --samples N
--reference BASE``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .base import TASKS, DataTask, DataTaskConfig, Example, Prompt, ask, mean_finite
from .custom import contains
from .loading import load_records

DATA_DIR = Path(__file__).parent / "data"
#: Question/answer pairs written for zo-llm: 60 to train on, 30 held out.
TRAIN_DATA = DATA_DIR / "conciseness_train.jsonl"
EVAL_DATA = DATA_DIR / "conciseness_eval.jsonl"
FIELDS = ("question", "answer")
#: The reward that rescales to 0 (the paper's floor).
WORST_REWARD = -2000.0


def conciseness_reward(completion: str, answer: str) -> float:
    """``-|len(completion) - len(answer)|`` in characters."""
    return -float(abs(len(completion) - len(answer)))


def rescale(reward: float) -> float:
    """The paper's [0, 1] scale: 1 at reward 0, 0 at -2000 or below."""
    return min(1.0, max(0.0, 1.0 - reward / WORST_REWARD))


@dataclass(frozen=True)
class ConcisenessConfig(DataTaskConfig):
    """Where the questions come from and how they are asked.

    ``data`` holds ``{question, answer}`` examples; without it, the shipped 60
    train / 30 held-out questions are used.
    """

    prompt_template: str = field(
        default="Question: {question}\nAnswer:",
        metadata={"help": "Prompt with a {question} placeholder."},
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if "{question}" not in self.prompt_template:
            raise ValueError("conciseness: prompt_template needs a {question} placeholder")


@TASKS.register("conciseness")
class ConcisenessTask(DataTask):
    """Short factual questions; reward: minus the character-length gap to the reference."""

    config_class = ConcisenessConfig

    @classmethod
    def test_config(cls) -> ConcisenessConfig:
        return ConcisenessConfig(train_size=8, eval_size=4)

    def required_fields(self) -> tuple[str, ...]:
        return FIELDS

    def default_splits(self) -> tuple[list[Example], list[Example]]:
        return (
            load_records(TRAIN_DATA, FIELDS, self.name),
            load_records(EVAL_DATA, FIELDS, self.name),
        )

    def prompt(self, example: Example) -> Prompt:
        text = self.config.prompt_template.replace("{question}", str(example["question"]))
        return ask(text, self.config.chat)

    def reward(self, example: Example, completion: str) -> float:
        return conciseness_reward(completion, str(example["answer"]))

    def metrics(
        self, examples: Sequence[Example], completions: Sequence[str], rewards: Sequence[float]
    ) -> dict[str, float]:
        """Mean reward, rescaled reward ([0, 1]), completion length, and the share of
        completions that still contain their reference answer (``contains_answer``).

        The reward only counts characters, so a run can shorten answers by dropping
        the fact asked for; ``contains_answer`` falling shows that hack at once.
        """
        return {
            "reward": mean_finite(rewards),
            "reward_rescaled": mean_finite([rescale(r) for r in rewards]),
            "length": mean_finite([float(len(c)) for c in completions]),
            "contains_answer": mean_finite(
                [contains(c, e["answer"]) for e, c in zip(examples, completions, strict=True)]
            ),
        }
