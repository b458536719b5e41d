"""The GRPO baseline (TRL) on a zo-llm run's model, task, prompts and reward."""

from __future__ import annotations

import builtins

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
    records = grpo(tmp_path, completions=30, space=space)  # 30 / 8 per step: 4 steps
    train = [r for r in records if r["type"] == "train"]
    assert [r["iteration"] for r in train] == [1, 2, 3, 4]
    before, after = (r for r in records if r["type"] == "eval")
    assert after["samples"] == 32 and after["generated_tokens"] > 0
    assert zo_llm.read_metrics(tmp_path / "run") == records
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


def test_grpo_moves_the_weights_when_rewards_spread(tmp_path, monkeypatch):
    (tmp_path / "long_answers.py").write_text(LONG_ANSWERS)
    monkeypatch.syspath_prepend(str(tmp_path))
    grpo(tmp_path, task="long_answers:task", space="full")
    base, _ = zo_llm.load_model("zo-tiny", "float32", "cpu")
    trained, _ = zo_llm.load_model(str(tmp_path / "run" / "final"), "float32", "cpu")
    moved = [
        name
        for (name, a), (_, b) in zip(base.named_parameters(), trained.named_parameters())
        if not torch.equal(a, b)
    ]
    assert moved  # a gradient step reached the weights


def test_grpo_refuses_other_spaces_and_a_missing_trl(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="not space 'svd'"):
        grpo(tmp_path, space="svd")
    real = builtins.__import__

    def without_trl(name, *args, **kwargs):
        if name == "trl":
            raise ImportError("No module named 'trl'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_trl)
    with pytest.raises(ValueError, match=r"pip install 'zo-llm\[baseline\]'"):
        grpo(tmp_path)
