"""ESSAM's two stages, MeZO's update and its variants, and the quality of ES/MeZO gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import tiny_model

from zo_llm.evaluation import evaluate_candidates
from zo_llm.fitness import zscore
from zo_llm.parametrizations import FullWeights, TensorSpace
from zo_llm.parametrizations.noise import chunk_noise, name_key
from zo_llm.strategies import (
    ESSAM,
    ESConfig,
    ESSAMConfig,
    MeZO,
    MeZOConfig,
    OpenAIES,
)
from zo_llm.strategies.es import seeded_update

A = torch.linspace(1.0, 10.0, 1000, dtype=torch.float64)  # curvatures of the test quadratic


def quadratic(x: torch.Tensor) -> float:
    """-1/2 sum a_i x_i^2 + sum x_i: gradient -a*x + 1, maximum at x = 1/a."""
    return float(-0.5 * (A[: x.numel()] * x * x).sum() + x.sum())


def gradient(x: torch.Tensor) -> torch.Tensor:
    return -A[: x.numel()] * x + 1.0


def rewards_of(candidates, space, reward=quadratic) -> list[float]:
    return evaluate_candidates(space, candidates, lambda: reward(space.get_vector()))


def eps(seed: int, dim: int) -> torch.Tensor:
    return chunk_noise(seed, name_key("tensor"), 0, dim, "cpu").double()


def start(dim: int, seed: int = 0) -> TensorSpace:
    return TensorSpace(x0=torch.randn(dim, generator=torch.Generator().manual_seed(seed)).double())


# --- ESSAM -------------------------------------------------------------------


def test_essam_neighbour_step_lowers_reward_and_returns_exactly():
    config = ESSAMConfig(population=16, sigma=1e-3, lr=0.01, rho=0.05)
    space = start(50)
    theta = space.get_vector()
    essam = ESSAM(space, config, seed=1)
    first = essam.ask()
    info = essam.tell(first, rewards_of(first, space))
    assert info["complete"] is False and torch.equal(space.get_vector(), theta)

    second = essam.ask()  # around the neighbour point theta - rho g/||g||; nothing moved
    assert torch.equal(space.get_vector(), theta)
    assert len({c.offset for c in second}) == 1
    with space.shifted(second[0].offset):
        neighbour = space.get_vector()
    assert float((neighbour - theta).norm()) == pytest.approx(config.rho, rel=1e-12)
    assert quadratic(neighbour) < quadratic(theta)
    step = neighbour - theta
    assert float(step @ gradient(theta)) < 0  # against the gradient: towards lower reward
    assert not {c.seed for c in second} & {c.seed for c in first}  # fresh seeds
    assert [c.seed for c in second] == [essam.member_seed(m, stage=1) for m in range(16)]

    rewards = rewards_of(second, space)
    assert essam.tell(second, rewards)["complete"] is True
    reference = TensorSpace(x0=theta)  # theta plus ES's update from the stage-2 rewards
    reference.apply_update(seeded_update(second, zscore(np.array(rewards)), config.lr / 16))
    assert torch.equal(space.get_vector(), reference.get_vector())


class CountingSpace(TensorSpace):
    """A tensor space that records its shifts."""

    calls: list[str]

    def shift(self, update) -> None:
        self.calls.append("shift")
        super().shift(update)

    def unshift(self) -> None:
        self.calls.append("unshift")
        super().unshift()


def test_essam_evaluates_its_second_round_inside_one_shift():
    space = CountingSpace(x0=start(10).get_vector())
    space.calls = []
    essam = ESSAM(space, ESSAMConfig(population=4, rho=0.5), seed=0)
    theta = space.get_vector()
    for _ in range(2):
        candidates = essam.ask()
        essam.tell(candidates, rewards_of(candidates, space))
    assert space.calls == ["shift", "unshift"] and essam.generation == 1
    assert not torch.equal(space.get_vector(), theta)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_essam_on_full_weights_leaves_only_its_update(tokenizer, dtype):
    """Replaying the recorded update onto the base model gives the same bits: no trace of shifts."""
    model = tiny_model(len(tokenizer), dtype=dtype)
    space = FullWeights()
    space.bind(model)
    essam = ESSAM(space, ESSAMConfig(population=4, sigma=0.05, lr=0.05, rho=0.5), seed=0)
    prompt = torch.tensor([[1, 20, 21, 22]])

    def reward():
        with torch.no_grad():
            return float(model(prompt).logits[0, -1, 40])

    for _ in range(2):
        candidates = essam.ask()
        essam.tell(candidates, evaluate_candidates(space, candidates, reward))
    assert essam.generation == 1 and len(space.state_dict()["history"]) == 1
    fresh = tiny_model(len(tokenizer), dtype=dtype)
    replay = FullWeights()
    replay.bind(fresh)
    replay.load_state_dict(space.state_dict())
    for (name, p), q in zip(model.named_parameters(), fresh.parameters()):
        assert torch.equal(p, q), name


def test_essam_norm_estimate_and_script_mode():
    dim, population = 100_000, 8
    rewards = np.linspace(0.0, 1.0, population)
    exact = ESSAM(start(dim), ESSAMConfig(population=population, rho=1.0), seed=0)
    estimate = ESSAM(start(dim), ESSAMConfig(population=population, rho=1.0, grad_norm="estimate"))
    norms = [s.tell(s.ask(), rewards)["grad_norm"] for s in (exact, estimate)]
    assert norms[1] == pytest.approx(norms[0], rel=0.02)  # relative error ~ sqrt(2/dim) per term

    script = ESSAM(start(10), ESSAMConfig(population=4, rho=0.1, grad_norm="none"), seed=0)
    theta = script.space.get_vector()
    candidates = script.ask()
    z = zscore(np.array([0.3, 0.1, 0.4, 0.2]))
    script.tell(candidates, [0.3, 0.1, 0.4, 0.2])
    expected = theta - 0.1 / 4 * sum(zn * eps(c.seed, 10) for zn, c in zip(z, candidates))
    with script.space.shifted(script.ask()[0].offset):
        torch.testing.assert_close(script.space.get_vector(), expected, rtol=0, atol=1e-15)


def test_essam_skipped_second_round_returns_to_theta():
    essam = ESSAM(start(10), ESSAMConfig(population=4, rho=0.5), seed=0)
    theta = essam.space.get_vector()
    essam.tell(essam.ask(), [0.1, 0.2, 0.3, 0.4])
    info = essam.tell(essam.ask(), [float("nan")] * 4)
    assert info["skipped"] and essam.stage == 0 and torch.equal(essam.space.get_vector(), theta)
    assert essam.ask()[0].offset == ()  # the next iteration starts at theta again


def test_essam_saved_between_its_second_ask_and_tell_continues_identically():
    """Asking moves nothing, so the state may be saved at any point of the iteration."""
    config = ESSAMConfig(population=4, rho=0.5)
    essam = ESSAM(start(10), config, seed=0)
    essam.tell(essam.ask(), [0.1, 0.2, 0.3, 0.4])
    second = essam.ask()
    restored = ESSAM(start(10), config, seed=3)
    restored.load_state_dict(essam.state_dict())
    assert restored.ask() == second
    for strategy in (essam, restored):
        strategy.tell(second, rewards_of(second, strategy.space))
    assert torch.equal(restored.space.get_vector(), essam.space.get_vector())


# --- MeZO -----------------------------------------------------------------------


def test_mezo_two_point_update_with_weight_decay():
    config = MeZOConfig(q=3, eps=1e-3, lr=0.01, weight_decay=0.1)
    mezo = MeZO(start(20), config, seed=2)
    theta = mezo.space.get_vector()
    candidates = mezo.ask()
    assert [c.scale for c in candidates] == [1e-3, -1e-3] * 3
    assert [c.seed for c in candidates[0::2]] == [c.seed for c in candidates[1::2]]
    rewards = rewards_of(candidates, mezo.space)
    mezo.tell(candidates, rewards)
    grads = [(rewards[2 * i] - rewards[2 * i + 1]) / 2e-3 for i in range(3)]
    step = sum(g * eps(c.seed, 20) for g, c in zip(grads, candidates[0::2])) / 3
    expected = theta * (1 - 0.01 * 0.1) + 0.01 * step
    torch.testing.assert_close(mezo.space.get_vector(), expected, rtol=0, atol=1e-14)


def test_mezo_sign_and_momentum_variants():
    config = MeZOConfig(q=1, eps=1e-3, lr=0.01, sign=True, momentum=0.9, momentum_window=2)
    mezo = MeZO(start(8), config, seed=0)
    directions, theta = [], mezo.space.get_vector()
    for _ in range(3):
        candidates = mezo.ask()
        rewards = rewards_of(candidates, mezo.space)
        directions.append(np.sign(rewards[0] - rewards[1]) * eps(candidates[0].seed, 8))
        mezo.tell(candidates, rewards)
        # m_t = sum_k 0.9^(t-k) d_k over the last two steps (the window)
        theta = theta + 0.01 * sum(0.9**age * d for age, d in enumerate(directions[::-1][:2]))
        torch.testing.assert_close(mezo.space.get_vector(), theta, rtol=0, atol=1e-14)


# --- gradient quality -------------------------------------------------------------


def mean_cosine(strategy_factory, dim: int, trials: int) -> float:
    """Mean cosine between a strategy's first step and the true gradient, over seeds."""
    cosines = []
    for seed in range(trials):
        strategy = strategy_factory(start(dim, seed=100 + seed), seed)
        theta = strategy.space.get_vector()
        candidates = strategy.ask()
        strategy.tell(candidates, rewards_of(candidates, strategy.space))
        step = strategy.space.get_vector() - theta
        cosines.append(float(torch.nn.functional.cosine_similarity(step, gradient(theta), dim=0)))
    return float(np.mean(cosines))


