"""A member's fitness from its rewards per prompt: the mean, or per-prompt z-scores."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_char_task, tiny_model

import zo_llm
from zo_llm.evaluation.base import member_fitness

REWARDS = np.array([[1.0, 0.0, 0.5], [0.0, 0.0, 0.5], [1.0, 1.0, 0.5]])


def test_mean_fitness_is_each_members_mean_reward():
    scores = member_fitness(REWARDS, "mean")
    assert scores.rewards == pytest.approx([0.5, 1 / 6, 5 / 6])
    assert scores.means is None and np.array_equal(scores.logged, scores.rewards)


def test_prompt_zscore_weighs_every_disagreeing_prompt_alike_and_logs_the_means():
    scores = member_fitness(REWARDS, "prompt_zscore")
    z = 1 / np.sqrt(2)  # (1 - 2/3) / std of (1, 0, 1)
    # the third prompt, answered alike by all, weighs nothing; the mean is over all three
    assert scores.rewards == pytest.approx([(z - z) / 3, (-2 * z - z) / 3, (z + 2 * z) / 3])
    assert scores.logged == pytest.approx([0.5, 1 / 6, 5 / 6])
    assert np.array_equal(scores.per_prompt, REWARDS)


def test_prompt_zscore_ignores_each_prompts_scale_and_offset():
    scaled = REWARDS * np.array([10.0, 0.1, 3.0]) + np.array([5.0, -1.0, 2.0])
    assert member_fitness(scaled, "prompt_zscore").rewards == pytest.approx(
        member_fitness(REWARDS, "prompt_zscore").rewards
    )


def test_a_failed_reward_is_left_out_of_its_prompt_and_its_member():
    rewards = REWARDS.copy()
    rewards[0, 1] = np.nan
    shaped = member_fitness(rewards, "prompt_zscore", failures=1)
    assert shaped.failures == 1 and np.isfinite(shaped.rewards).all()
    everything_failed = np.full((2, 2), np.nan)
    assert np.isnan(member_fitness(everything_failed, "prompt_zscore").rewards).all()


def test_unknown_fitness_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown fitness 'median'"):
        member_fitness(REWARDS, "median")
    with pytest.raises(ValueError, match="unknown fitness 'median'.*mean, prompt_zscore"):
        zo_llm.resolve({"fitness": "median"})


def test_a_run_with_prompt_zscore_logs_mean_rewards_and_moves_differently(tokenizer):
    def run(fitness):
        return zo_llm.train(
            model=tiny_model(len(tokenizer)),
            tokenizer=tokenizer,
            task=make_char_task(),
            iterations=2,
            batch_size=4,
            max_new_tokens=8,
            progress=False,
            fitness=fitness,
            strategy_options={"population": 8, "sigma": 0.05, "lr": 0.1},
        )

    plain, shaped = run("mean"), run("prompt_zscore")

    def first_reward(run):
        return next(r["reward_mean"] for r in run.records if r["type"] == "train")

    # the same first population: the same mean rewards logged, whatever the strategy was told
    assert first_reward(plain) == first_reward(shaped)
    ours, theirs = plain.model.state_dict(), shaped.model.state_dict()
    assert any(not np.allclose(ours[k].numpy(), theirs[k].numpy()) for k in ours)
