"""The few-shot arithmetic task: disjoint generated splits, exact grading, plain prompts."""

from __future__ import annotations

import pytest

from zo_llm.components import build_task
from zo_llm.tasks import ArithmeticConfig, ArithmeticTask


def pairs(examples):
    return {(e["a"], e["b"]) for e in examples}


def test_splits_are_sized_disjoint_and_the_same_every_time():
    task = build_task("arithmetic", {})
    train, held_out = task.examples("train"), task.examples("eval")
    assert (len(train), len(held_out)) == (1000, 200)
    assert not pairs(train) & pairs(held_out)
    assert not pairs(task.shots) & (pairs(train) | pairs(held_out))
    assert all(10 <= e["a"] <= 99 and 10 <= e["b"] <= 99 for e in train)
    again = build_task("arithmetic", {})
    assert again.examples("eval") == held_out and again.examples("train") == train
    assert pairs(build_task("arithmetic", {"seed": 1}).examples("eval")) != pairs(held_out)


def test_prompt_is_plain_few_shot_text_with_correct_answers():
    task = ArithmeticTask(ArithmeticConfig(operation="*", shots=2))
    example = task.examples("eval")[0]
    prompt = task.prompt(example)
    assert isinstance(prompt, str)  # not chat messages: a completion
    lines = prompt.split("\n")
    assert len(lines) == 3 and lines[-1] == f"{example['a']} * {example['b']} ="
    for line in lines[:2]:
        question, answer = line.split(" = ")
        a, b = question.split(" * ")
        assert int(answer) == int(a) * int(b)
    assert task.stop == ("\n",)


def test_reward_is_one_only_for_the_exact_answer():
    task = ArithmeticTask(ArithmeticConfig())
    example = {"a": 98, "b": 17}
    assert task.reward(example, " 115") == 1.0
    assert task.reward(example, "115 ") == 1.0
    assert task.reward(example, " 11") == 0.0
    assert task.reward(example, " 1150") == 0.0
    assert task.reward(example, " many") == 0.0
    metrics = task.metrics([example] * 2, [" 115", " x"], [1.0, 0.0])
    assert metrics == {"accuracy": 0.5, "answered": 0.5}


def test_subtraction_answers_may_be_negative():
    task = ArithmeticTask(ArithmeticConfig(operation="-"))
    assert task.reward({"a": 12, "b": 30}, " -18") == 1.0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"digits": 0}, "digits=0"),
        ({"operation": "/"}, "unknown operation '/'"),
        ({"shots": -1}, "shots=-1"),
        ({"digits": 1, "train_size": 500}, "fewer problems"),
    ],
)
def test_bad_options_are_refused_by_name(options, message):
    with pytest.raises(ValueError, match=message):
        ArithmeticConfig(**options)
