"""GSM8K: numeric answer extraction, prompts, and offline loading from local data."""

from __future__ import annotations

import dataclasses
import json
from decimal import Decimal

import pytest

from zo_llm.tasks.base import ChatPrompt
from zo_llm.tasks.gsm8k import (
    DEFAULT_INSTRUCTION,
    SAMPLE_DATA,
    GSM8KConfig,
    GSM8KTask,
    extract_number,
    is_correct,
    reference_number,
)

# (completion, reference answer, reward)
CASES = [
    ("3 * 4 = 12\n#### 12", "#### 12", 1.0),
    ("#### 1,250", "#### 1250", 1.0),  # thousands separator
    ("The total is 1250.\n#### 1250", "#### 1,250", 1.0),
    ("#### 5.50", "#### 5.5", 1.0),  # numbers, not strings
    ("#### 7.0", "#### 7", 1.0),
    ("#### $18", "#### 18", 1.0),
    ("So we get \\boxed{42}.", "#### 42", 1.0),
    ("\\boxed{\\$3.50}", "#### 3.5", 1.0),
    ("\\boxed{18 \\text{ dollars}}", "#### 18", 1.0),
    ("First 3 + 4 = 7. The answer is 12.", "#### 12", 1.0),  # stated answer beats last number
    ("The answer is 12 apples, since 3 * 4 = 12 and 2 more would be 14", "#### 12", 1.0),
    ("Final answer: 250 cm", "#### 250", 1.0),
    ("The answer is -6.", "#### -6", 1.0),  # sign and trailing period
    ("It drops to -6 degrees.", "#### -6", 1.0),  # last number fallback
    ("He has 3 bags of 4, so 12 marbles.", "#### 12", 1.0),
    ("It costs 7.5 dollars.", "#### 7.5", 1.0),
    ("The difference is 10-3", "#### 3", 1.0),  # a minus between numbers is an operator
    ("so 12-7=5", "#### 5", 1.0),
    ("#### 12 is wrong, ignore: the answer is 13", "#### 12", 1.0),  # #### wins
    ("#### 13", "#### 12", 0.0),  # wrong answer
    ("The answer is 6.", "#### -6", 0.0),  # wrong sign
    ("The answer is 12.5", "#### 12", 0.0),
    ("\\boxed{11}", "#### 12", 0.0),
    ("I do not know.", "#### 12", 0.0),  # no number at all
    ("", "#### 12", 0.0),
]


@pytest.mark.parametrize(("completion", "answer", "expected"), CASES)
def test_reward_table(completion, answer, expected):
    task = GSM8KTask(GSM8KTask.test_config())
    assert task.reward({"question": "q", "answer": answer}, completion) == expected


def test_extract_number_values():
    assert extract_number("#### 1,250") == Decimal(1250)
    assert extract_number("-3.50 dollars.") == Decimal("-3.5")
    assert extract_number("no number") is None
    assert reference_number("2 + 2 = <<2+2=4>>4\n#### 4") == 4
    assert not is_correct("nothing", "#### 4")


def test_shipped_sample_answers_grade_themselves():
    task = GSM8KTask(GSM8KConfig(data=str(SAMPLE_DATA), train_size=20))
    train, held_out = task.examples("train"), task.examples("eval")
    assert len(train) == 20 and len(held_out) == 12
    assert {e["question"] for e in train}.isdisjoint(e["question"] for e in held_out)
    for example in [*train, *held_out]:  # each reference solution earns full reward
        assert task.reward(example, example["answer"]) == 1.0
    completions = [e["answer"] for e in held_out[:2]] + ["no idea"]
    metrics = task.metrics(held_out[:3], completions, [1.0, 1.0, 0.0])
    assert metrics == {"accuracy": pytest.approx(2 / 3), "answered": pytest.approx(2 / 3)}


def test_prompts_plain_few_shot_and_chat():
    example = {"question": "What is 2 + 3?", "answer": "#### 5"}
    plain_config = dataclasses.replace(GSM8KTask.test_config(), chat=False)
    plain = GSM8KTask(plain_config).prompt(example)
    assert plain.endswith("Question: What is 2 + 3?\nAnswer:") and "####" in plain
    # by default the tokenizer decides: chat turns with a template, this plain text without
    either = GSM8KTask(GSM8KTask.test_config()).prompt(example)
    assert isinstance(either, ChatPrompt) and either.text == plain
    assert list(either) == [{"role": "user", "content": f"{DEFAULT_INSTRUCTION}\n\nWhat is 2 + 3?"}]
    shots = GSM8KTask(GSM8KConfig(data=str(SAMPLE_DATA), train_size=20, few_shot=2, chat=False))
    no_shots = GSM8KTask(GSM8KConfig(data=str(SAMPLE_DATA), train_size=20, chat=False))
    first, second = no_shots.examples("train")[:2]  # the shots: held out of training
    assert shots.examples("train") == no_shots.examples("train")[2:]
    assert shots.examples("eval") == no_shots.examples("eval")
    text = shots.prompt(example)
    assert text.index(first["question"]) < text.index(second["question"]) < text.index("2 + 3")
    assert shots.prompt(example) == text  # deterministic
    chat = GSM8KTask(GSM8KConfig(data=str(SAMPLE_DATA), train_size=20, few_shot=1, chat=True))
    messages = chat.prompt(example)
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[1]["content"] == first["answer"] and "2 + 3" in messages[2]["content"]


def test_loads_local_folder_and_parquet_offline(tmp_path):
    rows = [{"question": f"q{i}", "answer": f"#### {i}"} for i in range(6)]
    folder = tmp_path / "gsm8k"
    folder.mkdir()
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:4]))
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[4:]))
    task = GSM8KTask(GSM8KConfig(data=str(folder)))
    assert [e["question"] for e in task.examples("eval")] == ["q4", "q5"]
    assert len(task.examples("train")) == 4

    import datasets

    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "all.parquet"))
    task = GSM8KTask(GSM8KConfig(data=str(tmp_path / "all.parquet"), train_size=5))
    assert [e["answer"] for e in task.examples("eval")] == ["#### 5"]


def test_errors_name_the_fix(tmp_path, monkeypatch):
    import datasets

    def unreachable(*args, **kwargs):
        raise ConnectionError("the hub cannot be reached")

    with monkeypatch.context() as patched:
        patched.setattr(datasets, "load_dataset", unreachable)  # whatever the local cache holds
        with pytest.raises(ValueError, match="cannot be reached.*data=PATH"):
            GSM8KTask().examples("train")  # no hub, no data
    wrong = tmp_path / "wrong.jsonl"
    wrong.write_text('{"problem": "q", "solution": "#### 1"}\n' * 4)
    with pytest.raises(ValueError, match="question, answer"):
        GSM8KTask(GSM8KConfig(data=str(wrong))).examples("train")
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        GSM8KTask(GSM8KConfig(data=str(tmp_path / "missing.jsonl"))).examples("train")
    with pytest.raises(ValueError, match="few_shot"):
        GSM8KConfig(few_shot=-1)
    with pytest.raises(ValueError, match="few_shot=16 leaves none of the 16"):  # half of 32
        GSM8KTask(GSM8KConfig(data=str(SAMPLE_DATA), few_shot=16)).examples("train")
