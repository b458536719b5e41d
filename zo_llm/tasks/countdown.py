"""Countdown: combine the given numbers with + - * / to reach a target.

The task of Qiu et al. 2025, *Evolution Strategies at Scale: LLM Fine-Tuning
Beyond Reinforcement Learning* (https://arxiv.org/abs/2509.24372), taken from
TinyZero. Reward = 0.1 * format score + answer score, so a perfect completion
scores 1.1.

Two departures from the paper's grader, both on purpose (see DESIGN.md, "Task
fidelity"): the answer is parsed with :mod:`ast` and evaluated exactly with
:class:`fractions.Fraction` instead of ``eval``, so ``2**3`` scores 0 and
``9**9**9`` cannot hang the process; and only the completion is scored, so the
example ``<answer>`` tags inside the prompt earn nothing.

The answer's grammar: integer literals, ``+ - * /``, unary minus and
parentheses. Whitespace of any kind (spaces, tabs, newlines) between its
tokens is ignored, wherever it stands, as Python's tokenizer ignores it inside
parentheses: ``1 +\n2`` is ``1 + 2``. Whitespace never joins digits, so
``1 0`` is not ``10`` (the answer scores 0).
"""

from __future__ import annotations

import ast
import math
import random
import re
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, NamedTuple

from .base import TASKS, DataTask, DataTaskConfig, Example, Prompt, ask, check_sizes, mean_finite
from .loading import read_json_records

DEFAULT_PROMPT = (
    "Using the numbers {numbers}, create an equation that equals {target}. You can use basic "
    "arithmetic operations (+, -, *, /) and each number can only be used once. Show your work in "
    "<think> </think> tags. And return the final answer in <answer> </answer> tags, for example "
    "<answer> (1 + 2) / 3 </answer>. Let me solve this step by step.\n<think>"
)

#: Held-out problems by default: the paper's last 2000 of its data file, or 200 generated ones.
PAPER_EVAL_SIZE = 2000
GENERATED_EVAL_SIZE = 200
#: Longest answer expression that is parsed at all; longer ones score 0 unread.
MAX_EXPRESSION_CHARS = 256
#: Deepest expression tree that is evaluated (guards the recursive walk).
MAX_EXPRESSION_DEPTH = 32
#: Distance below which an answer counts as reaching the target (file targets may be floats).
TOLERANCE = Fraction(1, 100_000)

# Only digits, operators, parentheses and the whitespace Python's parser takes (the
# paper's grader evals the answer): names, calls, floats, `_`, hex literals and
# Unicode spaces (no-break, thin...) are rejected before the parser sees them.
_ALLOWED_CHARS = re.compile(r"[0-9+\-*/() \t\f\r\n]+")
# The paper's grader (TinyZero's): think block, one newline, answer block, nothing else.
_FULL_FORMAT = re.compile(r"^<think>.*?</think>\n<answer>.*?</answer>$", re.DOTALL)
_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL)
_ANSWER_BLOCK = re.compile(r"<answer>.*?</answer>", re.DOTALL)
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_BINARY_OPS = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
}


