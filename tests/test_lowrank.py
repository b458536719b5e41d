"""The lowrank (EGGROLL) space: its noise, exact restore, the full-rank update, and batched
evaluation giving the sequential evaluator's numbers."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import make_char_task, run_numbers, tiny_model

import zo_llm
from zo_llm.evaluation import BatchedEvaluator, SequentialEvaluator, choose_evaluator
from zo_llm.parametrizations import FullWeights, LowRankConfig, LowRankWeights


def bound(model, **options) -> LowRankWeights:
    space = LowRankWeights(LowRankConfig(**options))
    space.bind(model)
    return space


@pytest.mark.parametrize("rank", [1, 3])
def test_each_member_is_a_b_transposed_over_sqrt_rank(model, rank):
    space = bound(model, rank=rank)
    noise = space.noise_tensors(7)
    for target in space._targets:
        a, b = space.factors(7, target)
        assert a.shape == (target.param.shape[0], rank) and b.shape == (target.param.shape[1], rank)
        torch.testing.assert_close(noise[target.name], a @ b.T / math.sqrt(rank))
        assert int(torch.linalg.matrix_rank(noise[target.name])) == rank
    assert space.factors(7, space._targets[0])[0].std() == pytest.approx(1.0, abs=0.3)


def test_it_searches_the_linear_matrices_only(model):
    space = bound(model)
    assert all(
        name.endswith("proj.weight") or name == "lm_head.weight" for name in space.parameter_names
    )
    assert "lm_head.weight" in space.parameter_names  # untied here
    assert space.dim == sum(p.numel() for _, p in space.named_tensors())
    shipped, _ = zo_llm.load_model("zo-tiny")  # ties lm_head to the embedding: left out
    assert "lm_head.weight" not in bound(shipped).parameter_names
    assert bound(model, exclude=("mlp",)).parameter_names == [
        n for n in space.parameter_names if "mlp" not in n
    ]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_perturbations_restore_bit_exactly(tokenizer, dtype):
    model = tiny_model(len(tokenizer), dtype=dtype)
    before = {n: p.clone() for n, p in model.named_parameters()}
    space = bound(model)
    for seed in range(10):
        with space.perturbed(seed, 1e-3):
            pass
        with space.shifted([(seed, 0.01), (seed + 1, -0.02)]), space.perturbed(seed, 0.05):
            pass
    for name, param in model.named_parameters():
        assert torch.equal(param, before[name]), name


def test_the_update_is_one_full_rank_matmul_of_the_members(model):
    space = bound(model)
    target = space._targets[0]
    before = target.param.detach().clone()
    update = [(seed, 0.1 * (seed - 2)) for seed in range(5)]
    expected = before + sum(c * space.noise_tensors(s)[target.name] for s, c in update)
    space.apply_update(update, decay=0.0)
    torch.testing.assert_close(target.param, expected, rtol=1e-5, atol=1e-6)
    assert int(torch.linalg.matrix_rank(target.param - before)) == 4  # seed 2's coeff is 0


def test_auto_picks_the_batched_evaluator_where_the_space_supports_it():
    assert choose_evaluator("auto", LowRankWeights) is BatchedEvaluator
    assert choose_evaluator("auto", FullWeights) is SequentialEvaluator
    with pytest.raises(ValueError, match="evaluator 'batched' cannot run space FullWeights"):
        choose_evaluator("batched", FullWeights)


def test_lowrank_runs_and_resumes_bit_identically(tokenizer, tmp_path):
    settings = {"space": "lowrank", "iterations": 4, "batch_size": 4, "max_new_tokens": 8,
                "eval_every": 2, "checkpoint_every": 2, "progress": False,
                "strategy_options": {"population": 4, "sigma": 0.005, "lr": 0.01,
                                     "antithetic": True}}  # fmt: skip

    def run(out, **changes):
        task = make_char_task("u")
        return zo_llm.train(model=tiny_model(len(tokenizer)), tokenizer=tokenizer, task=task,
                            out=str(out), **{**settings, **changes})  # fmt: skip

    whole = run(tmp_path / "whole")
    run(tmp_path / "part", iterations=2)
    resumed = zo_llm.resume(tmp_path / "part", iterations=4, model=tiny_model(len(tokenizer)),
                            tokenizer=tokenizer, task=make_char_task("u"))  # fmt: skip
    assert resumed.config.loop.evaluator == "auto" and type(resumed.evaluator) is BatchedEvaluator
    assert run_numbers(zo_llm.read_metrics(tmp_path / "part")) == run_numbers(whole.records)
    assert any(r["reward_std"] > 0 for r in whole.records if r["type"] == "train")
    for p, q in zip(resumed.model.parameters(), whole.model.parameters(), strict=True):
        assert torch.equal(p, q)
    moved = any(
        not torch.equal(p, q)
        for p, q in zip(
            whole.model.parameters(), tiny_model(len(tokenizer)).parameters(), strict=True
        )
    )
    assert moved
