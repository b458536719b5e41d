"""Fitness shaping: a member's fitness from its rewards per prompt, one registry for all."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_char_task, tiny_model

import zo_llm
from zo_llm.fitness import FITNESS, centered_rank, prompt_zscore, raw, zscore
from zo_llm.parametrizations import TensorConfig, TensorSpace
from zo_llm.strategies import ESConfig, OpenAIES

REWARDS = np.array([[1.0, 0.0, 0.5], [0.0, 0.0, 0.5], [1.0, 1.0, 0.5]])


def standardised(values):
    values = np.asarray(values)
    return (values - values.mean()) / (values.std() + 1e-8)


def test_raw_fitness_is_each_members_mean_reward_and_the_others_shape_it():
    assert raw(REWARDS) == pytest.approx([0.5, 1 / 6, 5 / 6])
    assert zscore(REWARDS) == pytest.approx(standardised([0.5, 1 / 6, 5 / 6]))
    assert centered_rank(REWARDS) == pytest.approx([0.0, -0.5, 0.5])
    # one reward per member is one prompt
    assert zscore(np.array([[1.0], [2.0], [3.0]])) == pytest.approx(standardised([1, 2, 3]))


def test_prompt_zscore_weighs_every_disagreeing_prompt_alike():
    z = 1 / np.sqrt(2)  # (1 - 2/3) / std of (1, 0, 1)
    # the third prompt, answered alike by all, weighs nothing; the mean is over all three
    means = [(z - z) / 3, (-2 * z - z) / 3, (z + 2 * z) / 3]
    assert prompt_zscore(REWARDS) == pytest.approx(standardised(means))
    # a prompt of large rewards decides the plain z-score, not the per-prompt one
    lopsided = np.array([[10.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    assert zscore(lopsided)[0] > zscore(lopsided)[1] > zscore(lopsided)[2]
    assert prompt_zscore(lopsided)[0] == pytest.approx(prompt_zscore(lopsided)[1])


def test_prompt_zscore_ignores_each_prompts_scale_and_offset():
    scaled = REWARDS * np.array([10.0, 0.1, 3.0]) + np.array([5.0, -1.0, 2.0])
    assert prompt_zscore(scaled) == pytest.approx(prompt_zscore(REWARDS))


def test_a_failed_reward_is_left_out_of_its_prompt_and_its_member():
    rewards = REWARDS.copy()
    rewards[0, 1] = np.nan
    assert raw(rewards)[0] == pytest.approx(0.75)
    assert np.isfinite(prompt_zscore(rewards)).all()
    assert np.isnan(prompt_zscore(np.full((2, 2), np.nan))).all()


def test_a_strategy_told_prompts_counts_a_member_without_a_reward_as_the_worst():
    space = TensorSpace(TensorConfig(dim=3))
    space.bind(None)
    es = OpenAIES(space, ESConfig(population=3, sigma=0.1, lr=0.1, shaping="raw"), seed=0)
    candidates = es.ask()
    told = []
    es._tell = lambda candidates, fitness: told.append(fitness) or {"complete": True, "step": None}
    rewards = REWARDS.copy()
    rewards[1] = np.nan
    info = es.tell(candidates, rewards)
    assert info["invalid"] == 1
    assert told[0] == pytest.approx([0.5, 0.5, 5 / 6])  # the worst mean stands in for it
    assert es.tell(es.ask(), np.full((3, 2), np.nan))["skipped"]


def test_unknown_fitness_is_refused_by_name():
    assert FITNESS.names() == ["centered_rank", "prompt_zscore", "raw", "zscore"]
    with pytest.raises(ValueError, match="unknown fitness shaping 'median'.*prompt_zscore"):
        zo_llm.resolve({"shaping": "median"})
    with pytest.raises(ValueError, match="unknown fitness shaping 'median'"):
        zo_llm.resolve({"strategy": "cma-es", "space": "svd", "shaping": "median"})


def test_a_run_with_prompt_zscore_logs_mean_rewards_and_moves_differently(tokenizer):
    def run(shaping):
        return zo_llm.train(
            model=tiny_model(len(tokenizer)),
            tokenizer=tokenizer,
            task=make_char_task(),
            iterations=2,
            batch_size=4,
            max_new_tokens=8,
            progress=False,
            shaping=shaping,
            strategy_options={"population": 8, "sigma": 0.05, "lr": 0.1},
        )

    plain, shaped = run("zscore"), run("prompt_zscore")

    def first_reward(run):
        return next(r["reward_mean"] for r in run.records if r["type"] == "train")

    # the same first population: the same mean rewards logged, whatever the strategy was told
    assert first_reward(plain) == first_reward(shaped)
    ours, theirs = plain.model.state_dict(), shaped.model.state_dict()
    assert any(not np.allclose(ours[k].numpy(), theirs[k].numpy()) for k in ours)
