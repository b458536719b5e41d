"""The runner: run folder layout, resume, determinism, learning, reward failures, bad input."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from conftest import make_char_task, run_numbers, tiny_model

import zo_llm
from zo_llm import Experiment
from zo_llm.errors import RewardsFailed
from zo_llm.runner import load_run_config
from zo_llm.strategies import ESConfig

#: Tiny settings shared by every run here (a few hundredths of a second per iteration).
FAST = {"batch_size": 4, "max_new_tokens": 8, "progress": False}
#: ES settings under which the char task's rewards differ between members and iterations.
CHAR_ES = {"population": 8, "sigma": 0.05, "lr": 0.1, "antithetic": True}
COUNTDOWN = {"train_size": 8, "eval_size": 4}


def of_type(records, kind):
    return [r for r in records if r["type"] == kind]


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for name in sa:
        assert torch.equal(sa[name], sb[name]), name


def weights_differ(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sb = b.state_dict()
    return any(not torch.equal(t, sb[name]) for name, t in a.state_dict().items())


def train_char(tokenizer, out=None, *, task=None, **options):
    """A char-task run on a fresh tiny model (same init every time)."""
    settings = {**FAST, "strategy_options": CHAR_ES, **options}
    return zo_llm.train(
        model=tiny_model(len(tokenizer)),
        tokenizer=tokenizer,
        task=task if task is not None else make_char_task(),
        out=None if out is None else str(out),
        **settings,
    )


def json_roundtrip(value):
    return json.loads(json.dumps(value))


# --- the run folder -------------------------------------------------------


def test_run_folder_layout(model_dir, tmp_path):
    run = tmp_path / "run"
    experiment = zo_llm.train(
        model=str(model_dir),
        task="countdown",
        task_options=COUNTDOWN,
        strategy_options={"population": 4, "sigma": 0.05, "lr": 0.05},
        iterations=3,
        eval_every=2,
        checkpoint_every=2,
        out=str(run),
        **FAST,
    )

    # run_config.json: the resolved config, every component's options in full.
    saved = json.loads((run / "run_config.json").read_text())
    assert saved["zo_llm_version"] == zo_llm.__version__
    config = load_run_config(run)
    assert (config["strategy"], config["space"], config["task"]) == ("es", "full", "countdown")
    assert config["strategy_options"] == dataclasses.asdict(
        ESConfig(population=4, sigma=0.05, lr=0.05)
    )
    assert config["strategy_options"]["sigma"] == 0.05
    assert config["strategy_options"]["shaping"] == "zscore"  # a default, written out
    assert config["space_options"] == json_roundtrip(dataclasses.asdict(experiment.space.config))
    assert config["space_options"]["noise"] == "independent"
    assert config["task_options"] == json_roundtrip(dataclasses.asdict(experiment.task.config))
    assert config["task_options"]["train_size"] == 8
    assert config["iterations"] == 3 and config["seed"] == 0
    assert load_run_config(run) == config

    # metrics.jsonl: eval at 0, a train record per iteration, evals every 2 and at the end.
    records = zo_llm.read_metrics(run)
    assert records == experiment.records
    assert [(r["type"], r["iteration"]) for r in records] == [
        ("eval", 0),
        ("train", 1),
        ("train", 2),
        ("eval", 2),
        ("train", 3),
        ("eval", 3),
    ]
    for record in of_type(records, "train"):
        for key in ("reward_mean", "reward_std", "reward_min", "reward_max", "time"):
            assert isinstance(record[key], float) and math.isfinite(record[key]), key
        assert record["reward_min"] <= record["reward_mean"] <= record["reward_max"]
        assert record["reward_failures"] == 0 and record["invalid_members"] == 0
    times = [r["time"] for r in of_type(records, "train")]
    assert times == sorted(times)
    for record in of_type(records, "eval"):
        assert {"accuracy", "reward", "format", "reward_failures"} <= record.keys()

    # tensorboard/: the same numbers as events.
    events = list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert events
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(run / "tensorboard"))
    accumulator.Reload()
    scalars = accumulator.Scalars("train/reward_mean")
    assert [s.step for s in scalars] == [1, 2, 3]
    assert [s.value for s in scalars] == pytest.approx(
        [r["reward_mean"] for r in of_type(records, "train")]
    )
    assert [s.step for s in accumulator.Scalars("eval/accuracy")] == [0, 2, 3]

    # checkpoint.pt: the final state, and how many metrics lines it had seen.
    checkpoint = torch.load(run / "checkpoint.pt", weights_only=True)
    assert checkpoint["iteration"] == 3
    # the last checkpoint precedes the closing evaluation, which a resume redoes
    assert checkpoint["metrics_lines"] == len(records) - 1
    assert checkpoint["strategy"]["generation"] == 3
    assert len(checkpoint["space"]["history"]) == 3
    assert not list(run.glob("*.tmp"))


def test_final_folder_loads_with_plain_transformers(tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = tmp_path / "run"
    experiment = train_char(tokenizer, run, iterations=3)
    assert weights_differ(experiment.model, tiny_model(len(tokenizer)))  # training moved it

    loaded = AutoModelForCausalLM.from_pretrained(run / "final")
    assert_same_weights(loaded, experiment.model)
    loaded_tokenizer = AutoTokenizer.from_pretrained(run / "final")
    text = "12 7: abc"
    assert loaded_tokenizer(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert loaded_tokenizer.decode(tokenizer(text)["input_ids"]) == text


# --- resume -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "first_leg"),
    [
        ({"eval_every": 2, "checkpoint_every": 2}, 4),
        ({"eval_every": 4, "checkpoint_every": 5}, 3),  # first leg ends off both periods
    ],
)
def test_resume_continues_bit_identically(tokenizer, tmp_path, options, first_leg):
    whole = train_char(tokenizer, tmp_path / "a", iterations=6, **options)
    train_char(tokenizer, tmp_path / "b", iterations=first_leg, **options)
    resumed = zo_llm.resume(
        tmp_path / "b",
        iterations=6,
        model=tiny_model(len(tokenizer)),
        tokenizer=tokenizer,
        task=make_char_task(),
    )

    train = of_type(whole.records, "train")
    assert len({r["reward_mean"] for r in train}) > 1  # rewards vary: the check means something
    assert any(r["reward_std"] > 0 for r in train)

    assert resumed.iteration == 6
    assert_same_weights(resumed.model, whole.model)
    assert run_numbers(zo_llm.read_metrics(tmp_path / "b")) == run_numbers(whole.records)
    assert load_run_config(tmp_path / "b")["iterations"] == 6
    from transformers import AutoModelForCausalLM

    assert_same_weights(AutoModelForCausalLM.from_pretrained(tmp_path / "b" / "final"), whole.model)


def test_resume_after_crash_cuts_the_log_back(tokenizer, tmp_path, monkeypatch):
    options = {"iterations": 4, "eval_every": 0, "checkpoint_every": 2}
    whole = train_char(tokenizer, tmp_path / "whole", **options)

    # Crash during iteration 4: iteration 3 is logged but the last checkpoint is at 2.
    step = Experiment.step

    def crashing_step(self):
        if self.iteration == 3:
            raise RuntimeError("simulated crash")
        return step(self)

    monkeypatch.setattr(Experiment, "step", crashing_step)
    run = tmp_path / "crashed"
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_char(tokenizer, run, **options)
    monkeypatch.undo()

    logged = zo_llm.read_metrics(run)
    assert [(r["type"], r["iteration"]) for r in logged] == [
        ("eval", 0),
        ("train", 1),
        ("train", 2),
        ("train", 3),
    ]
    checkpoint = torch.load(run / "checkpoint.pt", weights_only=True)
    assert checkpoint["iteration"] == 2 and checkpoint["metrics_lines"] == 3
    assert not (run / "final").exists()

    resumed = zo_llm.resume(
        run, model=tiny_model(len(tokenizer)), tokenizer=tokenizer, task=make_char_task()
    )
    records = zo_llm.read_metrics(run)
    assert [r["iteration"] for r in of_type(records, "train")] == [1, 2, 3, 4]  # 3 not twice
    assert run_numbers(records) == run_numbers(whole.records)
    assert_same_weights(resumed.model, whole.model)

    # TensorBoard: the steps logged after the checkpoint are purged, not duplicated.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(run / "tensorboard"))
    accumulator.Reload()
    scalars = accumulator.Scalars("train/reward_mean")
    assert [s.step for s in scalars] == [1, 2, 3, 4]
    assert [s.value for s in scalars] == pytest.approx(
        [r["reward_mean"] for r in of_type(records, "train")]
    )


def test_resume_of_a_custom_task_run_needs_the_task_again(tokenizer, tmp_path):
    run = tmp_path / "run"
    train_char(tokenizer, run, iterations=2)
    task_name = load_run_config(run)["task"]
    assert task_name.startswith("python:") and "TargetCharTask" in task_name
    assert load_run_config(run)["space"] == "full"
    with pytest.raises(ValueError, match="task="):
        zo_llm.resume(run, iterations=3, model=tiny_model(len(tokenizer)), tokenizer=tokenizer)
    assert torch.load(run / "checkpoint.pt", weights_only=True)["iteration"] == 2


def test_resume_of_a_model_object_run_needs_the_model_again(tokenizer, tmp_path):
    run = tmp_path / "run"
    train_char(tokenizer, run, iterations=2)
    assert load_run_config(run)["model"].startswith("python:")  # not the default "zo-tiny"
    with pytest.raises(ValueError, match=r"model object .*LlamaForCausalLM.*model=\.\.\."):
        zo_llm.resume(run, iterations=3, task=make_char_task())
    resumed = zo_llm.resume(
        run,
        iterations=3,
        model=tiny_model(len(tokenizer)),
        tokenizer=tokenizer,
        task=make_char_task(),
    )
    assert resumed.iteration == 3


def test_resume_cannot_go_backwards(tokenizer, tmp_path):
    train_char(tokenizer, tmp_path / "run", iterations=3)
    with pytest.raises(ValueError, match="at iteration 3; --iterations 2"):
        zo_llm.resume(tmp_path / "run", iterations=2, task=make_char_task())


def test_a_new_run_refuses_a_folder_holding_one(tokenizer, tmp_path):
    train_char(tokenizer, tmp_path / "run", iterations=1)
    with pytest.raises(FileExistsError, match="already holds a run; resume it"):
        train_char(tokenizer, tmp_path / "run", iterations=1)


# --- determinism ------------------------------------------------------------


def test_same_seed_same_numbers_other_seed_other_numbers(tokenizer):
    first = train_char(tokenizer, iterations=3, seed=5)
    second = train_char(tokenizer, iterations=3, seed=5)
    other = train_char(tokenizer, iterations=3, seed=6)

    assert run_numbers(first.records) == run_numbers(second.records)
    assert_same_weights(first.model, second.model)

    def rewards(experiment):
        return [
            (r["reward_mean"], r["reward_std"], r["reward_min"], r["reward_max"])
            for r in of_type(experiment.records, "train")
        ]

    assert rewards(first) != rewards(other)
    assert weights_differ(first.model, other.model)


# --- learning -----------------------------------------------------------------


def test_es_improves_the_char_task(tokenizer):
    """30 iterations of antithetic ES (N=8, sigma=0.05, lr=0.1) on the 'a'-fraction reward.

    Measured (seed 0): held-out reward 0.0 before, 0.914 after; seeds 0..5 all end
    between 0.86 and 1.0, so the 0.5 margin does not hang on one lucky seed.
    """
    experiment = train_char(tokenizer, iterations=30, eval_every=0, seed=0)
    evals = of_type(experiment.records, "eval")
    before, after = evals[0]["reward"], evals[-1]["reward"]
    assert (evals[0]["iteration"], evals[-1]["iteration"]) == (0, 30)
    assert after >= before + 0.5, (before, after)

    train = [r["reward_mean"] for r in of_type(experiment.records, "train")]
    assert sum(train[-5:]) / 5 >= sum(train[:5]) / 5 + 0.3


# --- reward failures ----------------------------------------------------------


class FlakyCharTask(type(make_char_task())):
    """The char task, but example i's reward raises if i % 4 == 0 and is NaN if i % 4 == 1
    (never all of a minibatch here: a run whose every reward fails stops)."""

    @staticmethod
    def index(example) -> int:
        return int(example["text"].split()[0]) % 1000

    def failing(self, example) -> bool:
        return self.index(example) % 4 in (0, 1)

    def reward(self, example, completion):
        if self.index(example) % 4 == 0:
            raise ZeroDivisionError("flaky reward")
        if self.index(example) % 4 == 1:
            return float("nan")
        return super().reward(example, completion)


class BrokenTask(type(make_char_task())):
    """A reward that always raises."""

    def reward(self, example, completion):
        raise RuntimeError("broken reward")


def test_flaky_rewards_are_counted_not_fatal(tokenizer, tmp_path):
    task = FlakyCharTask()
    population = CHAR_ES["population"]
    experiment = train_char(tokenizer, tmp_path / "run", task=task, iterations=4, eval_every=2)

    train = of_type(zo_llm.read_metrics(tmp_path / "run"), "train")
    assert [r["iteration"] for r in train] == [1, 2, 3, 4]
    for record in train:
        batch = experiment.minibatch(record["iteration"] - 1)
        failing = sum(task.failing(e) for e in batch)
        assert record["reward_failures"] == population * failing
        assert record["invalid_members"] == (population if failing == len(batch) else 0)
        if failing < len(batch):
            assert math.isfinite(record["reward_mean"])
    assert sum(r["reward_failures"] for r in train) > 0

    eval_failures = sum(task.failing(e) for e in experiment.eval_examples)
    assert eval_failures > 0
    for record in of_type(experiment.records, "eval"):
        assert record["reward_failures"] == eval_failures
        assert math.isfinite(record["reward"])


def test_always_failing_reward_stops_the_run_before_anything_moves(tokenizer, tmp_path):
    """Nothing to learn from: the run stops at its first iteration, its strategy never told."""
    run = tmp_path / "run"
    stopped = r"every reward of the held-out evaluation failed \(16 of 16\).*no iteration finished"
    with pytest.raises(RewardsFailed, match=stopped):  # the held-out set is scored first
        train_char(tokenizer, run, task=BrokenTask(), iterations=3, eval_every=0)
    assert not (run / "checkpoint.pt").exists() and not (run / "final").exists()


# --- bad input ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "unknown", "known"),
    [
        ({"strategy": "nope"}, "nope", "es"),
        ({"space": "nope"}, "nope", "full"),
        ({"task": "nope"}, "nope", "countdown"),
    ],
    ids=["strategy", "space", "task"],
)
def test_unknown_names_list_the_known_ones(model, tokenizer, options, unknown, known):
    with pytest.raises(zo_llm.UnknownNameError) as error:
        zo_llm.train(model=model, tokenizer=tokenizer, iterations=1, **FAST, **options)
    assert isinstance(error.value, ValueError)
    message = str(error.value)
    assert repr(unknown) in message
    assert known in message.split("names: ", 1)[1].split(", ")  # the list of known names


def test_unknown_strategy_option_lists_the_valid_ones(model, tokenizer):
    with pytest.raises(ValueError, match="sigmaa") as error:
        zo_llm.train(
            model=model,
            tokenizer=tokenizer,
            task="countdown",
            task_options=COUNTDOWN,
            strategy_options={"sigmaa": 1},
            iterations=1,
            **FAST,
        )
    for field in dataclasses.fields(ESConfig):
        assert field.name in str(error.value)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"strategy_options": {"population": 1}}, "population=1"),
        ({"strategy_options": {"sigma": 0}}, "sigma=0"),
        ({"strategy_options": {"lr": -1.0}}, "lr=-1.0"),
        ({"strategy_options": {"population": 3, "antithetic": True}}, "population=3"),
        ({"iterations": 0}, "iterations=0"),
        ({"batch_size": 9}, "batch_size=9"),  # the task has 8 training examples
        ({"eval_every": -1}, "eval_every=-1"),
        ({"task_options": {"train_size": "many"}}, "train_size='many'"),
    ],
    ids=lambda value: str(value).replace(" ", ""),
)
def test_bad_values_name_the_value(model, tokenizer, options, named):
    settings = {
        **FAST,
        "task": "countdown",
        "task_options": COUNTDOWN,
        "iterations": 1,
        **options,
    }
    with pytest.raises(ValueError) as error:
        zo_llm.train(model=model, tokenizer=tokenizer, **settings)
    assert named in str(error.value)


def test_missing_model_is_a_clear_error():
    with pytest.raises(ValueError, match="no model given"):
        zo_llm.train(model=None, task="countdown", task_options=COUNTDOWN, iterations=1, **FAST)


def test_records_count_sample_evaluations_and_peak_memory(tokenizer, tmp_path):
    experiment = train_char(tokenizer, tmp_path / "run", iterations=3, eval_every=2)
    population, batch = CHAR_ES["population"], FAST["batch_size"]
    train = of_type(experiment.records, "train")
    assert [r["samples"] for r in train] == [population * batch * i for i in (1, 2, 3)]
    assert [(r["iteration"], r["samples"]) for r in of_type(experiment.records, "eval")] == [
        (0, 0),
        (2, 2 * population * batch),
        (3, 3 * population * batch),
    ]
    assert all(r["peak_memory_mb"] > 0 for r in train)


def test_sample_budget_stops_the_run(tokenizer, tmp_path):
    per_iteration = CHAR_ES["population"] * FAST["batch_size"]
    budget = int(2.5 * per_iteration)  # spent during the third iteration
    experiment = train_char(tokenizer, tmp_path / "run", iterations=50, max_samples=budget)
    assert experiment.iteration == 3 and experiment.samples == 3 * per_iteration
    assert of_type(experiment.records, "eval")[-1]["iteration"] == 3
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["iteration"] == 3


def test_evaluations_on_a_grid_of_sample_evaluations(tokenizer):
    per_iteration = CHAR_ES["population"] * FAST["batch_size"]  # 32
    experiment = train_char(tokenizer, iterations=5, eval_every=0, eval_every_samples=70)
    evals = [(r["iteration"], r["samples"]) for r in of_type(experiment.records, "eval")]
    # 70 and 140 are crossed in iterations 3 (96 samples) and 5 (160), which is also the end
    assert evals == [(0, 0), (3, 3 * per_iteration), (5, 5 * per_iteration)]


# --- sampled metrics and KL from the base model during training -------------------------


def test_evaluations_can_add_sampled_metrics_and_kl_from_the_base(model_dir, tmp_path):
    settings = {
        **FAST,
        "strategy_options": CHAR_ES,
        "eval_every": 1,
        "eval_samples": 2,
        "eval_kl": True,
        "max_new_tokens": 6,
    }
    run = tmp_path / "run"
    zo_llm.train(
        model=str(model_dir), task=make_char_task(), iterations=2, out=str(run), **settings
    )
    evals = of_type(zo_llm.read_metrics(run), "eval")
    assert [r["iteration"] for r in evals] == [0, 1, 2]
    assert evals[0]["kl"] == pytest.approx(0.0, abs=1e-6)  # the base model against itself
    assert evals[-1]["kl"] > 1e-4  # training moved it away
    assert all("sampled_reward" in r and r["kl_tokens"] > 0 for r in evals)

    # sampling is seeded by (run seed, iteration): a resumed run draws the same samples
    whole = tmp_path / "whole"
    zo_llm.train(
        model=str(model_dir), task=make_char_task(), iterations=3, out=str(whole), **settings
    )
    zo_llm.resume(run, iterations=3, task=make_char_task())
    assert run_numbers(zo_llm.read_metrics(run)) == run_numbers(zo_llm.read_metrics(whole))


def test_kl_needs_a_named_base_model(tokenizer):
    with pytest.raises(ValueError, match="eval_kl compares with the base model"):
        train_char(tokenizer, iterations=1, eval_kl=True)


def test_the_progress_bar_says_what_runs_and_shows_held_out_evaluations(tokenizer, capsys):
    run = train_char(tokenizer, iterations=2, eval_every=1, progress=True)
    shown = capsys.readouterr().err
    assert run.describe() in shown
    dim = f"{run.space.dim:,}"
    assert f"space full of {dim} numbers; es with 8 members per iteration" in run.describe()
    assert "sequential evaluation; 4 prompts x 8 new tokens per member" in run.describe()
    for record in of_type(run.records, "eval"):
        line = f"held-out at iteration {record['iteration']}: reward={record['reward']:.4g}"
        assert line in shown
    prompt = run.task.prompt(run.train_examples[0])
    assert f"first prompt, as plain text, no chat template (stop strings: none):\n  | {prompt}" in (
        shown
    )


class ProgressLog(zo_llm.Hook):
    def __init__(self):
        self.calls = []

    def on_progress(self, run, phase, done, total):
        self.calls.append((run.iteration, phase, done, total))


@pytest.mark.parametrize("evaluator", ["sequential", "batched"])
def test_progress_is_reported_inside_iterations_and_evaluations(tokenizer, evaluator):
    log = ProgressLog()
    space = "full" if evaluator == "sequential" else "lowrank"
    run = train_char(
        tokenizer,
        iterations=2,
        eval_every=2,
        hooks=[log],
        space=space,
        evaluator=evaluator,
        generation_batch_size=8,  # 2 members of 4 prompts per batch
    )
    members = [c for c in log.calls if c[1] == "members"]
    held_out = [c for c in log.calls if c[1] == "held-out"]
    for iteration in (0, 1):
        counts = [done for it, _, done, total in members if it == iteration]
        assert counts == sorted(counts) and counts[-1] == 8 and len(counts) > 1
    prompts = len(run.eval_examples)
    assert {it for it, *_ in held_out} == {0, 2}
    assert all(total == prompts for *_, total in held_out)
    assert [done for it, _, done, _ in held_out if it == 2][-1] == prompts
