"""OpenAI-style ES: the update rule, its options, NaN handling and state."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zo_llm.fitness import centered_rank, zscore
from zo_llm.parametrizations import FullWeights, Parametrization
from zo_llm.strategies import ESConfig, IncompatibleSpaceError, OpenAIES


def make_es(model, seed=0, **options) -> OpenAIES:
    space = FullWeights()
    space.bind(model)
    return OpenAIES(space, ESConfig(**options), seed=seed)


def snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_update_equals_dense_formula(model):
    es = make_es(model, population=5, lr=0.01)
    before = snapshot(model)
    candidates = es.ask()
    rewards = np.array([0.1, 0.5, 0.2, 0.9, 0.3])
    z = (rewards - rewards.mean()) / (rewards.std() + 1e-8)  # population std, as the paper
    noise = [es.space.noise_tensors(c.seed) for c in candidates]
    es.tell(candidates, rewards)
    for name, param in model.named_parameters():
        expected = before[name] + 0.01 / 5 * sum(zn * eps[name] for zn, eps in zip(z, noise))
        torch.testing.assert_close(param, expected, rtol=1e-6, atol=1e-7)


def test_paper_defaults():
    config = ESConfig()
    assert (config.population, config.sigma, config.lr) == (30, 1e-3, 5e-4)
    assert (config.antithetic, config.shaping, config.weight_decay) == (False, "zscore", 0.0)


def test_antithetic_pairs_share_seeds_and_update_with_difference(model):
    es = make_es(model, population=4, antithetic=True, lr=0.02, sigma=0.1)
    candidates = es.ask()
    assert [c.scale for c in candidates] == [0.1, -0.1, 0.1, -0.1]
    assert candidates[0].seed == candidates[1].seed != candidates[2].seed == candidates[3].seed
    before = snapshot(model)
    rewards = np.array([1.0, 0.0, 0.5, 0.5])
    z = zscore(rewards)
    es.tell(candidates, rewards)
    eps = [es.space.noise_tensors(candidates[i].seed) for i in (0, 2)]
    for name, param in model.named_parameters():
        expected = before[name] + 0.02 / 4 * (
            (z[0] - z[1]) * eps[0][name] + (z[2] - z[3]) * eps[1][name]
        )
        torch.testing.assert_close(param, expected, rtol=1e-6, atol=1e-7)


def test_weight_decay_shrinks_towards_zero(model):
    es = make_es(model, population=2, lr=0.1, weight_decay=0.5)
    before = snapshot(model)
    candidates = es.ask()
    es.tell(candidates, [1.0, 1.0])  # equal rewards: no direction, only decay
    for name, param in model.named_parameters():
        torch.testing.assert_close(param, before[name] * (1 - 0.1 * 0.5))


def test_lr_decay_scales_each_iteration_step_and_survives_a_restore(model):
    """Iteration g steps with lr * lr_decay**g; a restored strategy takes the same next step."""
    es = make_es(model, population=2, lr=0.1, lr_decay=0.5, weight_decay=1.0)
    for generation in range(3):
        before = snapshot(model)
        es.tell(es.ask(), [1.0, 1.0])  # equal rewards: only the decay, which scales with lr
        factor = 1 - 0.1 * 0.5**generation
        for name, param in model.named_parameters():
            torch.testing.assert_close(param, before[name] * factor)
    restored = make_es(model, population=2, lr=0.1, lr_decay=0.5, weight_decay=1.0)
    restored.load_state_dict(es.state_dict())
    assert restored.learning_rate() == es.learning_rate() == 0.1 * 0.5**3


def test_shaping_functions():
    rewards = np.array([3.0, 1.0, 2.0, 2.0])
    np.testing.assert_allclose(centered_rank(rewards), [0.5, -0.5, 0.0, 0.0])
    z = zscore(rewards)
    assert abs(z.mean()) < 1e-12 and abs(z.std() - 1) < 1e-6
    assert np.all(zscore(np.ones(4)) == 0)


def test_non_finite_rewards_are_replaced_by_the_worst(model):
    es = make_es(model, population=4, lr=0.01)
    reference = make_es(type(model)(model.config).eval(), population=4, lr=0.01)
    reference.space.model.load_state_dict(model.state_dict())
    candidates = es.ask()
    info = es.tell(candidates, [0.5, float("nan"), 0.2, float("inf")])
    assert info["invalid"] == 2
    reference.tell(reference.ask(), [0.5, 0.2, 0.2, 0.2])
    for (name, param), ref in zip(model.named_parameters(), reference.space.model.parameters()):
        assert torch.equal(param, ref), name


def test_all_invalid_rewards_skip_the_update(model):
    es = make_es(model, population=3)
    before = snapshot(model)
    info = es.tell(es.ask(), [float("nan")] * 3)
    assert info["skipped"] and es.generation == 1
    for name, param in model.named_parameters():
        assert torch.equal(param, before[name])


def test_seeds_are_deterministic_and_fresh_each_generation(model):
    a, b = make_es(model, seed=1, population=3), make_es(model, seed=1, population=3)
    first = a.ask()
    assert first == b.ask()
    assert len({c.seed for c in first}) == 3
    a.tell(first, [0.0, 0.0, 0.0])
    assert not {c.seed for c in a.ask()} & {c.seed for c in first}
    assert make_es(model, seed=2, population=3).ask() != first


def test_state_dict_round_trip_continues_identically(model):
    es = make_es(model, seed=4, population=3)
    es.tell(es.ask(), [0.0, 0.0, 0.0])
    restored = make_es(model, seed=0, population=3)
    restored.load_state_dict(es.state_dict())
    assert restored.ask() == es.ask() and restored.generation == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"population": 1}, "population=1"),
        ({"population": 5, "antithetic": True}, "population=5 .* even"),
        ({"sigma": 0.0}, "sigma=0.0"),
        ({"lr": -1.0}, "lr=-1.0"),
        ({"weight_decay": -0.1}, "weight_decay=-0.1"),
        ({"lr_decay": 0.0}, "lr_decay=0.0"),
        ({"lr_decay": 1.5}, "lr_decay=1.5"),
        ({"shaping": "softmax"}, "softmax.*centered_rank, prompt_zscore, raw, zscore"),
    ],
)
def test_bad_config_names_the_value(options, message):
    with pytest.raises(ValueError, match=message):
        ESConfig(**options)


def test_wrong_pairing_names_the_spaces_that_work():
    class VectorOnly(Parametrization):
        kinds = frozenset({"vector"})

        def bind(self, model): ...

        dim = 3

        def state_dict(self):
            return {}

        def load_state_dict(self, state): ...
        def save_pretrained(self, path): ...

    with pytest.raises(IncompatibleSpaceError, match="spaces that work with 'es': full"):
        OpenAIES(VectorOnly())


def test_tell_checks_reward_count(model):
    es = make_es(model, population=3)
    with pytest.raises(ValueError, match="2 rewards for 3 candidates"):
        es.tell(es.ask(), [1.0, 2.0])
