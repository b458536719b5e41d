"""The GRPO baseline (TRL) on a zo-llm run's model, task, prompts and reward."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

import zo_llm
from zo_llm.baselines.grpo import GRPOSettings, train_grpo
from zo_llm.evaluation import evaluate_heldout

pytest.importorskip("trl")

SETTINGS = {"model": "zo-tiny", "task": "countdown-easy", "eval_size": 8, "max_new_tokens": 24}
LONG_ANSWERS = '''
from zo_llm.tasks.countdown import CountdownTask

class LongAnswers(CountdownTask):
    """Countdown prompts, rewarded by length: samples of one prompt score differently."""

    def reward(self, example, completion):
        return len(completion.split()) / 10

task = LongAnswers(LongAnswers.config_class(min_numbers=2, max_numbers=2, max_number=30))
'''


def grpo(tmp_path, completions=32, **given):
    config = zo_llm.resolve({**SETTINGS, "out": str(tmp_path / "run"), **given})
    settings = GRPOSettings(completions=4, prompts_per_step=2, lr=1e-3)
    return train_grpo(config, settings, completions)


@pytest.mark.parametrize("space", ["full", "lora"])
def test_grpo_counts_its_completions_and_writes_a_final_model_scored_by_zo_llm(tmp_path, space):
    records = grpo(tmp_path, completions=30, space=space, eval_every=3)  # 30 / 8: 4 steps
    train = [r for r in records if r["type"] == "train"]
    assert [r["iteration"] for r in train] == [1, 2, 3, 4]
    assert [r["samples"] for r in train] == [8, 16, 24, 32]
    # each step: 8 completions of 24 tokens (TRL ignores stop strings), one backward pass
    assert [(r["generated_tokens"], r["backward_passes"]) for r in train] == [(192, 1)] * 4
    assert all(r["forward_passes"] >= 24 and r["peak_memory_mb"] > 0 for r in train)
    evals = [r for r in records if r["type"] == "eval"]
    assert [(r["iteration"], r["samples"]) for r in evals] == [(0, 0), (3, 24), (4, 32)]
    before, after = evals[0], evals[-1]
    assert before["weight_change"] == 0.0
    assert zo_llm.read_metrics(tmp_path / "run") == records
    saved = json.loads((tmp_path / "run" / "run_config.json").read_text())["config"]
    assert saved["strategy"] == {"name": "grpo", "completions": 4, "prompts_per_step": 2,
                                 "lr": 1e-3, "beta": 0.0, "temperature": 1.0}  # fmt: skip
    # the held-out numbers are zo-llm's evaluator's, on the saved plain transformers model
    run = zo_llm.build_run(
        zo_llm.resolve({**SETTINGS, "model": str(tmp_path / "run" / "final")}), purpose="eval"
    )
    try:
        metrics, _ = evaluate_heldout(run.generator, run.task, run.eval_examples, scorer=run.scorer)
    finally:
        run.close()  # its reward process
    assert {k: after[k] for k in metrics} == metrics
    assert set(metrics) < set(before)


@pytest.mark.parametrize("space", ["full", "lora"])
def test_grpo_moves_the_weights_when_rewards_spread_and_logs_how_far(tmp_path, monkeypatch, space):
    (tmp_path / "long_answers.py").write_text(LONG_ANSWERS)
    monkeypatch.syspath_prepend(str(tmp_path))
    records = grpo(tmp_path, task="long_answers:task", space=space)
    base, _ = zo_llm.load_model("zo-tiny", "float32", "cpu")
    trained, _ = zo_llm.load_model(str(tmp_path / "run" / "final"), "float32", "cpu")
    pairs = list(zip(base.named_parameters(), trained.named_parameters(), strict=True))
    moved = [name for (name, a), (_, b) in pairs if not torch.equal(a, b)]
    assert moved  # a gradient step reached the weights
    change = sum(float((b - a).square().sum()) for (_, a), (_, b) in pairs)
    norm = sum(float(a.square().sum()) for (_, a), _ in pairs)
    # full: against the base read back; lora: the adapter's deltas, before they were merged
    assert records[-1]["weight_change"] == pytest.approx((change / norm) ** 0.5, rel=1e-3)


def test_grpo_refuses_other_spaces_and_a_missing_trl(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="not space 'svd'"):
        grpo(tmp_path, space="svd")
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "trl" else real(name, *a)
    )
    with pytest.raises(ValueError, match=r"pip install 'zo-llm\[baseline\]'"):
        grpo(tmp_path)
