"""A user's own task: examples, a prompt function and a reward function.

From Python::

    task = zo_llm.FunctionTask(
        train=[{"prompt": "2+2=", "answer": "4"}, ...],
        eval=[...],
        prompt=lambda ex: ex["prompt"],            # or a template: "Q: {prompt}\\nA:"
        reward=lambda ex, completion: float(completion.strip() == ex["answer"]),
    )                                               # or reward="exact_match"
    zo_llm.train(model="zo-tiny", task=task, out="runs/mine")

From the CLI, a file of ``{prompt, answer}`` examples with a named reward::

    zo-llm train --task my.jsonl --task-opt reward=numeric
    zo-llm train --task file --data my.jsonl --task-opt reward=contains   # the same

or any importable object (``--task my_module:my_task``): a :class:`Task`
instance, a :class:`Task` subclass (built from ``--task-opt``), or a factory
called with the ``--task-opt`` options that returns a task.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .base import TASKS, DataTask, DataTaskConfig, Example, Prompt, Task, ask, check_split
from .gsm8k import extract_number, parse_number
from .loading import check_fields
from .math_grading import math_equal, require_math_verify

RewardFunction = Callable[[Example, str], float]


def _normalize(text: Any) -> str:
    return " ".join(str(text).split()).lower()


def exact_match(completion: str, answer: Any) -> float:
    """1.0 when the completion equals the answer (case and surrounding/repeated spaces ignored)."""
    return float(_normalize(completion) == _normalize(answer))


def contains(completion: str, answer: Any) -> float:
    """1.0 when the answer occurs in the completion (case and repeated spaces ignored)."""
    return float(_normalize(answer) in _normalize(completion))


def numeric(completion: str, answer: Any) -> float:
    """1.0 when the completion's final number equals the answer as a number (GSM8K's rules)."""
    expected = parse_number(str(answer)) if not isinstance(answer, str) else extract_number(answer)
    predicted = extract_number(completion)
    return float(predicted is not None and expected is not None and predicted == expected)


#: Rewards by name, for ``reward="..."`` and ``--task-opt reward=...``.
BUILTIN_REWARDS: dict[str, Callable[[str, Any], float]] = {
    "exact_match": exact_match,
    "contains": contains,
    "numeric": numeric,
    "math": math_equal,
}


def check_reward_name(name: str, owner: str) -> None:
    """Refuses an unknown built-in reward, or one whose extra is missing, naming the fix."""
    if name not in BUILTIN_REWARDS:
        known = ", ".join(BUILTIN_REWARDS)
        raise ValueError(f"{owner}unknown reward {name!r}; use one of: {known}")
    if name == "math":
        require_math_verify(owner)


def builtin_reward(name: str, answer_field: str = "answer") -> RewardFunction:
    """The named built-in reward, comparing a completion with ``example[answer_field]``."""
    check_reward_name(name, "")
    compare = BUILTIN_REWARDS[name]
    return lambda example, completion: compare(completion, example[answer_field])


def _as_examples(data: Iterable[Any] | None, what: str) -> list[Example]:
    if data is None:
        return []
    rows = [dict(row) if not isinstance(row, dict) else row for row in data]
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise TypeError(f"FunctionTask: {what} example {index} is not a dict: {row!r}")
    return rows


class FunctionTask(Task):
    """A task from examples (lists of dicts or :class:`datasets.Dataset`) and two functions.

    Args:
      train: training examples.
      eval: held-out examples; None reuses ``train`` (then held-out metrics are not held out).
      prompt: ``example -> text or chat messages``, or a template string filled with the
        example's fields (``"Q: {question}\\nA:"``).
      reward: ``(example, completion) -> float`` scoring the completion only, or a
        built-in name (``exact_match``, ``contains``, ``numeric``) comparing with
        ``example[answer_field]``. A reward that raises or returns NaN scores NaN for
        that completion and is counted in ``reward_failures`` (see docs/guide.md).
      metrics: optional ``(examples, completions, rewards) -> dict``; default: mean reward.
      answer_field: the field the built-in rewards compare with.
      required: fields every example must have (checked now, with a clear error).
      stop: strings that end a completion (``("\\n",)`` for a few-shot prompt); a run's
        ``--stop`` overrides them.
    """

    def __init__(
        self,
        train: Iterable[Example],
        eval: Iterable[Example] | None = None,  # noqa: A002 - the split's name
        *,
        prompt: Callable[[Example], Prompt] | str,
        reward: RewardFunction | str,
        metrics: Callable[..., dict[str, float]] | None = None,
        answer_field: str = "answer",
        required: Sequence[str] = (),
        stop: Sequence[str] = (),
    ) -> None:
        super().__init__()
        self.stop = tuple(stop)
        self._train = _as_examples(train, "train")
        self._eval = _as_examples(eval, "eval") if eval is not None else self._train
        if not self._train:
            raise ValueError("FunctionTask: no training examples")
        needed = list(required) + ([answer_field] if isinstance(reward, str) else [])
        check_fields(self._train, needed, "FunctionTask", "train")
        check_fields(self._eval, needed, "FunctionTask", "eval")
        self._prompt = prompt
        self._reward = builtin_reward(reward, answer_field) if isinstance(reward, str) else reward
        self._metrics = metrics

    def examples(self, split: str) -> Sequence[Example]:
        return self._train if check_split(split) == "train" else self._eval

    def prompt(self, example: Example) -> Prompt:
        if isinstance(self._prompt, str):
            return self._prompt.format(**example)
        return self._prompt(example)

    def reward(self, example: Example, completion: str) -> float:
        return self._reward(example, completion)

    def metrics(
        self, examples: Sequence[Example], completions: Sequence[str], rewards: Sequence[float]
    ) -> dict[str, float]:
        if self._metrics is not None:
            return dict(self._metrics(examples, completions, rewards))
        return super().metrics(examples, completions, rewards)


def make_task(
    train: Iterable[Example],
    eval: Iterable[Example] | None = None,  # noqa: A002
    *,
    prompt: Callable[[Example], Prompt] | str,
    reward: RewardFunction | str,
    **options: Any,
) -> FunctionTask:
    """Shorthand for :class:`FunctionTask` (same arguments)."""
    return FunctionTask(train, eval, prompt=prompt, reward=reward, **options)


@dataclass(frozen=True)
class FileTaskConfig(DataTaskConfig):
    """A local file of examples (``data=``, required) scored by a built-in reward."""

    reward: str = field(
        default="exact_match",
        metadata={"help": f"Built-in reward: {', '.join(BUILTIN_REWARDS)}."},
    )
    prompt_field: str = field(default="prompt", metadata={"help": "Field holding the prompt."})
    answer_field: str = field(default="answer", metadata={"help": "Field holding the answer."})
    template: str | None = field(
        default=None,
        metadata={"help": "Prompt template over the example's fields (overrides prompt_field)."},
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        check_reward_name(self.reward, "file task: ")


@TASKS.register("file")
class FileTask(DataTask):
    """Examples from a local file (``data=``), scored by a built-in reward (``reward=``)."""

    config_class = FileTaskConfig

    def required_fields(self) -> list[str]:
        cfg = self.config
        return [cfg.answer_field] + ([] if cfg.template else [cfg.prompt_field])

    def prompt(self, example: Example) -> Prompt:
        cfg = self.config
        text = cfg.template.format(**example) if cfg.template else str(example[cfg.prompt_field])
        return ask(text, cfg.chat)

    def reward(self, example: Example, completion: str) -> float:
        return BUILTIN_REWARDS[self.config.reward](completion, example[self.config.answer_field])
