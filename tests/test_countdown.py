"""Countdown task: safe grading, the paper's format reward, data generation and loading."""

from __future__ import annotations

import json
from fractions import Fraction

import pytest

import zo_llm
from zo_llm.tasks.base import TASKS
from zo_llm.tasks.countdown import (
    DEFAULT_PROMPT,
    CountdownConfig,
    CountdownTask,
    check_equation,
    evaluate_equation,
    extract_answer,
    format_score,
    score_countdown,
)

NUMBERS = [19, 36, 55, 7]  # 55 + 36 - 19 - 7 = 65
TARGET = 65


def wrap(answer: str, sep: str = "\n") -> str:
    return f"<think>some reasoning</think>{sep}<answer>{answer}</answer>"


# (completion, numbers, target, expected reward)
CASES = {
    "correct, perfect format": (wrap("55 + 36 - 19 - 7"), NUMBERS, TARGET, 1.1),
    # the paper's format regex: exactly one newline between the blocks, nothing after them
    "correct, blank line between blocks": (wrap("55 + 36 - 19 - 7", "\n\n"), NUMBERS, TARGET, 1.06),
    "correct, text after the answer": (wrap("55 + 36 - 19 - 7") + " done", NUMBERS, TARGET, 1.06),
    "think tags out of order": ("</think> r <think>\n<answer>1 + 1</answer>", [1, 1], 2, 1.05),
    "correct, no newline before <answer>": (
        wrap("(55 + 36) - (19 + 7)", ""),
        NUMBERS,
        TARGET,
        1.06,
    ),
    "wrong result": (wrap("55 + 36 - 19 + 7"), NUMBERS, TARGET, 0.1),
    "number used twice": (wrap("55 + 36 - 19 - 7 + 7 - 7"), NUMBERS, TARGET, 0.1),
    "number omitted": (wrap("55 + 17 - 7"), [55, 17, 7, 1], TARGET, 0.1),
    "number not given": (wrap("55 + 36 - 26"), NUMBERS, TARGET, 0.1),
    "power": (wrap("2 ** 3"), [2, 3], 8, 0.1),
    "floor division": (wrap("7 // 2"), [7, 2], 3, 0.1),
    "import call": (wrap("__import__('os')"), NUMBERS, TARGET, 0.1),
    "name": (wrap("x"), NUMBERS, TARGET, 0.1),
    "float literal": (wrap("2.5 * 2"), [2, 2], 5, 0.1),
    "division": (wrap("(36 + 19 + 55) / 10"), [36, 19, 55, 10], 11, 1.1),
    "non-integer target": (wrap("2 / (1 + 3)"), [1, 2, 3], 0.5, 1.1),
    "non-integer target, 3 omitted": (wrap("1 / 2"), [1, 2, 3], 0.5, 0.1),
    "float target within 1e-5": (wrap("1 / 3"), [1, 3], 0.333333, 1.1),
    "negative target": (wrap("1 - (2 + 3)"), [1, 2, 3], -4, 1.1),
    "unary minus": (wrap("-1 + 2 * 3"), [1, 2, 3], 5, 1.1),
    "division by zero": (wrap("1 / (2 - 2) + 3"), [1, 2, 2, 3], 3, 0.1),
    "missing </answer>": ("<think>r</think>\n<answer>55 + 36 - 19 - 7", NUMBERS, TARGET, 0.01),
    "last answer counts": (
        "<think>r</think>\n<answer>1 + 1</answer> no: <answer>55 + 36 - 19 - 7</answer>",
        NUMBERS,
        TARGET,
        1.1,
    ),
    "last answer wrong": (
        "<think>r</think> <answer>55 + 36 - 19 - 7</answer> <answer>1 + 1</answer>",
        NUMBERS,
        TARGET,
        0.06,
    ),
    "no tags at all": ("55 + 36 - 19 - 7", NUMBERS, TARGET, 0.0),
    "hostile power tower": (wrap("9**9**9"), [9, 9, 9], 1, 0.1),
    "very long expression": (wrap(" + ".join(["1"] * 200)), [1] * 200, 200, 0.1),
    "deep parentheses are fine": (wrap("(" * 100 + "1" + ")" * 100), [1], 1, 1.1),
    "deep unary chain": (wrap("-" * 100 + "1"), [1], 1, 0.1),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_score_table(case):
    completion, numbers, target, expected = CASES[case]
    assert score_countdown(completion, numbers, target).reward == pytest.approx(expected)


def test_evaluate_equation_is_exact_and_safe():
    assert evaluate_equation("(1 + 2) / 3") == 1
    assert evaluate_equation("1 / 3") == Fraction(1, 3)
    assert evaluate_equation("-(4 - 10)") == 6
    for bad in ["2**3", "7 // 2", "7 % 2", "abs(1)", "a.b", "1 / 0", "", "1 +", "True", "'1'"]:
        assert evaluate_equation(bad) is None, bad
    assert evaluate_equation("9**9**9") is None  # returns at once instead of hanging


def test_check_equation_multiset():
    assert check_equation("3 * 3 - 1", [3, 3, 1], 8)
    assert not check_equation("3 * 3 - 1", [3, 1], 8)  # 3 used twice
    assert not check_equation("3 - 1", [3, 3, 1], 2)  # one 3 omitted
    assert check_equation("1 / 3", [1, 3], 1 / 3)  # float target within tolerance


@pytest.mark.parametrize(
    ("answer", "valid"),
    [
        ("3 + 5", True),
        ("3\t+\f5", True),  # Python's parser takes tabs and form feeds
        ("(3\n+ 5)", True),
        ("\u00a03 + 5\u2009", True),  # stripped at the ends, as the paper's grader strips
        ("3\u00a0+\u00a05", False),  # no-break spaces: Python's parser (the paper's eval) refuses
        ("3\u2009+ 5", False),  # a thin space
        ("3\x0b+ 5", False),  # a vertical tab
    ],
)
def test_whitespace_inside_an_answer_is_what_the_papers_grader_takes(answer, valid):
    assert check_equation(answer, [3, 5], 8) is valid


def test_format_score_and_extract_answer():
    assert format_score(wrap("1")) == 1.0
    assert format_score(wrap("1", "")) == pytest.approx(0.6)
    assert format_score("<think>a</think>") == pytest.approx(0.1)
    assert format_score("<answer>a</answer>") == pytest.approx(0.5)
    assert format_score("nothing") == 0.0
    assert extract_answer("<answer> a </answer><answer> b </answer>") == "b"
    assert extract_answer("<answer> a") is None


def problem(numbers=NUMBERS, target=TARGET):
    return {"numbers": list(numbers), "target": target}


def test_prompt_text_is_not_scored():
    task = CountdownTask()
    example = problem()
    prompt = task.prompt(example)
    assert "<answer> (1 + 2) / 3 </answer>" in prompt
    assert task.reward(example, " I could not solve it.") == pytest.approx(0.0)
    # The paper's scripts decoded prompt + completion: the prompt's example tags then earned reward.
    assert task.reward(example, prompt + " I could not solve it.") > 0.0


def test_prefilled_think_counts_as_present():
    task = CountdownTask()
    example = problem()
    completion = " 55 + 36 = 91, 91 - 26 = 65.</think>\n<answer>55 + 36 - 19 - 7</answer>"
    assert task.reward(example, completion) == pytest.approx(1.1)
    assert task.reward(example, "<think>" + completion) == pytest.approx(1.1)
    assert task.reward(example, " " + completion) == pytest.approx(1.1)  # the tag is prepended
    # Without a prefilled prompt the missing tag costs the format bonus.
    assert score_countdown(completion, NUMBERS, TARGET).reward == pytest.approx(1.05)
    plain = CountdownTask(CountdownConfig(prompt_template="{numbers} -> {target}"))
    assert plain.reward(example, completion) == pytest.approx(1.05)


def test_chat_prompt():
    task = CountdownTask(CountdownConfig(chat=True, train_size=2, eval_size=2))
    messages = task.prompt(problem())
    assert messages == [
        {"role": "user", "content": DEFAULT_PROMPT.format(numbers="[19, 36, 55, 7]", target=65)}
    ]
    # the <think> ending the user's message does not open the reply: no free think credit
    completion = " 55 + 36 = 91.</think>\n<answer>55 + 36 - 19 - 7</answer>"
    assert task.reward(problem(), completion) == pytest.approx(1.05)
    assert task.reward(problem(), "<think>" + completion) == pytest.approx(1.1)


def problem_keys(examples):
    return {(tuple(sorted(x["numbers"])), x["target"]) for x in examples}


def test_generation_deterministic_reachable_disjoint():
    config = CountdownConfig(train_size=50, eval_size=30, seed=3)
    train, evals = CountdownTask(config).examples("train"), CountdownTask(config).examples("eval")
    assert (len(train), len(evals)) == (50, 30)
    assert train == CountdownTask(config).examples("train")
    assert train != CountdownTask(CountdownConfig(train_size=50, eval_size=30, seed=4)).examples(
        "train"
    )
    assert not problem_keys(train) & problem_keys(evals)
    task = CountdownTask(config)
    for example in [*train, *evals]:
        assert 3 <= len(example["numbers"]) <= 4
        assert all(1 <= n <= 100 for n in example["numbers"])
        assert isinstance(example["target"], int) and 1 <= example["target"] <= 1000
        assert check_equation(example["solution"], example["numbers"], example["target"])
        assert task.reward(example, wrap(example["solution"])) == pytest.approx(1.1)


def test_registered_and_test_config():
    assert TASKS.get("countdown") is CountdownTask
    task = CountdownTask(CountdownTask.test_config())
    assert len(task.examples("train")) == 8 and len(task.examples("eval")) == 4
    with pytest.raises(ValueError, match="split"):
        task.examples("test")


def test_load_json_split(tmp_path):
    items = [{"numbers": [i, 1], "target": i + 1, "context": f"Q{i} <think>"} for i in range(1, 11)]
    path = tmp_path / "countdown.json"
    path.write_text(json.dumps(items))
    task = CountdownTask(CountdownConfig(data=str(path), train_size=3, eval_size=4))
    assert [e["target"] for e in task.examples("train")] == [2, 3, 4]
    assert [e["target"] for e in task.examples("eval")] == [8, 9, 10, 11]
    example = task.examples("train")[0]
    assert task.prompt(example) == "Q1 <think>"
    assert task.reward(example, "r</think>\n<answer>1 + 1</answer>") == pytest.approx(1.1)

    lines = tmp_path / "countdown.jsonl"
    lines.write_text("\n".join(json.dumps(item) for item in items))
    task = CountdownTask(CountdownConfig(data=str(lines), train_size=3, eval_size=4))
    assert [e["target"] for e in task.examples("eval")] == [8, 9, 10, 11]

    too_many = CountdownTask(CountdownConfig(data=str(path), train_size=8, eval_size=4))
    with pytest.raises(ValueError, match="lower the sizes"):
        too_many.examples("train")


def test_load_errors(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([{"numbers": [1, 2]}]))
    with pytest.raises(ValueError, match="target") as error:
        CountdownTask(CountdownConfig(data=str(path), train_size=1, eval_size=1)).examples("train")
    assert "bad.json" in str(error.value)
    missing = tmp_path / "nope.json"
    with pytest.raises(FileNotFoundError, match="nope.json"):
        CountdownTask(CountdownConfig(data=str(missing))).examples("train")


@pytest.mark.parametrize(
    "options, word",
    [
        ({"train_size": 0}, "train_size"),
        ({"eval_size": -1}, "eval_size"),
        ({"min_numbers": 1}, "min_numbers"),
        ({"min_numbers": 4, "max_numbers": 3}, "max_numbers"),
        ({"max_number": 0}, "max_number"),
        ({"prompt_template": "Reach {target}."}, "prompt_template"),
    ],
)
def test_config_validation(options, word):
    with pytest.raises(ValueError, match=word):
        CountdownConfig(**options)


def test_too_few_distinct_problems():
    task = CountdownTask(
        CountdownConfig(max_number=1, min_numbers=2, max_numbers=2, train_size=5, eval_size=5)
    )
    with pytest.raises(ValueError, match="distinct problems"):
        task.examples("train")


def test_metrics():
    task = CountdownTask()
    examples = [problem(), problem(), problem([1, 2], 3)]
    completions = [wrap("55 + 36 - 19 - 7"), wrap("1 + 1", ""), "no answer"]
    rewards = [task.reward(e, c) for e, c in zip(examples, completions, strict=True)]
    metrics = task.metrics(examples, completions, rewards)
    assert metrics["accuracy"] == pytest.approx(1 / 3)
    assert metrics["reward"] == pytest.approx(sum(rewards) / 3)
    assert metrics["format"] == pytest.approx((1.0 + 0.6 + 0.0) / 3)


def test_paper_data_file_uses_the_paper_split_by_default(tmp_path):
    """Given the paper's file, countdown trains on the first 200 and holds out the last 2000."""
    items = [{"numbers": [i, 1], "target": i + 1} for i in range(1, 2501)]
    path = tmp_path / "countdown.json"
    path.write_text(json.dumps(items))
    task = CountdownTask(CountdownConfig(data=str(path)))
    train, held_out = task.examples("train"), task.examples("eval")
    assert (len(train), len(held_out)) == (200, 2000)
    assert train[0]["target"] == 2 and train[-1]["target"] == 201
    assert held_out[0]["target"] == 502 and held_out[-1]["target"] == 2501
    assert len(CountdownTask(CountdownConfig()).examples("eval")) == 200  # generated
    from zo_llm.components import build_task

    assert len(build_task("countdown", {"data": str(path)}).examples("eval")) == 2000


@pytest.mark.parametrize("name", ["countdown", "countdown-easy"])
def test_a_task_names_itself_in_errors_by_its_registry_name(name):
    with pytest.raises(ValueError, match=f"^task '{name}': max_number=0 must be at least 1"):
        zo_llm.resolve({"task": name, "task_options": {"max_number": 0}})