@pytest.mark.parametrize(
    ("method", "samples", "dim"),
    [("es", 30, 1000), ("mezo", 30, 1000), ("es", 400, 20), ("mezo", 400, 20)],
)
def test_gradient_estimates_correlate_with_the_true_gradient(method, samples, dim):
    """The cosine of an n-sample estimate with the gradient is about sqrt(n / (n + d)).

    With a = g.eps, an estimate sum_n a_n eps_n / n has |g| along g (relative
    spread sqrt(2/n)) and about |g| sqrt(d/n) across it, so cos ~ 1/sqrt(1 + d/n).
    ES's z-scoring subtracts the mean reward (one sample's worth: n -> n - 1).
    MeZO's own estimate has n + 2 in place of n along g: cos ~ sqrt(n / (n + d + 1)).
    Measured means over 20 seeds (expected): es 30/1000 0.165 (0.168),
    mezo 30/1000 0.170 (0.171), es 400/20 0.977 (0.977), mezo 400/20 0.977 (0.975).
    """
    if method == "es":
        expected = math.sqrt((samples - 1) / (samples - 1 + dim - 1))
        config = ESConfig(population=samples, sigma=1e-4, lr=1.0)
        factory = lambda space, seed: OpenAIES(space, config, seed=seed)  # noqa: E731
    else:
        expected = math.sqrt(samples / (samples + dim + 1))
        config = MeZOConfig(q=samples, eps=1e-4, lr=1.0)
        factory = lambda space, seed: MeZO(space, config, seed=seed)  # noqa: E731
    measured = mean_cosine(factory, dim, trials=20)
    assert 0.8 * expected < measured < min(1.0, 1.2 * expected)
