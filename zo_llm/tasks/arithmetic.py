"""Few-shot arithmetic: ``a + b =`` completed with the number, graded exactly.

A task every reader recognises, generated offline from a seed, on which a
small pretrained model starts well above zero and well below one (SmolLM2-135M
answers about a quarter of two-digit sums right), so a search has something to
climb: the shipped SmolLM2 recipes train on it.

The prompt is a few solved problems, one per line, then the question, as plain
text (not a chat message, which would turn the pattern into a question to
chat about); a completion ends at its first newline (:attr:`stop`), so the
number scored is the one the model gave for this problem, not the next line
it goes on to invent. The held-out problems, the training problems and the
worked examples are disjoint.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from .base import TASKS, DataTask, DataTaskConfig, Example, Prompt, ask, mean_finite
from .gsm8k import extract_number

OPERATIONS = {"+": operator.add, "-": operator.sub, "*": operator.mul}
FIELDS = ("a", "b")


@dataclass(frozen=True)
class ArithmeticConfig(DataTaskConfig):
    """Problems ``a OP b`` with ``digits``-digit operands, asked after ``shots`` solved ones."""

    digits: int = field(default=2, metadata={"help": "Digits of each operand (1 to 6)."})
    operation: str = field(default="+", metadata={"help": "One of + - *."})
    shots: int = field(default=3, metadata={"help": "Solved problems before the question."})
    seed: int = field(default=0, metadata={"help": "Seeds which problems are drawn."})
    train_size: int | None = field(
        default=1000, metadata={"help": "Training problems (generated; None: 1000)."}
    )
    eval_size: int | None = field(
        default=200, metadata={"help": "Held-out problems (generated; None: 200)."}
    )
    chat: bool | None = field(
        default=False,
        metadata={
            "help": "Ask as a chat message (true) or as the plain few-shot text (false, "
            "the default: a completion, not a question to chat about)."
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= self.digits <= 6:
            raise ValueError(f"arithmetic: digits={self.digits} must be from 1 to 6")
        if self.operation not in OPERATIONS:
            raise ValueError(
                f"arithmetic: unknown operation {self.operation!r}; use one of: "
                f"{' '.join(OPERATIONS)}"
            )
        if self.shots < 0:
            raise ValueError(f"arithmetic: shots={self.shots} must be at least 0")
        needed = sum(self.sizes())
        if needed > self._pairs() // 2:
            raise ValueError(
                f"arithmetic: {needed} problems asked of {self.digits}-digit operands, which "
                f"have {self._pairs()} pairs; use more digits or fewer problems"
            )

    def operands(self) -> tuple[int, int]:
        """The range of an operand: ``digits`` digits (1 digit: 0 to 9)."""
        return 10 ** (self.digits - 1) if self.digits > 1 else 0, 10**self.digits

    def sizes(self) -> tuple[int, int, int]:
        """(train, held-out, shots) problems drawn."""
        return self.train_size or 1000, self.eval_size or 200, self.shots

    def _pairs(self) -> int:
        low, high = self.operands()
        return (high - low) ** 2


@TASKS.register("arithmetic")
class ArithmeticTask(DataTask):
    """Few-shot sums (differences, products) of random integers; reward 1 for the exact answer."""

    config_class = ArithmeticConfig
    stop = ("\n",)

    @classmethod
    def test_config(cls) -> ArithmeticConfig:
        return ArithmeticConfig(digits=1, train_size=20, eval_size=8)

    def required_fields(self) -> Sequence[str]:
        return FIELDS

    def default_splits(self) -> tuple[list[Example], list[Example]]:
        train, held_out, _ = self.config.sizes()
        return self._problems[held_out : held_out + train], self._problems[:held_out]

    @cached_property
    def _problems(self) -> list[Example]:
        """Distinct problems in the order a seeded generator draws them: held-out, train, shots."""
        cfg = self.config
        low, high = cfg.operands()
        rng = np.random.default_rng([cfg.seed, cfg.digits])
        seen: set[tuple[int, int]] = set()
        problems: list[Example] = []
        while len(problems) < sum(cfg.sizes()):
            a, b = (int(x) for x in rng.integers(low, high, size=2))
            if (a, b) not in seen:
                seen.add((a, b))
                problems.append({"a": a, "b": b})
        return problems

    @cached_property
    def shots(self) -> list[Example]:
        """The solved problems every prompt starts with (the last ones drawn)."""
        return self._problems[sum(self.config.sizes()[:2]) :]

    def answer(self, example: Example) -> int:
        return OPERATIONS[self.config.operation](int(example["a"]), int(example["b"]))

    def question(self, example: Example) -> str:
        return f"{example['a']} {self.config.operation} {example['b']} ="

    def prompt(self, example: Example) -> Prompt:
        solved = "".join(f"{self.question(s)} {self.answer(s)}\n" for s in self.shots)
        return ask(solved + self.question(example), self.config.chat)

    def reward(self, example: Example, completion: str) -> float:
        number = extract_number(completion)
        return float(number is not None and number == self.answer(example))

    def metrics(
        self, examples: Sequence[Example], completions: Sequence[str], rewards: Sequence[float]
    ) -> dict[str, float]:
        """Accuracy (the mean reward) and how often any number was given."""
        answered = [float(extract_number(c) is not None) for c in completions]
        return {"accuracy": mean_finite(rewards), "answered": mean_finite(answered)}
