"""The task protocol: data and a reward, nothing about optimisation.

A task owns its data splits, how an example becomes a prompt, and how a
completion is scored. The reward sees the completion only (never the echoed
prompt), so text the prompt already contains cannot earn reward.

The built-in tasks subclass :class:`DataTask`: their data options
(:class:`DataTaskConfig`) are declared once, and their splits are loaded once,
by :meth:`DataTask.load_splits`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

from ..fitness import mean_finite
from ..registry import Registry
from . import loading
from .loading import Example

#: A prompt is either plain text or a list of chat messages
#: (``{"role": ..., "content": ...}``) to be rendered with the tokenizer's chat template.
Prompt = str | list[dict[str, str]]

SPLITS = ("train", "eval")


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


@dataclass(frozen=True)
class DataTaskConfig(TaskConfig):
    """The data options of a :class:`DataTask`: where its examples come from, how many, how asked.

    ``eval_size`` is the one owner of the held-out size: a run's eval size sets it.
    """

    data: str | None = field(
        default=None,
        metadata={
            "help": "Local file or folder of examples in the task's format (docs/guide.md, "
            "'Local data'); None: the task's own data (generated, shipped or from the hub)."
        },
    )
    train_size: int | None = field(
        default=None,
        metadata={"help": "First N training examples (None: all; one file: its first half)."},
    )
    eval_size: int | None = field(
        default=None, metadata={"help": "First N held-out examples (None: all)."}
    )
    chat: bool | None = field(
        default=None,
        metadata={
            "help": "Ask as chat messages through the tokenizer's chat template (true) or as "
            "plain text (false); none: chat when the tokenizer has a template, else plain text."
        },
    )

    def __post_init__(self) -> None:
        check_sizes(train_size=self.train_size, eval_size=self.eval_size)


def main_metric(metrics: Mapping[str, Any]) -> str:
    """The held-out metric that ranks models (higher is better): accuracy if logged, else reward.

    One rule for the run's ``best/`` model and the bench's comparisons.
    """
    return "accuracy" if "accuracy" in metrics else "reward"


class Task(ABC):
    """Base class of all tasks.

    Subclasses set ``config_class`` and implement :meth:`examples`,
    :meth:`prompt` and :meth:`reward`; :meth:`metrics` defaults to the mean
    reward. A task with data options subclasses :class:`DataTask` instead, which
    implements :meth:`examples`.
    """

    config_class: ClassVar[type] = TaskConfig
    name: ClassVar[str] = "task"
    #: Where a completion ends unless the run sets ``--stop``: text from the first
    #: of these on is neither generated further nor scored (few-shot tasks: a newline).
    stop: tuple[str, ...] = ()

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


class DataTask(Task):
    """A task whose splits come from one loading method, run once.

    :meth:`load_splits` reads ``data=`` with :func:`loading.load_splits` (or, without
    it, :meth:`default_splits`) and cuts the splits to ``train_size`` and ``eval_size``;
    a task whose splits are made another way overrides it.
    """

    config_class = DataTaskConfig

    @cached_property
    def _splits(self) -> dict[str, list[Example]]:
        """Every split by name, loaded on first use and kept: loading reads files or the hub."""
        return self.load_splits()

    def examples(self, split: str) -> Sequence[Example]:
        return self._splits[check_split(split)]

    def load_splits(self) -> dict[str, list[Example]]:
        """The ``train`` and ``eval`` splits (and any the task keeps), in a fixed order."""
        cfg = self.config
        if cfg.data is None:
            train, test = self.default_splits()
        else:
            train, test = loading.load_splits(
                cfg.data, self.required_fields(), self.name, cfg.train_size
            )
        return {"train": train[: cfg.train_size], "eval": test[: cfg.eval_size]}

    def required_fields(self) -> Sequence[str]:
        """Fields that every example of a ``data=`` file must have (checked at load time)."""
        return ()

    def default_splits(self) -> tuple[list[Example], list[Example]]:
        """Train and held-out examples without ``data=``; by default there are none."""
        raise ValueError(f"{self.name}: no data; pass --data PATH (data=PATH)")


#: Task options every task takes, its own or not (:class:`CutSplits` applies them).
SPLIT_SIZES = ("train_size", "eval_size")


class CutSplits(Task):
    """A task whose splits are cut to ``train_size``/``eval_size``; all else is the task's.

    Why: the held-out size is a question every user asks of every task, their
    own task objects and factories included (``--task mine:task --eval-size
    20``), and those do not take the option themselves.
    """

    def __init__(self, task: Task, train_size: int | None = None, eval_size: int | None = None):
        check_sizes(train_size=train_size, eval_size=eval_size)
        super().__init__(task.config)
        self.task = task
        self.sizes = {"train": train_size, "eval": eval_size}
        self.name, self.stop = task.name, task.stop

    def __getattr__(self, name: str) -> Any:  # source, a user's own attributes...
        return getattr(self.__dict__["task"], name)

    def examples(self, split: str) -> Sequence[Example]:
        examples = self.task.examples(split)
        size = self.sizes[check_split(split)]
        return examples if size is None else list(examples)[:size]

    def prompt(self, example: Example) -> Prompt:
        return self.task.prompt(example)

    def reward(self, example: Example, completion: str) -> float:
        return self.task.reward(example, completion)

    def metrics(
        self, examples: Sequence[Example], completions: Sequence[str], rewards: Sequence[float]
    ) -> dict[str, float]:
        return self.task.metrics(examples, completions, rewards)


def check_sizes(**sizes: int | None) -> None:
    """Raises unless each given size is None (all) or at least 1.

    The message names the option; the task's name comes from whoever built its
    config (:func:`zo_llm.options.make_config` names the owner), never typed here.
    """
    for name, value in sizes.items():
        if value is not None and value < 1:
            raise ValueError(f"{name}={value} must be at least 1")


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of: {', '.join(SPLITS)}")
    return split


TASKS: Registry[type[Task]] = Registry("task")
