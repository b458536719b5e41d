"""The task protocol: data and a reward, nothing about optimisation.

A task owns its data splits, how an example becomes a prompt, and how a
completion is scored. The reward sees the completion only (never the echoed
prompt), so text the prompt already contains cannot earn reward.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from ..registry import Registry

Example = dict[str, Any]
#: A prompt is either plain text or a list of chat messages
#: (``{"role": ..., "content": ...}``) to be rendered with the tokenizer's chat template.
Prompt = str | list[dict[str, str]]

SPLITS = ("train", "eval")

#: Help text of the ``chat`` option of the built-in tasks.
CHAT_HELP = (
    "Ask as chat messages through the tokenizer's chat template (true) or as plain text "
    "(false); none: chat when the tokenizer has a template, else plain text."
)


class ChatPrompt(list):
    """Chat messages with a plain-text twin: a prompt that lets the tokenizer decide.

    Rendered through the tokenizer's chat template when it has one (an instruct
    model); otherwise :attr:`text`, the task's plain prompt, is what the model
    sees (a base model), rather than the messages' contents joined.
    """

    def __init__(self, messages: list[dict[str, str]], text: str) -> None:
        super().__init__(messages)
        self.text = text


def ask(text: str, chat: bool | None, messages: list[dict[str, str]] | None = None) -> Prompt:
    """The prompt for ``text``: plain (``chat=False``), chat (``True``) or either (``None``).

    ``messages`` defaults to ``text`` as one user message.
    """
    messages = messages if messages is not None else [{"role": "user", "content": text}]
    if chat is None:
        return ChatPrompt(messages, text)
    return messages if chat else text


@dataclass(frozen=True)
class TaskConfig:
    """Options shared by every task (none yet); tasks subclass it."""


class Task(ABC):
    """Base class of all tasks.

    Subclasses set ``config_class`` and implement :meth:`examples`,
    :meth:`prompt` and :meth:`reward`; :meth:`metrics` defaults to the mean
    reward.
    """

    config_class: ClassVar[type] = TaskConfig
    name: ClassVar[str] = "task"

    def __init__(self, config: Any = None) -> None:
        self.config = config if config is not None else self.config_class()

    @classmethod
    def test_config(cls) -> Any:
        """A config small enough for unit tests."""
        return cls.config_class()

    @abstractmethod
    def examples(self, split: str) -> Sequence[Example]:
        """The examples of ``split`` (``"train"`` or ``"eval"``), in a fixed order."""

    @abstractmethod
    def prompt(self, example: Example) -> Prompt:
        """What the model is asked: plain text, or chat messages."""

    @abstractmethod
    def reward(self, example: Example, completion: str) -> float:
        """Scores one completion (the generated text only); higher is better."""

    def metrics(
        self, examples: Sequence[Example], completions: Sequence[str], rewards: Sequence[float]
    ) -> dict[str, float]:
        """Held-out metrics of a set of completions; by default their mean reward."""
        del examples, completions
        return {"reward": mean_finite(rewards)}


def mean_finite(values: Sequence[float]) -> float:
    """Mean of the finite values, NaN when there are none."""
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else float("nan")


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of: {', '.join(SPLITS)}")
    return split


TASKS: Registry[type[Task]] = Registry("task")
