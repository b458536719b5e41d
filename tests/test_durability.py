"""Nothing lost, nothing hangs: kills, interrupts, snapshots, bounded rewards, bad numbers."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import make_char_task, run_numbers, tiny_model

import zo_llm
from zo_llm.cli import main
from zo_llm.errors import RewardsFailed
from zo_llm.runner import RunInterrupted, TrainingDiverged
from zo_llm.tasks.base import Task

#: A zo-tiny run of a few seconds: every iteration checkpointed, a snapshot every 2.
RUN = [
    "--model", "zo-tiny", "--strategy", "es", "--space", "full", "--population", "4",
    "--batch-size", "2", "--max-new-tokens", "8", "--iterations", "7", "--eval-every", "3",
    "--eval-size", "2", "--snapshot-every", "2", "--threads", "1", "--no-progress",
    "--no-tensorboard",
]  # fmt: skip
CHAR_ES = {"population": 8, "sigma": 0.05, "lr": 0.1, "antithetic": True}


def zo_llm_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "zo_llm", *args]


def quiet_env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def metrics_lines(run: Path) -> int:
    path = run / "metrics.jsonl"
    return path.read_text().count("\n") if path.exists() else 0


def start_and_stop(args: list[str], run: Path, lines: int, how: int) -> tuple[int, str]:
    """Starts ``zo-llm train ARGS``, sends ``how`` once metrics.jsonl holds ``lines`` lines.

    Returns the exit code and stderr. The child starts with SIGINT at its default, as
    from a terminal: a shell runs background jobs with SIGINT ignored, and a Python
    started so keeps ignoring it (no ``KeyboardInterrupt``), so tests run with
    ``pytest &`` would otherwise see the run finish instead of stop.
    """
    process = subprocess.Popen(
        zo_llm_command("train", *args),
        env=quiet_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 240
    while metrics_lines(run) < lines and process.poll() is None:
        assert time.monotonic() < deadline, "the run did not get that far"
        time.sleep(0.01)
    process.send_signal(how)
    _, stderr = process.communicate(timeout=120)
    return process.returncode, stderr


def final_weights(run: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(run / "final" / "model.safetensors")


def assert_same_run(run: Path, whole: Path) -> None:
    assert run_numbers(zo_llm.read_metrics(run)) == run_numbers(zo_llm.read_metrics(whole))
    ours, theirs = final_weights(run), final_weights(whole)
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert torch.equal(ours[key], theirs[key]), key


@pytest.fixture(scope="module")
def whole_run(tmp_path_factory) -> Path:
    """The uninterrupted run that every interrupted one must equal."""
    out = tmp_path_factory.mktemp("whole") / "run"
    done = subprocess.run(
        zo_llm_command("train", *RUN, "--out", str(out)), env=quiet_env(), capture_output=True
    )
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (out / "snapshots").iterdir()) == ["iter-0000006.safetensors"]
    return out


# --- kills and interrupts -------------------------------------------------------


def test_kill_9_at_any_point_resumes_to_the_same_run(whole_run, tmp_path):
    """SIGKILL mid-iteration (three times), then a kill mid-write simulated: the same numbers."""
    run = tmp_path / "run"
    args = [*RUN, "--out", str(run)]
    lost = []
    # 2 lines: held-out eval 0 and iteration 1; then further into the run, twice
    for lines, command in ((2, args), (5, ["--resume", str(run)]), (8, ["--resume", str(run)])):
        code, _ = start_and_stop(command, run, lines, signal.SIGKILL)
        assert code == -signal.SIGKILL
        logged = [r for r in zo_llm.read_metrics(run, metrics_lines(run)) if r["type"] == "train"]
        checkpoint = run / "checkpoint.pt"
        saved = torch.load(checkpoint, weights_only=True)["iteration"] if checkpoint.exists() else 0
        lost.append(logged[-1]["iteration"] - saved)
    assert all(0 <= n <= 1 for n in lost)  # at most the iteration in progress
    # a kill mid-write leaves half files: a temporary checkpoint and snapshot, a cut log line
    (run / "checkpoint.tmp").write_bytes(b"\x80\x02half")
    (run / "snapshots" / "iter-0000099.safetensors.tmp").write_bytes(b"half")
    with (run / "metrics.jsonl").open("a") as log:
        log.write('{"type": "train", "itera')
    done = subprocess.run(
        zo_llm_command("train", "--resume", str(run)), env=quiet_env(), capture_output=True
    )
    assert done.returncode == 0, done.stderr
    assert not (run / "checkpoint.tmp").exists()
    assert not list((run / "snapshots").glob("*.tmp"))
    assert_same_run(run, whole_run)


@pytest.mark.parametrize(("how", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_and_sigterm_exit_cleanly_and_resume(whole_run, tmp_path, how, code):
    run = tmp_path / "run"
    exit_code, stderr = start_and_stop(
        [*RUN, "--out", str(run), "--checkpoint-every", "2"], run, 4, how
    )
    assert exit_code == code, stderr
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert f"zo-llm train --resume {run}" in last and signal.Signals(how).name in last
    saved = torch.load(run / "checkpoint.pt", weights_only=True)
    # checkpoint_every 2, but the interrupt saved the last finished iteration
    logged = [r for r in zo_llm.read_metrics(run, saved["metrics_lines"]) if r["type"] == "train"]
    assert logged[-1]["iteration"] == saved["iteration"] >= 2
    assert not multiprocessing.active_children()
    done = subprocess.run(
        zo_llm_command("train", "--resume", str(run)), env=quiet_env(), capture_output=True
    )
    assert done.returncode == 0, done.stderr
    assert_same_run(run, whole_run)


def test_a_run_stopped_before_its_first_checkpoint_resumes_or_is_reused(
    tokenizer, tmp_path, monkeypatch
):
    options = {
        "batch_size": 4,
        "max_new_tokens": 8,
        "progress": False,
        "eval_every": 0,
        "strategy_options": CHAR_ES,
        "iterations": 2,
    }

    def train(out=None):
        return zo_llm.train(
            model=tiny_model(len(tokenizer)),
            tokenizer=tokenizer,
            task=make_char_task(),
            out=out and str(out),
            **options,
        )

    whole = train()
    step = zo_llm.Experiment.step

    def interrupted_step(self):
        raise KeyboardInterrupt  # Ctrl-C during iteration 1

    run = tmp_path / "run"
    for carry_on in ("resume", "reuse"):
        monkeypatch.setattr(zo_llm.Experiment, "step", interrupted_step)
        with pytest.raises(RunInterrupted, match="before the first checkpoint"):
            train(run)
        assert not (run / "checkpoint.pt").exists()
        assert [r["type"] for r in zo_llm.read_metrics(run)] == ["eval"]
        monkeypatch.setattr(zo_llm.Experiment, "step", step)
        if carry_on == "resume":  # starts over
            again = zo_llm.resume(
                run, model=tiny_model(len(tokenizer)), tokenizer=tokenizer, task=make_char_task()
            )
            (run / "checkpoint.pt").unlink()  # unfinished again, for the next case
            shutil.rmtree(run / "final")
        else:  # a new run in the same folder
            again = train(run)
        assert run_numbers(zo_llm.read_metrics(run)) == run_numbers(whole.records)
        assert again.iteration == 2


def test_a_folder_that_is_no_run_cannot_be_resumed(tmp_path):
    with pytest.raises(FileNotFoundError, match="no run_config.json"):
        zo_llm.resume(tmp_path)


def test_a_damaged_checkpoint_is_named(tokenizer, tmp_path):
    run = tmp_path / "run"
    zo_llm.train(
        model=tiny_model(len(tokenizer)),
        tokenizer=tokenizer,
        task=make_char_task(),
        out=str(run),
        iterations=1,
        batch_size=4,
        max_new_tokens=4,
        progress=False,
    )
    for damage in (b"", b"\x80\x02truncated"):
        (run / "checkpoint.pt").write_bytes(damage)
        with pytest.raises(ValueError, match=r"checkpoint\.pt cannot be read .*Delete it"):
            zo_llm.resume(run, task=make_char_task())


# --- snapshots: resume costs the same however long the run ----------------------


@pytest.mark.parametrize(
    ("strategy", "space", "options"),
    [
        ("es", "full", CHAR_ES),
        ("es", "lowrank", CHAR_ES),
        ("cma-es", "svd", {"population": 6, "sigma": 0.1}),
    ],
)
def test_resume_replays_at_most_a_snapshot_period(tokenizer, tmp_path, strategy, space, options):
    """Resume after 3 and after 11 iterations replays the same bounded work, bit-identically."""
    settings = {
        "batch_size": 4,
        "max_new_tokens": 8,
        "progress": False,
        "tensorboard": False,
        "eval_every": 0,
        "strategy": strategy,
        "strategy_options": options,
        "space": space,
        "snapshot_every": 4,
    }
    if space == "svd":
        settings["space_options"] = {"rank": 2, "target_modules": ["q_proj", "v_proj"]}

    def run(out: Path, iterations: int) -> zo_llm.Experiment:
        return zo_llm.train(
            model=tiny_model(len(tokenizer)),
            tokenizer=tokenizer,
            task=make_char_task(),
            out=str(out),
            iterations=iterations,
            **settings,
        )

    whole = run(tmp_path / "whole", 12)
    replayed = {}
    for length in (3, 11):
        out = tmp_path / f"run{length}"
        run(out, length)
        snapshots = sorted(p.name for p in (out / "snapshots").glob("*")) if length > 3 else []
        assert snapshots == (["iter-0000008.safetensors"] if length > 3 else [])
        resumed = zo_llm.resume(
            out, 12, model=tiny_model(len(tokenizer)), tokenizer=tokenizer, task=make_char_task()
        )
        assert run_numbers(zo_llm.read_metrics(out)) == run_numbers(whole.records)
        assert_same_state(resumed, whole)
        component = resumed.strategy if strategy == "cma-es" else resumed.space
        replayed[length] = getattr(component, "replayed_tells", None) or getattr(
            component, "replayed_updates", None
        )
    # 3 iterations: all 3 replayed (no snapshot yet); 11: only the 3 after the snapshot at 8
    assert replayed == {3: 3, 11: 3}


def assert_same_state(a: zo_llm.Experiment, b: zo_llm.Experiment) -> None:
    ours, theirs = a.model.state_dict(), b.model.state_dict()
    for key in ours:
        assert torch.equal(ours[key], theirs[key]), key
    if "vector" in a.space.kinds:
        assert torch.equal(a.space.get_vector(), b.space.get_vector())


# --- rewards: bounded in time, real numbers, failures named once ---------------------


class FlakyTask(Task):
    """A reward that hangs, raises with varying messages, or returns a string, on some prompts."""

    def examples(self, split):
        return [{"text": f"{i}:", "i": i} for i in range(8)]

    def prompt(self, example):
        return example["text"]

    def reward(self, example, completion):
        kind = example["i"] % 4
        if kind == 1:
            time.sleep(3600)
        if kind == 2:
            raise ValueError(f"bad completion {completion!r} of {example['i']}")
        if kind == 3:
            return "1.5"
        return len(completion) / 10


def test_a_hanging_reward_times_out_and_the_run_goes_on(tokenizer, caplog):
    caplog.set_level(logging.WARNING)
    start = time.monotonic()
    run = zo_llm.train(
        model=tiny_model(len(tokenizer)),
        tokenizer=tokenizer,
        task=FlakyTask(),
        iterations=2,
        batch_size=8,
        max_new_tokens=4,
        eval_every=0,
        progress=False,
        reward_timeout=0.5,
        strategy_options={"population": 2},
    )
    assert time.monotonic() - start < 600  # not an hour per hanging call
    train = [r for r in run.records if r["type"] == "train"]
    # per member: 2 of 8 prompts hang, 2 raise, 2 return a string; the other 2 score
    assert [r["reward_failures"] for r in train] == [12, 12]
    assert all(r["reward_mean"] == r["reward_mean"] for r in train)  # the scored ones count
    evals = [r for r in run.records if r["type"] == "eval"]
    assert all(r["reward_failures"] == 6 for r in evals)
    warnings = [r.getMessage() for r in caplog.records if "scored as NaN" in r.getMessage()]
    kinds = sorted(message.split(":")[0].split(" (")[0] for message in warnings)
    assert kinds == ["reward raised ValueError", "reward returned str", "reward timed out"]
    assert not multiprocessing.active_children()  # no worker left behind


def test_rewards_in_process_without_a_limit_see_the_callers_state(tokenizer):
    seen = []
    task = make_char_task()
    reward = task.reward
    task.reward = lambda example, text: seen.append(text) or reward(example, text)
    zo_llm.train(
        model=tiny_model(len(tokenizer)),
        tokenizer=tokenizer,
        task=task,
        iterations=1,
        batch_size=4,
        max_new_tokens=4,
        eval_every=0,
        progress=False,
        reward_timeout=0,
        strategy_options={"population": 2},
    )
    assert len(seen) == 2 * 4 + 2 * 16  # two members x 4 prompts, two held-out evaluations


class BrokenReward(Task):
    """A reward that works for its first ``works`` calls (in this process), then always fails."""

    def __init__(self, failure: str, works: int = 0) -> None:
        self.failure, self.works, self.calls = failure, works, 0

    def examples(self, split):
        return [{"text": f"{i}:", "i": i} for i in range(8)]

    def prompt(self, example):
        return example["text"]

    def reward(self, example, completion):
        self.calls += 1
        if self.calls <= self.works:
            return len(completion) / 10
        if self.failure == "raises":
            raise ValueError("no answer to parse")
        if self.failure == "nan":
            return float("nan")
        time.sleep(3600)
        return 0.0


def train_broken(tokenizer, task, out, **settings):
    return zo_llm.train(
        model=tiny_model(len(tokenizer)),
        tokenizer=tokenizer,
        task=task,
        out=str(out),
        iterations=3,
        batch_size=8,
        max_new_tokens=4,
        progress=False,
        strategy_options={"population": 2},
        **{"eval_every": 0, "reward_timeout": 0, **settings},
    )


@pytest.mark.parametrize(
    ("failure", "message"),
    [
        ("raises", r"the last raised ValueError: no answer to parse on example"),
        ("nan", r"the last returned nan on example"),
    ],
)
def test_a_run_whose_every_reward_fails_stops_and_keeps_its_checkpoint(
    tokenizer, tmp_path, failure, message
):
    out = tmp_path / "run"
    task = BrokenReward(failure, works=8 + 2 * 8)  # the held-out set and iteration 1 score
    with pytest.raises(RewardsFailed, match=message) as stopped:
        train_broken(tokenizer, task, out)
    said = str(stopped.value)
    assert "every reward of iteration 2's members failed (16 of 16)" in said
    assert f"(checkpoint of iteration 1 kept); once the reward works, continue with: zo-llm " \
        f"train --resume {out}" in said  # fmt: skip
    assert torch.load(out / "checkpoint.pt", weights_only=True)["iteration"] == 1
    assert not (out / "final").exists()  # no model that learnt nothing
    assert task.calls == 8 + 4 * 8  # stopped at iteration 2: its members were not told


def test_a_held_out_set_whose_every_reward_fails_stops_the_run(tokenizer, tmp_path):
    with pytest.raises(RewardsFailed, match=r"every reward of the held-out evaluation failed"):
        train_broken(tokenizer, BrokenReward("raises"), tmp_path / "run", eval_every=1)


def test_a_reward_that_hangs_on_every_call_stops_after_the_timeouts_in_a_row(tokenizer, tmp_path):
    with pytest.raises(RewardsFailed, match=r"3 reward calls in a row timed out \(each after 1 s"):
        train_broken(tokenizer, BrokenReward("hangs"), tmp_path / "run", reward_timeout=1)
    assert not multiprocessing.active_children()  # the hanging child was killed


def test_a_run_stopped_by_its_rewards_is_one_line_from_the_cli(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("zo_llm.tasks.countdown.CountdownTask.reward", lambda *a: float("nan"))
    code = main(["train", "--out", str(tmp_path / "run"), "--iterations", "1", "--no-progress",
                 "--eval-size", "4", "--reward-timeout", "0"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "zo-llm train: error: every reward of the held-out evaluation failed" in err


# --- non-finite numbers ------------------------------------------------------------


@pytest.mark.parametrize(
    "flags",
    [
        ["--lr", "inf"],
        ["--sigma", "inf"],
        ["--sigma", "nan"],
        ["--strategy-opt", "weight_decay=nan"],
        ["--strategy", "mezo", "--lr", "inf"],
        ["--eval-temperature", "inf"],
        ["--reward-timeout", "nan"],
        ["--reward-timeout", "-1"],
        ["--threads", "0"],
        ["--snapshot-every", "0"],
        ["--checkpoint-every", "0"],
    ],
)
def test_non_finite_and_out_of_range_numbers_are_refused(flags, tmp_path, capsys):
    assert main(["train", *flags, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    name = flags[-1].split("=")[0] if "=" in flags[-1] else flags[-2].lstrip("-")
    assert name.replace("-", "_") in err, err
    assert not (tmp_path / "run").exists()  # refused before anything is written


@pytest.mark.parametrize("lr", [1e30, 1e40])  # weights overflow to inf; the step itself does
def test_an_update_that_makes_weights_non_finite_stops_the_run(tokenizer, tmp_path, lr):
    run = tmp_path / "run"

    class HugeRewards(Task):
        def examples(self, split):
            return [{"text": f"{i}:"} for i in range(4)]

        def prompt(self, example):
            return example["text"]

        def reward(self, example, completion):
            return 1e8 * (len(completion) + 1)

    with pytest.raises(TrainingDiverged, match=r"iteration 1: the update made .* inf or NaN"):
        zo_llm.train(
            model=tiny_model(len(tokenizer)),
            tokenizer=tokenizer,
            task=HugeRewards(),
            out=str(run),
            iterations=2,
            batch_size=4,
            max_new_tokens=4,
            progress=False,
            reward_timeout=0,
            strategy_options={"population": 2, "lr": lr, "shaping": "raw"},
        )
    assert not (run / "final").exists() and not (run / "checkpoint.pt").exists()
    assert [r["type"] for r in zo_llm.read_metrics(run)] == ["eval"]


def test_checkpoint_names_its_snapshot(whole_run):
    saved = torch.load(whole_run / "checkpoint.pt", weights_only=True)
    assert saved["snapshot"] == "snapshots/iter-0000006.safetensors"
    assert saved["snapshot_iteration"] == 6 and saved["iteration"] == 7
    assert len(saved["space"]["history"]) == 7  # the (seed, coeff) record of the whole run
    assert len(json.dumps(saved["space"]["history"])) < 10_000


# --- the best model ------------------------------------------------------------------


def test_best_holds_the_model_of_the_best_evaluation_and_survives_resume(tokenizer, tmp_path):
    from safetensors.torch import load_file

    def train(out: Path, iterations: int) -> zo_llm.Experiment:
        return zo_llm.train(
            model=tiny_model(len(tokenizer)),
            tokenizer=tokenizer,
            task=make_char_task(),
            out=str(out),
            iterations=iterations,
            batch_size=4,
            max_new_tokens=8,
            eval_every=1,
            progress=False,
            tensorboard=False,
            strategy_options=CHAR_ES,
        )

    whole = train(tmp_path / "whole", 5)
    evals = [r for r in whole.records if r["type"] == "eval"]
    scores = [r["reward"] for r in evals]
    assert len(set(scores)) > 1  # the evaluations differ: the choice means something
    chosen = json.loads((tmp_path / "whole" / "best.json").read_text())
    assert chosen["metric"] == "reward" and chosen["value"] == max(scores)
    assert chosen["iteration"] == evals[scores.index(max(scores))]["iteration"]
    # best/ is the model as it was then: a run stopped at that iteration ends there
    assert chosen["iteration"] > 0  # trained weights, not the base model
    stopped = tmp_path / "stopped"
    train(stopped, chosen["iteration"])
    ours = load_file(tmp_path / "whole" / "best" / "model.safetensors")
    theirs = load_file(stopped / "final" / "model.safetensors")
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    # resumed half-way, it chooses the same
    train(tmp_path / "split", 2)
    zo_llm.resume(
        tmp_path / "split",
        5,
        model=tiny_model(len(tokenizer)),
        tokenizer=tokenizer,
        task=make_char_task(),
    )
    assert json.loads((tmp_path / "split" / "best.json").read_text()) == chosen
    assert not list(tmp_path.glob("*/best.tmp")) and not list(tmp_path.glob("*/best.old"))
