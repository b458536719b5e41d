"""Ray workers: the same numbers as one process, a lost worker costs nothing, nothing left over."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
import torch
from conftest import run_numbers

import zo_llm
from zo_llm.hooks import Hook

pytest.importorskip("ray")

#: zo-tiny by name (workers load it themselves), a few seconds per run.
SETTINGS = {
    "model": "zo-tiny",
    "task": "conciseness",  # a reward that moves with every character
    "batch_size": 2,
    "max_new_tokens": 8,
    "iterations": 3,
    "eval_every": 0,
    "eval_size": 2,
    "progress": False,
    "tensorboard": False,
    "threads": 1,
}
CASES = {
    "es/full": {"strategy": "es", "space": "full", "population": 4, "sigma": 0.05, "lr": 0.05},
    "es/full, prompt_zscore": {  # a prompt's baseline spans the members of both workers
        "strategy": "es",
        "space": "full",
        "population": 4,
        "sigma": 0.05,
        "lr": 0.05,
        "shaping": "prompt_zscore",
    },
    "cma-es/svd": {
        "strategy": "cma-es",
        "space": "svd",
        "space_options": {"rank": 2, "target_modules": ["q_proj", "v_proj"]},
        "population": 6,
    },
}


def ray_processes() -> list[str]:
    found = subprocess.run(["pgrep", "-f", "raylet|gcs_server"], capture_output=True, text=True)
    return found.stdout.split()


def assert_no_ray_left() -> None:
    deadline = time.monotonic() + 30
    while ray_processes() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not ray_processes()


def same_run(a: zo_llm.Experiment, b: zo_llm.Experiment) -> None:
    assert run_numbers(a.records) == run_numbers(b.records)
    same_run_weights(a, b)


def same_run_weights(a: zo_llm.Experiment, b: zo_llm.Experiment) -> None:
    ours, theirs = a.model.state_dict(), b.model.state_dict()
    for key in ours:
        assert torch.equal(ours[key], theirs[key]), key


@pytest.mark.parametrize("case", list(CASES))
def test_two_workers_give_the_numbers_of_one_process(case, tmp_path):
    alone = zo_llm.train(**SETTINGS, **CASES[case])
    rewards = {r["reward_mean"] for r in alone.records if r["type"] == "train"}
    assert len(rewards) > 1  # rewards move: equality means something
    two = zo_llm.train(**SETTINGS, **CASES[case], workers=2, out=str(tmp_path / "run"))
    same_run(two, alone)
    assert zo_llm.runner.load_run_config(tmp_path / "run")["workers"] == 2
    train = [r for r in two.records if r["type"] == "train"]
    assert all(0 < r["worker_bytes"] < 10_000 for r in train)  # O(population), not weights
    assert_no_ray_left()


def test_a_run_resumed_on_workers_continues_bit_identically(tmp_path):
    """Two iterations in one process, the third on 2 workers that load its checkpoint."""
    whole = zo_llm.train(**SETTINGS, **CASES["es/full"])
    out = tmp_path / "run"
    zo_llm.train(**{**SETTINGS, "iterations": 2}, **CASES["es/full"], out=str(out))
    resumed = zo_llm.resume(out, 3, workers=2)
    assert run_numbers(zo_llm.read_metrics(out)) == run_numbers(whole.records)
    same_run_weights(resumed, whole)
    assert_no_ray_left()


class KillAWorker(Hook):
    """Kills one worker's process (SIGKILL) after the first iteration."""

    def after_iteration(self, run, record):
        if run.iteration == 1:
            os.kill(run.evaluator.pids()[0], signal.SIGKILL)


def test_a_killed_worker_costs_nothing():
    alone = zo_llm.train(**SETTINGS, **CASES["es/full"])
    survived = zo_llm.train(**SETTINGS, **CASES["es/full"], workers=2, hooks=[KillAWorker()])
    same_run(survived, alone)
    assert survived.evaluator.lost == 1 and survived.evaluator.replaced == 1
    assert_no_ray_left()


def test_objects_cannot_go_to_workers(tokenizer):
    from conftest import make_char_task

    with pytest.raises(ValueError, match=r"by name, but task=.*TargetCharTask"):
        settings = {k: v for k, v in SETTINGS.items() if k != "eval_size"}
        zo_llm.train(**{**settings, "task": make_char_task()}, workers=2)


def test_an_unreachable_cluster_is_one_clear_error(tmp_path, capsys):
    from zo_llm.cli import main

    code = main(["train", "--ray-address", "127.0.0.1:9", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "cannot reach the Ray cluster at --ray-address 127.0.0.1:9" in err
    assert not (tmp_path / "run").exists()
