"""reasoning-gym's procedural datasets as tasks: ``--task reasoning-gym:NAME``.

Why: RL work on small models trains on reasoning-gym's generators (about a
hundred: arithmetic, logic, puzzles, ...), each with its own scorer, offline
and seeded. Here each is a task: the problems are drawn from the generator
(``seed``, the generator's own ``settings``), the held-out problems, the
worked examples (``shots``) and the training problems are disjoint (drawn
in that order from one seeded dataset, repeated questions dropped), and the
reward is the dataset's own ``score_answer`` (1.0 right, partial credit
where the dataset gives it, 0 wrong).

How the answer is asked for (``answer_format``), stated in the prompt:

- ``tag`` (reasoning-gym's convention): its default system prompt asks for
  reasoning, then ``<answer>...</answer>``; the reward scores what the tags
  hold (nothing in tags: 0);
- ``line``: ``Question: ...`` / ``Answer:`` after ``shots`` solved problems,
  as plain few-shot text (``arithmetic``'s way, which lifts a small model's
  start); the completion's first line is the answer.

``pip install 'zo-llm[reasoning-gym]'``.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from .base import TASKS, DataTask, DataTaskConfig, Example, Prompt, ask, mean_finite

INSTALL = "pip install 'zo-llm[reasoning-gym]'"
ANSWER_FORMATS = ("tag", "line")
#: What a task name starts with to name a reasoning-gym dataset (``reasoning-gym:products``).
PREFIX = "reasoning-gym:"


@dataclass(frozen=True)
class ReasoningGymConfig(DataTaskConfig):
    """Which generator, how many problems, and how they are asked."""

    dataset: str = field(
        default="", metadata={"help": "reasoning-gym dataset name (--task reasoning-gym:NAME)."}
    )
    settings: Mapping[str, Any] = field(
        default_factory=dict,
        metadata={
            "help": "The generator's own options (a TOML table, or JSON on the command "
            "line: '{\"max_digits\": 2}'); its seed and size are the task's."
        },
    )
    seed: int = field(default=0, metadata={"help": "Seeds the generator."})
    train_size: int | None = field(
        default=1000, metadata={"help": "Training problems (generated; None: 1000)."}
    )
    eval_size: int | None = field(
        default=100, metadata={"help": "Held-out problems (generated; None: 100)."}
    )
    shots: int = field(default=0, metadata={"help": "Solved problems before the question."})
    answer_format: str = field(
        default="tag",
        metadata={
            "help": "tag: reasoning, then <answer>...</answer> (reasoning-gym's system prompt); "
            "line: the first line after 'Answer:' (a few-shot prompt)."
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.settings, str):  # from --task-opt settings='{...}'
            object.__setattr__(self, "settings", _json_table(self.settings))
        if self.answer_format not in ANSWER_FORMATS:
            raise ValueError(
                f"answer_format={self.answer_format!r}; use one of: {', '.join(ANSWER_FORMATS)}"
            )
        if self.shots < 0:
            raise ValueError(f"shots={self.shots} must be at least 0")
        if self.shots and self.answer_format == "tag":
            raise ValueError(
                f"shots={self.shots}: solved problems are shown with answer_format='line'; "
                "the tag format asks with reasoning-gym's system prompt alone"
            )
        if self.data is not None:
            raise ValueError("reasoning-gym generates its problems: data= is not used")
        if self.dataset:  # the name and the generator's options, checked now
            self.generator_config()

    def sizes(self) -> tuple[int, int, int]:
        """(held-out, shots, train) problems drawn."""
        return self.eval_size or 100, self.shots, self.train_size or 1000

    def generator_config(self) -> Any:
        """The dataset's own config of ``size`` problems (all three splits) and ``seed``."""
        datasets = _datasets()
        if self.dataset not in datasets:
            close = difflib.get_close_matches(self.dataset, datasets, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ValueError(
                f"unknown reasoning-gym dataset {self.dataset!r}{hint} ({len(datasets)} "
                "datasets: python -c 'import reasoning_gym; print(sorted(reasoning_gym."
                "factory.DATASETS))')"
            )
        _, config_class = datasets[self.dataset]
        taken = sorted(f.name for f in dataclasses.fields(config_class))
        own = {"seed", "size"} & set(self.settings)
        unknown = sorted(set(self.settings) - set(taken)) + sorted(own)
        if unknown:
            raise ValueError(
                f"reasoning-gym dataset {self.dataset!r}: settings {', '.join(unknown)} not "
                f"taken (seed and size are the task's own options); its settings: "
                f"{', '.join(t for t in taken if t not in ('seed', 'size'))}"
            )
        # a quarter more than asked: repeated questions are dropped (the first ones drawn
        # do not depend on the size: reasoning-gym seeds each item by its index)
        size = sum(self.sizes()) * 5 // 4 + 1
        config = config_class(**self.settings, seed=self.seed, size=size)
        try:
            config.validate()
        except (AssertionError, ValueError) as error:
            raise ValueError(f"reasoning-gym dataset {self.dataset!r}: {error}") from None
        return config


def _json_table(text: str) -> dict[str, Any]:
    try:
        table = json.loads(text)
    except json.JSONDecodeError:
        table = None
    if not isinstance(table, dict):
        raise ValueError(f"settings={text!r} is not a JSON object, e.g. '{{\"max_digits\": 2}}'")
    return table


def _datasets() -> dict[str, Any]:
    if importlib.util.find_spec("reasoning_gym") is None:
        raise ValueError(f"reasoning-gym tasks need the reasoning_gym package: {INSTALL}")
    from reasoning_gym.factory import DATASETS

    return DATASETS


@TASKS.register("reasoning-gym")
class ReasoningGymTask(DataTask):
    """A reasoning-gym dataset (--task reasoning-gym:NAME), scored by its own score_answer."""

    config_class = ReasoningGymConfig

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        if not self.config.dataset:
            raise ValueError("reasoning-gym: no dataset; use --task reasoning-gym:NAME")
        self.name = f"{PREFIX}{self.config.dataset}"
        self.stop = ("\n",) if self.config.answer_format == "line" else ()

    @classmethod
    def test_config(cls) -> ReasoningGymConfig:
        return ReasoningGymConfig(dataset="basic_arithmetic", train_size=20, eval_size=8)

    @cached_property
    def generator(self) -> Any:
        cls, _ = _datasets()[self.config.dataset]
        return cls(self.config.generator_config())

    def load_splits(self) -> dict[str, list[Example]]:
        """Held-out, shots, train: in the order drawn, no question twice."""
        seen, problems = set(), []
        for index in range(len(self.generator)):
            entry = self.generator[index]
            if entry["question"] not in seen:
                seen.add(entry["question"])
                problems.append({**entry, "index": index})
        held_out, shots, train = self.config.sizes()
        cut = (held_out, held_out + shots, held_out + shots + train)
        if len(problems) < cut[2]:
            raise ValueError(
                f"{self.name}: {len(problems)} distinct problems of the {cut[2]} asked "
                f"(eval_size {held_out} + shots {shots} + train_size {train}); lower the "
                "sizes or widen the generator's settings"
            )
        return {
            "eval": problems[: cut[0]],
            "shots": problems[cut[0] : cut[1]],
            "train": problems[cut[1] : cut[2]],
        }

    def prompt(self, example: Example) -> Prompt:
        if self.config.answer_format == "tag":
            from reasoning_gym.utils import SYSTEM_PROMPTS

            system = SYSTEM_PROMPTS["default"]
            messages = [
                {"role": "system", "content": system},
                {"role": "user", "content": example["question"]},
            ]
            return ask(f"{system}\n\n{example['question']}\n", self.config.chat, messages)
        messages, text = [], ""
        for shot in self._splits["shots"]:
            messages += [
                {"role": "user", "content": shot["question"]},
                {"role": "assistant", "content": str(shot["answer"])},
            ]
            text += f"Question: {shot['question']}\nAnswer: {shot['answer']}\n\n"
        messages.append({"role": "user", "content": example["question"]})
        return ask(f"{text}Question: {example['question']}\nAnswer:", self.config.chat, messages)

    def answer_of(self, completion: str) -> str | None:
        """What is scored: the tags' content, or the first line (whatever the stop strings)."""
        if self.config.answer_format == "line":
            return completion.strip().split("\n", 1)[0].strip() or None
        from reasoning_gym.utils import extract_answer

        return extract_answer(completion, tag_name="answer")

    def reward(self, example: Example, completion: str) -> float:
        entry = {k: v for k, v in example.items() if k != "index"}
        return float(self.generator.score_answer(self.answer_of(completion), entry))

    def metrics(
        self, examples: Sequence[Example], completions: Sequence[str], rewards: Sequence[float]
    ) -> dict[str, float]:
        """Accuracy (full marks), the mean reward (partial credit counts), and how often an
        answer was found where the format says."""
        answered = [float(self.answer_of(c) is not None) for c in completions]
        right = [r if math.isnan(r) else float(r == 1.0) for r in rewards]
        return {
            "accuracy": mean_finite(right),
            "reward": mean_finite(rewards),
            "answered": mean_finite(answered),
        }
