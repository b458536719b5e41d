"""GSM8K: grade-school math word problems, graded by the final number.

The dataset is ``openai/gsm8k`` (``main`` config) from the hub, or a local file
or folder in the same schema (``question``, ``answer`` whose last line is
``#### N``) given with ``data=``. Reward 1.0 when the number extracted from the
completion equals the reference number, else 0.0.

Numbers are compared as numbers, not strings (see DESIGN.md, "Task
fidelity"): ``5.50`` equals ``5.5`` and ``1,250`` equals ``1250``. The final
answer is, in order of preference, the last ``#### N``, the last
``\\boxed{N}``, the last "the answer is N", else the last number of the text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

from .base import TASKS, DataTask, DataTaskConfig, Example, Prompt, ask, mean_finite
from .math_grading import math_equal, require_math_verify

HUB_ID = "openai/gsm8k"
#: Problems in GSM8K's format written for zo-llm's tests (not from the dataset).
SAMPLE_DATA = Path(__file__).parent / "data" / "gsm8k_sample.jsonl"
FIELDS = ("question", "answer")

#: How a completion is graded (the ``reward`` option).
GRADERS = ("number", "math")

DEFAULT_INSTRUCTION = (
    "Solve the following math problem. Reason step by step, then give the final answer as a "
    "number on the last line in the form '#### <number>'."
)

# A number: optional sign, thousands separators or plain digits, optional decimals.
# A sign counts only where it cannot be an operator: "10-3" ends in 3, not -3.
_SIGN = r"(?:(?<![\w.)])[-+])?"
_NUMBER = _SIGN + r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|" + _SIGN + r"\.\d+"
_NUMBER_RE = re.compile(_NUMBER)
_HASHES = re.compile(r"####\s*\$?\s*(" + _NUMBER + ")")
_BOXED = re.compile(r"\\boxed\s*\{([^{}]*)\}")
_STATED = re.compile(
    r"answer\s*(?:is|:|=)\s*[:=]?\s*(?:\\\()?\s*\$?\s*(" + _NUMBER + ")", re.IGNORECASE
)


def parse_number(text: str) -> Decimal | None:
    """The value of one number as written (``1,250`` -> 1250, ``-3.50`` -> -3.5), or None."""
    try:
        return Decimal(text.replace(",", "").strip()).normalize()
    except (InvalidOperation, ValueError):
        return None


def extract_number(text: str) -> Decimal | None:
    """The final numeric answer of a completion, or None if it states no number.

    Preference: the last ``#### N``, the last ``\\boxed{...}`` holding a number,
    the last "answer is N" / "answer: N", else the last number anywhere.
    """
    hashes = _HASHES.findall(text)
    if hashes:
        return parse_number(hashes[-1])
    boxed = [m for m in _BOXED.findall(text) if _NUMBER_RE.search(m)]
    if boxed:
        return parse_number(_NUMBER_RE.search(boxed[-1]).group())
    stated = _STATED.findall(text)
    if stated:
        return parse_number(stated[-1])
    numbers = _NUMBER_RE.findall(text)
    return parse_number(numbers[-1]) if numbers else None


def reference_number(answer: str) -> Decimal | None:
    """The reference number of a GSM8K ``answer`` field (after its ``####``)."""
    matches = _HASHES.findall(answer)
    return parse_number(matches[-1]) if matches else extract_number(answer)


def is_correct(completion: str, answer: str) -> bool:
    """Whether the completion's final number equals the reference answer's, as numbers."""
    predicted, expected = extract_number(completion), reference_number(answer)
    return predicted is not None and expected is not None and predicted == expected


@dataclass(frozen=True)
class GSM8KConfig(DataTaskConfig):
    """Where the problems come from and how they are asked.

    ``data`` holds GSM8K's schema (question, answer ending in ``#### N``); without
    it, ``openai/gsm8k`` (main) is loaded from the hub.
    """

    few_shot: int = field(
        default=0,
        metadata={
            "help": "Worked examples shown before the question: the first N of the "
            "train_size training problems, which are then left out of training."
        },
    )
    instruction: str = field(
        default=DEFAULT_INSTRUCTION, metadata={"help": "Text asking for reasoning and a number."}
    )
    reward: str = field(
        default="number",
        metadata={
            "help": "number: the final number equals the reference's; math: math-verify "
            "decides (1/2, 0.5 and \\frac{1}{2} alike; pip install 'zo-llm[math]')."
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.reward not in GRADERS:
            raise ValueError(f"reward={self.reward!r}; use one of: {', '.join(GRADERS)}")
        if self.reward == "math":
            require_math_verify()
        if self.few_shot < 0:
            raise ValueError(f"gsm8k: few_shot={self.few_shot} must be >= 0")


@TASKS.register("gsm8k")
class GSM8KTask(DataTask):
    """GSM8K word problems; reward 1.0 for the right final number."""

    config_class = GSM8KConfig

    @classmethod
    def test_config(cls) -> GSM8KConfig:
        return GSM8KConfig(data=str(SAMPLE_DATA), train_size=20, eval_size=8)

    def load_splits(self) -> dict[str, list[Example]]:
        """The data's splits, with the first ``few_shot`` train problems moved to ``shots``."""
        splits = super().load_splits()
        cfg, train = self.config, splits["train"]
        if cfg.few_shot >= len(train):
            raise ValueError(
                f"gsm8k: few_shot={cfg.few_shot} leaves none of the {len(train)} train problems "
                "to train on; lower few_shot or raise train_size"
            )
        # the worked examples are held apart: a prompt never shows the answer it is asked
        # for; the held-out problems do not depend on few_shot
        return {**splits, "train": train[cfg.few_shot :], "shots": train[: cfg.few_shot]}

    def required_fields(self) -> tuple[str, ...]:
        return FIELDS

    def default_splits(self) -> tuple[list[Example], list[Example]]:
        return _load_hub()

    def _shots(self) -> list[Example]:
        return self._splits["shots"]

    def prompt(self, example: Example) -> Prompt:
        """Plain text (``Question: ... Answer:``) or chat turns, the worked shots first."""
        cfg = self.config
        messages = []
        for shot in self._shots():
            messages.append({"role": "user", "content": self._ask(shot)})
            messages.append({"role": "assistant", "content": shot["answer"]})
        messages.append({"role": "user", "content": self._ask(example)})
        shots = "".join(
            f"Question: {s['question']}\nAnswer: {s['answer']}\n\n" for s in self._shots()
        )
        text = f"{cfg.instruction}\n\n{shots}Question: {example['question']}\nAnswer:"
        return ask(text, cfg.chat, messages)

    def _ask(self, example: Example) -> str:
        return f"{self.config.instruction}\n\n{example['question']}"

    def reward(self, example: Example, completion: str) -> float:
        if self.config.reward == "math":
            reference = reference_number(example["answer"])  # Decimal 70 prints 7E+1
            return math_equal(completion, "" if reference is None else format(reference, "f"))
        return 1.0 if is_correct(completion, example["answer"]) else 0.0

    def metrics(
        self, examples: Sequence[Example], completions: Sequence[str], rewards: Sequence[float]
    ) -> dict[str, float]:
        """Accuracy (the mean reward) and how often any number was given."""
        answered = [float(extract_number(c) is not None) for c in completions]
        return {"accuracy": mean_finite(rewards), "answered": mean_finite(answered)}


def _load_hub() -> tuple[list[Example], list[Example]]:
    import datasets

    try:
        loaded = datasets.load_dataset(HUB_ID, "main")
    except Exception as error:  # offline, no cache, network: all mean "use data="
        raise ValueError(
            f"gsm8k: cannot load {HUB_ID} from the hub ({type(error).__name__}: {error}); "
            "point the task at a local copy with data=PATH (--data PATH): a file or folder "
            "with question/answer fields, e.g. one saved by Dataset.to_json"
        ) from error
    return [dict(r) for r in loaded["train"]], [dict(r) for r in loaded["test"]]
