"""A user's own task: from Python (FunctionTask) and from the CLI (module:object, data file)."""

from __future__ import annotations

import json
import math

import pytest

import zo_llm
from zo_llm.cli import main
from zo_llm.components import build_task
from zo_llm.evaluation import evaluate_task, score
from zo_llm.generation import HFGenerator
from zo_llm.runner import load_run_config
from zo_llm.tasks import FileTask, FunctionTask, make_task
from zo_llm.tasks.custom import contains, exact_match, numeric

ROWS = [{"prompt": f"{i} + {i} =", "answer": str(2 * i)} for i in range(8)]


def tiny_run(**options):
    defaults = dict(iterations=1, batch_size=2, max_new_tokens=4, progress=False)
    return {**defaults, "strategy_options": {"population": 2}, **options}


@pytest.mark.parametrize(
    ("reward", "completion", "answer", "expected"),
    [
        (exact_match, " Paris ", "paris", 1.0),
        (exact_match, "Paris.", "Paris", 0.0),
        (contains, "It is Paris, I think", "paris", 1.0),
        (contains, "Lyon", "Paris", 0.0),
        (numeric, "so 1,250.", "1250", 1.0),
        (numeric, "so 1,250.", 1250, 1.0),
        (numeric, "no number", "3", 0.0),
    ],
)
def test_builtin_rewards(reward, completion, answer, expected):
    assert reward(completion, answer) == expected


def test_function_task_from_python_trains_end_to_end(model, tokenizer, tmp_path):
    import datasets

    task = zo_llm.FunctionTask(
        train=datasets.Dataset.from_list(ROWS[:6]),
        eval=ROWS[6:],
        prompt="Q: {prompt}",
        reward=lambda example, completion: float(example["answer"] in completion),
    )
    assert task.prompt(ROWS[0]) == "Q: 0 + 0 ="
    assert len(task.examples("train")) == 6 and task.examples("eval") == ROWS[6:]
    experiment = zo_llm.train(model=model, tokenizer=tokenizer, task=task, **tiny_run())
    assert experiment.iteration == 1 and experiment.task is task
    evals = [r for r in experiment.records if r["type"] == "eval"]
    assert evals and "reward" in evals[-1] and evals[-1]["reward_failures"] == 0

    named = make_task(ROWS, prompt=lambda e: e["prompt"], reward="exact_match")
    assert named.examples("eval") == named.examples("train")  # no eval: train reused
    assert named.reward(ROWS[1], " 2 ") == 1.0
    with pytest.raises(ValueError, match="lacks field.*answer"):
        FunctionTask([{"prompt": "x"}], prompt="{prompt}", reward="contains")
    with pytest.raises(ValueError, match="unknown reward"):
        FunctionTask(ROWS, prompt="{prompt}", reward="fuzzy")


