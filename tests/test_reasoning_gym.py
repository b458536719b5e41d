"""reasoning-gym datasets as tasks: splits, prompts, the dataset's own scorer, the checks."""

from __future__ import annotations

import importlib.util

import pytest

import zo_llm
from zo_llm.cli import main
from zo_llm.components import build_task

pytest.importorskip("reasoning_gym")

SMALL = {"train_size": 30, "eval_size": 10}


def test_splits_are_disjoint_and_sized_and_drawn_the_same_each_time():
    task = build_task("reasoning-gym:products", {**SMALL, "shots": 3, "answer_format": "line"})
    train, held_out = task.examples("train"), task.examples("eval")
    assert (len(train), len(held_out), len(task._splits["shots"])) == (30, 10, 3)
    questions = [
        {e["question"] for e in split} for split in (train, held_out, task._splits["shots"])
    ]
    assert not (
        questions[0] & questions[1] or questions[0] & questions[2] or questions[1] & questions[2]
    )
    again = build_task("reasoning-gym:products", {**SMALL, "shots": 3, "answer_format": "line"})
    assert again.examples("eval") == held_out
    other_seed = build_task("reasoning-gym:products", {**SMALL, "seed": 1})
    assert other_seed.examples("eval") != held_out
    assert task.name == "reasoning-gym:products"


def test_the_tag_format_is_asked_for_and_scored_by_the_dataset():
    task = build_task("reasoning-gym:products", {**SMALL, "chat": False})
    example = task.examples("eval")[0]
    prompt = task.prompt(example)
    assert "<answer>answer here</answer>" in prompt and example["question"] in prompt
    assert task.stop == ()
    right = f"Multiplying: ... <answer>{example['answer']}</answer>"
    assert task.reward(example, right) == 1.0
    assert task.reward(example, f"{example['answer']}") == 0.0  # not in the tags
    assert task.reward(example, "<answer>12</answer>") == 0.0
    metrics = task.metrics([example] * 2, [right, "no tags"], [1.0, 0.0])
    assert metrics == {"accuracy": 0.5, "reward": 0.5, "answered": 0.5}


def test_the_line_format_shows_solved_problems_and_scores_the_first_line():
    task = build_task(
        "reasoning-gym:chain_sum", {**SMALL, "shots": 2, "answer_format": "line", "chat": False}
    )
    example = task.examples("eval")[0]
    prompt = task.prompt(example)
    shot = task._splits["shots"][0]
    assert prompt.startswith(f"Question: {shot['question']}\nAnswer: {shot['answer']}\n\n")
    assert prompt.endswith(f"Question: {example['question']}\nAnswer:")
    assert task.stop == ("\n",)
    assert task.reward(example, f" {example['answer']} ") == 1.0
    assert task.reward(example, f"{example['answer']}\nQuestion: 1 + 1") == 1.0  # first line
    assert task.reward(example, "") == 0.0


def test_the_generators_own_settings_are_passed_and_checked():
    task = build_task(
        "reasoning-gym:products", {**SMALL, "settings": '{"min_digits": 1, "max_digits": 1}'}
    )
    assert all(len(e["metadata"]["expression"]) == 5 for e in task.examples("eval"))  # "a * b"
    with pytest.raises(ValueError, match="settings foo not taken.*its settings: allow_negation"):
        build_task("reasoning-gym:products", {"settings": {"foo": 1}})
    with pytest.raises(ValueError, match="seed not taken"):
        build_task("reasoning-gym:products", {"settings": {"seed": 1}})
    with pytest.raises(ValueError, match="is not a JSON object"):
        build_task("reasoning-gym:products", {"settings": "max_digits=2"})


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        (
            "reasoning-gym:prodcts",
            {},
            "unknown reasoning-gym dataset 'prodcts'; did you mean products",
        ),
        ("reasoning-gym", {}, "no dataset; use --task reasoning-gym:NAME"),
        (
            "reasoning-gym:products",
            {"answer_format": "boxed"},
            "answer_format='boxed'; use one of: tag, line",
        ),
        ("reasoning-gym:products", {"data": "x.jsonl"}, "data= is not used"),
        ("reasoning-gym:products", {"shots": 2}, "shots=2: solved problems are shown with"),
    ],
)
def test_bad_names_and_options_are_refused(name, options, message):
    with pytest.raises(ValueError, match=message):
        build_task(name, options)


def test_a_missing_extra_is_refused_with_the_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "reasoning_gym" else real(n, *a)
    )
    with pytest.raises(ValueError, match=r"pip install 'zo-llm\[reasoning-gym\]'"):
        build_task("reasoning-gym:products", {})


def test_the_cli_refuses_an_unknown_dataset_before_loading(capsys):
    assert main(["train", "--task", "reasoning-gym:letter_countin", "--iterations", "1"]) == 2
    err = capsys.readouterr().err
    assert "did you mean letter_counting" in err and "Traceback" not in err


def test_a_run_trains_on_a_dataset_through_the_reward_process(tmp_path):
    experiment = zo_llm.train(
        model="zo-tiny",
        task="reasoning-gym:basic_arithmetic",
        task_options={"train_size": 8, "eval_size": 4, "answer_format": "line", "shots": 1},
        population=2,
        batch_size=2,
        iterations=1,
        max_new_tokens=4,
        out=str(tmp_path / "run"),
    )
    records = zo_llm.read_metrics(tmp_path / "run")
    assert [r["type"] for r in records] == ["eval", "train", "eval"]
    assert records[1]["reward_failures"] == 0 and {"accuracy", "reward", "answered"} <= set(
        records[0]
    )
    assert experiment.config.task.options.dataset == "basic_arithmetic"