@dataclass(frozen=True)
class CountdownConfig(DataTaskConfig):
    """Where the problems come from and how they are asked.

    ``data`` is a JSON (or JSON Lines) file of ``{numbers, target[, context]}``
    problems, e.g. the paper's; without it problems are generated.
    """

    # the paper's sizes and plain-text prompt: defaults and meanings of their own
    train_size: int = field(default=200, metadata={"help": "Number of training problems."})
    eval_size: int | None = field(
        default=None,
        metadata={
            "help": "Number of held-out problems: the last N of a data= file, as in the paper, "
            "or N generated ones (None: 2000 of a file, 200 generated)."
        },
    )
    chat: bool = field(
        default=False,
        metadata={
            "help": "Ask as one user chat message (chat template) instead of the paper's plain "
            "text, which ends inside the <think> block."
        },
    )
    seed: int = field(default=0, metadata={"help": "Seed of the problem generator."})
    min_numbers: int = field(default=3, metadata={"help": "Fewest numbers per problem."})
    max_numbers: int = field(default=4, metadata={"help": "Most numbers per problem."})
    max_number: int = field(default=100, metadata={"help": "Numbers are drawn from 1..max_number."})
    max_target: int = field(
        default=1000, metadata={"help": "Generated targets lie in 1..max_target."}
    )
    prompt_template: str = field(
        default=DEFAULT_PROMPT,
        metadata={"help": "Prompt with {numbers} and {target} placeholders (the paper's)."},
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        check_sizes(max_number=self.max_number, max_target=self.max_target)
        if not 2 <= self.min_numbers <= 12:
            raise ValueError(f"countdown: min_numbers={self.min_numbers} must be in 2..12")
        if not self.min_numbers <= self.max_numbers <= 12:
            raise ValueError(
                f"countdown: max_numbers={self.max_numbers} must be in "
                f"min_numbers={self.min_numbers}..12"
            )
        placeholders = {f for _, f, _, _ in string.Formatter().parse(self.prompt_template) if f}
        if placeholders != {"numbers", "target"}:
            raise ValueError(
                f"countdown: prompt_template has placeholders {sorted(placeholders)}; "
                "use exactly {numbers} and {target}"
            )


class CountdownScore(NamedTuple):
    """One completion's grade: ``reward = 0.1 * format + (1.0 if correct else 0.0)``."""

    reward: float
    format: float
    correct: bool


class _Invalid(Exception):
    """An answer outside the allowed grammar (caught; the answer scores 0)."""


def _walk(node: ast.AST, used: list[int], depth: int) -> Fraction:
    """Exact value of an allowed expression node; appends each literal to ``used``."""
    if depth > MAX_EXPRESSION_DEPTH:
        raise _Invalid("too deep")
    if isinstance(node, ast.Constant) and type(node.value) is int:  # bool is not int here
        used.append(node.value)
        return Fraction(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY_OPS:
        left = _walk(node.left, used, depth + 1)
        right = _walk(node.right, used, depth + 1)
        if isinstance(node.op, ast.Div) and right == 0:
            raise _Invalid("division by zero")
        return _BINARY_OPS[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _walk(node.operand, used, depth + 1)
        return -value if isinstance(node.op, ast.USub) else value
    raise _Invalid(type(node).__name__)


def parse_equation(expression: str) -> tuple[Fraction, list[int]] | None:
    """Value of ``expression`` and the integer literals it uses, or None if not allowed.

    Allowed: integer literals, binary + - * /, unary minus/plus and parentheses;
    spaces, tabs, form feeds and newlines between tokens are ignored (a newline
    inside parentheses or not; the paper's grader, which evals the answer,
    takes it only inside them). Other whitespace (a no-break or thin space)
    makes the answer invalid, as Python's parser, and so the paper's grader,
    rejects it; at either end it is stripped, as there. The length cap and
    character filter run before :func:`ast.parse`, and no power operator exists
    in the grammar, so any input returns quickly.
    """
    expression = expression.strip()
    if not expression or len(expression) > MAX_EXPRESSION_CHARS:
        return None
    if not _ALLOWED_CHARS.fullmatch(expression):
        return None
    expression = " ".join(expression.split())  # one rule for every whitespace, anywhere
    try:
        tree = ast.parse(expression, mode="eval")
        used: list[int] = []
        return _walk(tree.body, used, 0), used
    except (_Invalid, SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def evaluate_equation(expression: str) -> Fraction | None:
    """Exact value of an arithmetic answer, or None if it is malformed or not allowed."""
    parsed = parse_equation(expression)
    return None if parsed is None else parsed[0]


def check_equation(expression: str, numbers: Sequence[int], target: float) -> bool:
    """Whether ``expression`` uses each of ``numbers`` exactly once and equals ``target``."""
    parsed = parse_equation(expression)
    if parsed is None:
        return False
    value, used = parsed
    if Counter(used) != Counter(int(n) for n in numbers):
        return False
    return abs(value - Fraction(target)) <= TOLERANCE


def format_score(text: str) -> float:
    """The paper's format score: 1.0 for ``<think>…</think>\\n<answer>…</answer>``.

    Otherwise partial credit: 0.1 for a ``<think>…</think>`` block, plus 0.5 for an
    ``<answer>…</answer>`` block. As in the paper, the text is matched as it is:
    no stripping, so a blank line between the blocks loses the full score.
    """
    if _FULL_FORMAT.match(text):
        return 1.0
    score = 0.0
    if _THINK_BLOCK.search(text):
        score += 0.1
    if _ANSWER_BLOCK.search(text):
        score += 0.5
    return score


def extract_answer(text: str) -> str | None:
    """Content of the last ``<answer>…</answer>`` block, or None if there is none."""
    answers = _ANSWER.findall(text)
    return answers[-1].strip() if answers else None


def score_countdown(
    completion: str, numbers: Sequence[int], target: float, think_prefilled: bool = False
) -> CountdownScore:
    """Grades one completion (the generated text only, never the prompt).

    Args:
      completion: the model's generated text.
      numbers: the numbers that must each be used exactly once.
      target: the value the answer must reach (within :data:`TOLERANCE`).
      think_prefilled: the prompt itself ends with ``<think>``. The model was made
        to start inside the think block, so, as in the paper's grader, ``<think>``
        is put in front of the completion before it is graded.
    """
    if think_prefilled:  # as the paper's grader: the opening tag is the prompt's
        completion = "<think>" + completion
    fmt = format_score(completion)
    answer = extract_answer(completion)
    correct = answer is not None and check_equation(answer, numbers, target)
    return CountdownScore(0.1 * fmt + (1.0 if correct else 0.0), fmt, correct)


def generate_problems(config: CountdownConfig, count: int) -> list[Example]:
    """``count`` distinct problems whose targets are reachable by construction.

    Deterministic for ``config.seed``. Each problem combines its numbers pairwise in
    random order with random operations whose results stay positive integers, as in
    TinyZero's problems; the expression is kept as ``"solution"``.
    """
    rng = random.Random(config.seed)
    problems: list[Example] = []
    seen: set[tuple[tuple[int, ...], int]] = set()
    for _ in range(1000 * count):
        if len(problems) == count:
            return problems
        numbers = [
            rng.randint(1, config.max_number)
            for _ in range(rng.randint(config.min_numbers, config.max_numbers))
        ]
        target, solution = _combine(numbers, rng)
        key = (tuple(sorted(numbers)), target)
        if target <= config.max_target and key not in seen:
            seen.add(key)
            problems.append({"numbers": numbers, "target": target, "solution": solution})
    if len(problems) == count:
        return problems
    raise ValueError(
        f"countdown: found only {len(problems)} distinct problems of {count} needed; "
        "raise max_number, max_target or max_numbers, or lower train_size/eval_size"
    )


def _combine(numbers: list[int], rng: random.Random) -> tuple[int, str]:
    """Folds ``numbers`` into one positive integer with random operations; returns it and how."""
    terms = [(n, str(n)) for n in numbers]
    while len(terms) > 1:
        rng.shuffle(terms)
        (a, a_expr), (b, b_expr) = terms.pop(), terms.pop()
        for op in rng.sample("+-*/", 4):  # `+` and `*` always succeed, so this never falls through
            value = {"+": a + b, "-": a - b, "*": a * b, "/": a // b if a % b == 0 else 0}[op]
            if value > 0:
                terms.append((value, f"({a_expr} {op} {b_expr})"))
                break
    value, expr = terms[0]
    return value, expr[1:-1] if expr.startswith("(") else expr


def load_problems(path: str | Path) -> list[Example]:
    """Problems from a JSON list (or JSON Lines) of ``{numbers, target[, context]}`` objects."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"countdown: data file not found: {path} (set data= / --data to a JSON or JSON Lines "
            "file of {numbers, target} problems)"
        )
    items = read_json_records(path, "countdown")
    return [_check_item(item, i, path) for i, item in enumerate(items)]


def _check_item(item: Any, index: int, path: Path) -> Example:
    """One loaded problem, checked so that a bad file fails at load time, not while scoring."""
    missing = [k for k in ("numbers", "target") if not isinstance(item, dict) or k not in item]
    if missing:
        raise ValueError(f"countdown: item {index} of {path} lacks field(s) {', '.join(missing)}")
    numbers, target = item["numbers"], item["target"]
    if not isinstance(numbers, list) or not all(_is_number(n, integral=True) for n in numbers):
        raise ValueError(f"countdown: item {index} of {path}: numbers={numbers!r} are not integers")
    if not _is_number(target):
        raise ValueError(f"countdown: item {index} of {path}: target={target!r} is not a number")
    return {**item, "numbers": [int(n) for n in numbers]}


def _is_number(value: Any, integral: bool = False) -> bool:
    """A JSON int, or a finite float (a whole one when ``integral``); bools are not numbers."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if isinstance(value, int):
        return True
    return math.isfinite(value) and (value.is_integer() or not integral)


@TASKS.register("countdown")
class CountdownTask(DataTask):
    """Countdown arithmetic puzzles with the paper's format + answer reward.

    With ``data=``, the paper's split: the first ``train_size`` problems of the
    file train and its last ``eval_size`` are held out. Generated problems are one
    seeded stream, train first, so ``eval_size=n`` holds out the first n of the
    default 200.
    """

    config_class = CountdownConfig

    @classmethod
    def test_config(cls) -> CountdownConfig:
        return CountdownConfig(train_size=8, eval_size=4)

    def load_splits(self) -> dict[str, list[Example]]:
        """Train and eval problems; the two never share a problem."""
        cfg = self.config
        train_size, eval_size = cfg.train_size, cfg.eval_size
        if eval_size is None:
            eval_size = PAPER_EVAL_SIZE if cfg.data is not None else GENERATED_EVAL_SIZE
        if cfg.data is None:
            problems = generate_problems(cfg, train_size + eval_size)
        else:
            problems = load_problems(cfg.data)
            if train_size + eval_size > len(problems):
                raise ValueError(
                    f"countdown: {cfg.data} has {len(problems)} problems, fewer than "
                    f"train_size={train_size} + eval_size={eval_size}; lower the sizes"
                )
        return {"train": problems[:train_size], "eval": problems[len(problems) - eval_size :]}

    def prompt_text(self, example: Example) -> str:
        """The prompt as plain text: the file's ``context`` verbatim, else the template."""
        if "context" in example:
            return str(example["context"])
        numbers = "[" + ", ".join(str(n) for n in example["numbers"]) + "]"
        return self.config.prompt_template.format(numbers=numbers, target=example["target"])

    def prompt(self, example: Example) -> Prompt:
        text = self.prompt_text(example)
        return ask(text, self.config.chat)

    def score(self, example: Example, completion: str) -> CountdownScore:
        """Grades ``completion``; the prompt is consulted only for a prefilled ``<think>``."""
        # a chat prompt's <think> sits in the user's message: the reply starts outside it
        prefilled = not self.config.chat and self.prompt_text(example).rstrip().endswith("<think>")
        return score_countdown(completion, example["numbers"], example["target"], prefilled)

    def reward(self, example: Example, completion: str) -> float:
        return self.score(example, completion).reward

    def metrics(
        self, examples: Sequence[Example], completions: Sequence[str], rewards: Sequence[float]
    ) -> dict[str, float]:
        """Accuracy (answer correct), mean reward and mean format score."""
        if not len(examples) == len(completions) == len(rewards):
            raise ValueError(
                f"countdown: {len(examples)} examples, {len(completions)} completions and "
                f"{len(rewards)} rewards; pass one of each per example"
            )
        scores = [self.score(e, c) for e, c in zip(examples, completions, strict=True)]
        return {
            "accuracy": mean_finite([float(s.correct) for s in scores]),
            "reward": mean_finite(rewards),
            "format": mean_finite([s.format for s in scores]),
        }


@dataclass(frozen=True)
class EasyCountdownConfig(CountdownConfig):
    """Countdown's options, with two numbers from 1..30 per problem by default."""

    min_numbers: int = field(default=2, metadata={"help": "Fewest numbers per problem."})
    max_numbers: int = field(default=2, metadata={"help": "Most numbers per problem."})
    max_number: int = field(default=30, metadata={"help": "Numbers are drawn from 1..max_number."})


@TASKS.register("countdown-easy")
class EasyCountdownTask(CountdownTask):
    """Countdown with two numbers from 1..30: the shipped zo-tiny model's task, and the default.

    Same prompt, reward and metrics as ``countdown``; only the generated problems
    are easier, so that a ~1M-parameter model can solve many of them.
    """

    config_class = EasyCountdownConfig