def test_raising_and_nan_rewards_follow_the_policy(model, tokenizer):
    def fragile(example, completion):
        index = int(example["prompt"].split()[0])
        if index == 1:
            raise RuntimeError("boom")
        return float("nan") if index == 2 else 1.0

    task = FunctionTask(ROWS[:4], prompt="{prompt}", reward=fragile)
    rewards = score(task, ROWS[:4], ["a", "b", "c", "d"])
    assert rewards[0] == 1.0 and math.isnan(rewards[1]) and math.isnan(rewards[2])
    metrics, _ = evaluate_task(HFGenerator(model, tokenizer, 3), task, ROWS[:4])
    assert metrics == {"reward": 1.0, "reward_failures": 2}  # mean of the finite rewards
    run = tiny_run(batch_size=4)  # every member scores all four rows: two of them fail
    experiment = zo_llm.train(model=model, tokenizer=tokenizer, task=task, **run)
    assert experiment.iteration == 1  # the run went on
    train_record = next(r for r in experiment.records if r["type"] == "train")
    assert train_record["reward_failures"] == 2 * 2  # 2 members x 2 failing rows, counted
    assert train_record["reward_mean"] == 1.0  # each member's mean of its finite rewards


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_train_takes_data_like_the_cli(model, tokenizer, tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    options = {"reward": "exact_match", "train_size": 4}
    run = tiny_run(task="file", data=path, task_options=options, out=str(tmp_path / "run"))
    experiment = zo_llm.train(model=model, tokenizer=tokenizer, **run)
    assert experiment.task.config.data == str(path) and experiment.task.config.train_size == 4
    assert [e["prompt"] for e in experiment.eval_examples] == [r["prompt"] for r in ROWS[4:]]
    saved = load_run_config(tmp_path / "run")
    assert saved["task_options"]["data"] == str(path)  # so a resume finds it again


def test_build_task_resolves_files_and_imports(tmp_path, monkeypatch):
    data = write_jsonl(tmp_path / "qa.jsonl", ROWS)
    task = build_task(str(data), {"reward": "numeric", "train_size": "6"})
    assert isinstance(task, FileTask) and task.source == str(data)
    assert len(task.examples("train")) == 6 and task.reward(ROWS[7], "it is 14") == 1.0
    with pytest.raises(ValueError, match="lacks field.*prompt"):
        bad = write_jsonl(tmp_path / "bad.jsonl", [{"q": 1, "answer": 2}] * 4)
        build_task(str(bad)).examples("train")

    (tmp_path / "my_tasks.py").write_text(
        "from zo_llm.tasks import FunctionTask, GSM8KTask\n"
        f"ROWS = {ROWS!r}\n"
        "task = FunctionTask(ROWS[:6], ROWS[6:], prompt='{prompt}', reward='contains')\n"
        "def factory(answer_field='answer'):\n"
        "    return FunctionTask(ROWS, prompt='{prompt}', reward='exact_match',"
        " answer_field=answer_field)\n"
        "Subclass = GSM8KTask\n"
        "gsm = GSM8KTask(GSM8KTask.config_class(few_shot=2))\n"
        "not_a_task = 3\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert build_task("my_tasks:task").source == "my_tasks:task"
    assert len(build_task("my_tasks:factory", {"answer_field": "prompt"}).examples("eval")) == 8
    assert build_task("my_tasks:Subclass", {"few_shot": "1"}).config.few_shot == 1
    with pytest.raises(ValueError, match="not a Task"):
        build_task("my_tasks:not_a_task")
    with pytest.raises(ValueError, match="cannot import"):
        build_task("my_tasks:missing")
    with pytest.raises(ValueError, match=r"options cannot be set \(x\) but eval_size and"):
        build_task("my_tasks:task", {"x": "1"})
    # the split sizes apply to any task: an object, or a factory that does not take them
    cut = build_task("my_tasks:task", {"eval_size": 1, "train_size": 2})
    assert [len(cut.examples(split)) for split in ("train", "eval")] == [2, 1]
    assert cut.reward(ROWS[6], f"so {ROWS[6]['answer']}") == 1.0 and cut.source == "my_tasks:task"
    assert len(build_task("my_tasks:factory", {"eval_size": 3}).examples("eval")) == 3
    with pytest.raises(ValueError, match="eval_size=0 must be at least 1"):
        build_task("my_tasks:task", {"eval_size": 0})
    assert build_task("my_tasks:gsm", {"few_shot": 2}).config.few_shot == 2  # as recorded


def test_custom_tasks_from_the_cli_train_resume_and_eval(model_dir, tmp_path, monkeypatch, capsys):
    data = write_jsonl(tmp_path / "qa.jsonl", ROWS)
    (tmp_path / "cli_tasks.py").write_text(
        "from zo_llm.tasks import FunctionTask\n"
        f"ROWS = {ROWS!r}\n"
        "task = FunctionTask(ROWS[:6], ROWS[6:], prompt='{prompt}',"
        " reward=lambda e, c: float(len(c) > 0))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    common = ["--model", str(model_dir), "--iterations", "1", "--batch-size", "2"]
    common += ["--max-new-tokens", "4", "--population", "2", "--no-progress"]
    for run, (name, extra) in enumerate(
        [
            (str(data), ["--task-opt", "reward=contains", "--task-opt", "train_size=6"]),
            ("cli_tasks:task", ["--eval-size", "1"]),  # a task object takes the split sizes
            ("file", ["--data", str(data), "--task-opt", "reward=numeric"]),
        ]
    ):
        out = tmp_path / f"run-{run}"
        assert main(["train", *common, "--task", name, *extra, "--out", str(out)]) == 0
        config = load_run_config(out)
        assert config["task"] == name
        assert main(["train", "--resume", str(out), "--iterations", "2", "--no-progress"]) == 0
        resumed = load_run_config(out)
        assert resumed["iterations"] == 2 and resumed["task"] == name
    assert config["task_options"]["data"] == str(data)
    assert main(["train", "--resume", str(out), "--data", str(data)]) == 2  # data cannot change
    capsys.readouterr()
    argv = ["eval", "--model", str(model_dir), "--task", "file", "--data", str(data)]
    argv += ["--max-new-tokens", "3", "--samples", "2", "--reference", str(model_dir)]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["examples"] == 4 and printed["kl"] == pytest.approx(0.0, abs=1e-6)
    assert "sampled_reward" in printed and "reward" in printed
