"""The full-weight seeded parametrization: exact restore, noise streams, updates."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_model

from zo_llm.parametrizations import FullConfig, FullWeights
from zo_llm.parametrizations import noise as noise_module


def bound(model, **options) -> FullWeights:
    space = FullWeights(FullConfig(**options))
    space.bind(model)
    return space


def snapshot(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def assert_bit_identical(model, reference) -> None:
    for name, param in model.named_parameters():
        assert torch.equal(param, reference[name]), name


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_restore_is_exact_after_many_cycles(tokenizer, dtype):
    model = tiny_model(len(tokenizer), dtype=dtype)
    space = bound(model)
    before = snapshot(model)
    for seed in range(100):
        space.perturb(seed, 1e-3 if seed % 2 else 3e-2)
        space.unperturb()
    assert_bit_identical(model, before)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_plain_add_then_subtract_would_drift(tokenizer, dtype):
    """Guards the reason for the patching: without it, weights would not round-trip."""
    model = tiny_model(len(tokenizer), dtype=dtype)
    space = bound(model)
    name = space.parameter_names[0]
    weight = dict(model.named_parameters())[name].detach().clone()
    eps = space.noise_tensors(7)[name].mul_(1e-3)
    drifted = weight.clone().add_(eps).sub_(eps)
    assert not torch.equal(drifted, weight)


def test_perturbation_is_the_noise_and_moves_every_searched_tensor(model):
    space = bound(model)
    before = snapshot(model)
    eps = space.noise_tensors(3)
    with space.perturbed(3, 0.01):
        for name, param in model.named_parameters():
            torch.testing.assert_close(param, before[name] + 0.01 * eps[name], rtol=0, atol=1e-6)
            assert not torch.equal(param, before[name])
    assert_bit_identical(model, before)


def test_restored_even_when_evaluation_raises(model):
    space = bound(model)
    before = snapshot(model)
    with pytest.raises(RuntimeError, match="boom"), space.perturbed(1, 0.1):
        raise RuntimeError("boom")
    assert_bit_identical(model, before)


def test_noise_differs_between_tensors_and_seeds_and_regenerates_alone(model):
    space = bound(model)
    first = space.noise_tensors(11)
    again = space.noise_tensors(11)
    other = space.noise_tensors(12)
    names = space.parameter_names
    for name in names:
        assert torch.equal(first[name], again[name])
        assert not torch.equal(first[name].flatten()[:64], other[name].flatten()[:64])
    # two tensors of equal shape (q_proj in layers 0 and 1) get different noise
    q0, q1 = (n for n in names if n.endswith("self_attn.q_proj.weight"))
    assert not torch.equal(first[q0], first[q1])
    # one tensor's noise regenerates from (seed, tensor name) alone
    alone = noise_module.chunk_noise(11, noise_module.name_key(q1), 0, first[q1].numel(), "cpu")
    assert torch.equal(alone.view_as(first[q1]), first[q1])
    # and is standard normal
    pooled = torch.cat([t.flatten() for t in first.values()])
    assert abs(pooled.mean().item()) < 0.02 and abs(pooled.std().item() - 1) < 0.02


def test_correlated_noise_repeats_across_equal_shapes(model):
    space = bound(model, noise="correlated")
    noise = space.noise_tensors(5)
    q0, q1 = (n for n in space.parameter_names if n.endswith("self_attn.q_proj.weight"))
    assert torch.equal(noise[q0], noise[q1])
    generator = torch.Generator().manual_seed(5)
    assert torch.equal(noise[q0], torch.randn(noise[q0].shape, generator=generator))


def test_large_tensor_is_chunked_and_still_exact(monkeypatch, model):
    monkeypatch.setattr(noise_module, "CHUNK_ELEMENTS", 1000)
    space = bound(model)
    before = snapshot(model)
    embed = "model.embed_tokens.weight"
    target = next(t for t in space._targets if t.name == embed)
    assert len(target.chunks) == -(-target.param.numel() // 1000)
    space.perturb(9, 0.05)
    space.unperturb()
    assert_bit_identical(model, before)


def test_seeded_update_equals_dense_update(model):
    space = bound(model)
    before = snapshot(model)
    update = [(101, 0.3), (202, -0.7), (303, 0.05)]
    dense = {
        name: before[name] * (1 - 0.01) + sum(c * space.noise_tensors(s)[name] for s, c in update)
        for name in space.parameter_names
    }
    space.apply_update(update, decay=0.01)
    for name, param in model.named_parameters():
        torch.testing.assert_close(param, dense[name], rtol=1e-6, atol=1e-7)


def test_bf16_update_accumulates_in_fp32(tokenizer):
    """Thirty tiny coefficients must add up, not vanish one by one in bf16."""
    model = tiny_model(len(tokenizer), dtype=torch.bfloat16)
    space = bound(model, include=[r"lm_head"])
    weight = model.lm_head.weight
    before = weight.detach().clone()
    update = [(seed, 1e-4) for seed in range(30)]
    expected = before.float() + sum(
        1e-4 * space.noise_tensors(s)["lm_head.weight"] for s, _ in update
    )
    space.apply_update(update)
    assert torch.equal(weight, expected.to(torch.bfloat16))
    seed_by_seed = before.clone()
    for seed, coeff in update:
        seed_by_seed.add_(coeff * space.noise_tensors(seed)["lm_head.weight"])
    assert (seed_by_seed.float() - expected).abs().mean() > (weight.float() - expected).abs().mean()


def test_include_and_exclude_select_parameters(model):
    space = bound(model, include=[r"mlp\."], exclude=[r"layers\.1\."])
    assert space.parameter_names == [
        "model.layers.0.mlp.gate_proj.weight",
        "model.layers.0.mlp.up_proj.weight",
        "model.layers.0.mlp.down_proj.weight",
    ]
    assert space.dim == sum(
        dict(model.named_parameters())[n].numel() for n in space.parameter_names
    )
    before = snapshot(model)
    space.apply_update([(1, 0.1)])
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == set(space.parameter_names)


def test_dim_counts_all_weights(model):
    assert bound(model).dim == sum(p.numel() for p in model.parameters())


def test_state_dict_replays_onto_base_model(tokenizer):
    trained, fresh = tiny_model(len(tokenizer)), tiny_model(len(tokenizer))
    space = bound(trained)
    space.apply_update([(1, 0.02), (2, -0.01)])
    space.apply_update([(3, 0.03)], decay=0.001)
    replay = bound(fresh)
    replay.load_state_dict(space.state_dict())
    assert_bit_identical(fresh, snapshot(trained))
    with pytest.raises(RuntimeError, match="fresh"):
        replay.load_state_dict(space.state_dict())


def test_misuse_and_bad_config_are_reported(model):
    space = bound(model)
    with pytest.raises(RuntimeError, match="no active perturbation"):
        space.unperturb()
    space.perturb(1, 0.1)
    with pytest.raises(RuntimeError, match="twice"):
        space.perturb(2, 0.1)
    with pytest.raises(RuntimeError, match="unperturb"):
        space.apply_update([(1, 0.1)])
    space.unperturb()
    with pytest.raises(ValueError, match="no parameter matches.*nothing_like_this"):
        bound(model, include=["nothing_like_this"])
    with pytest.raises(ValueError, match="noise='wrong'.*independent, correlated"):
        FullConfig(noise="wrong")
    with pytest.raises(ValueError, match="not a regex"):
        FullConfig(include=["("])


def test_save_pretrained_loads_with_transformers(tmp_path, model):
    from transformers import AutoModelForCausalLM

    space = bound(model)
    space.apply_update([(5, 0.05)])
    space.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert_bit_identical(loaded, snapshot(model))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_reperturb_moves_straight_to_the_next_member_and_restores_exactly(tokenizer, dtype):
    model = tiny_model(len(tokenizer), dtype=dtype)
    before = {n: p.clone() for n, p in model.named_parameters()}
    space, alone = FullWeights(), FullWeights()
    space.bind(model)
    alone.bind(tiny_model(len(tokenizer), dtype=dtype))
    space.perturb(1, 0.01)
    for seed, scale in [(1, -0.01), (2, 0.02), (5, 0.01), (5, -0.01)]:
        space.reperturb(seed, scale)
        with alone.perturbed(seed, scale):
            for p, q in zip(model.parameters(), alone.model.parameters(), strict=True):
                assert torch.equal(p, q)
    space.unperturb()
    for name, param in model.named_parameters():
        assert torch.equal(param, before[name]), name


def test_an_antithetic_pair_draws_its_noise_once_for_the_move_between_members(model):
    space = FullWeights()
    space.bind(model)
    calls = []
    noise = space._noise
    space._noise = lambda seed, *where: calls.append(seed) or noise(seed, *where)
    chunks = len(space._chunks())
    space.perturb(3, 0.01)
    space.reperturb(3, -0.01)  # the pair's second member: one draw per chunk, not two
    assert len(calls) == 2 * chunks
    space.reperturb(4, 0.01)  # a new seed: the old noise off, the new on
    assert len(calls) == 4 * chunks
    space.unperturb()


@pytest.mark.parametrize("threads", [1, 3])
def test_the_numbers_do_not_depend_on_the_thread_count(monkeypatch, tokenizer, threads):
    """Chunks are drawn on several threads, each from its own generator."""
    monkeypatch.setattr(noise_module, "CHUNK_ELEMENTS", 1000)  # many chunks per tensor
    results = []
    for count in (1, threads):
        torch.set_num_threads(count)
        try:
            space = FullWeights()
            space.bind(tiny_model(len(tokenizer)))
            with space.perturbed(7, 0.01):
                perturbed = [p.clone() for p in space.model.parameters()]
            space.apply_update([(1, 0.01), (2, -0.02)], decay=0.1)
            results.append((perturbed, [p.clone() for p in space.model.parameters()]))
        finally:
            torch.set_num_threads(1)
    (perturbed_1, updated_1), (perturbed_n, updated_n) = results
    assert all(torch.equal(p, q) for p, q in zip(perturbed_1, perturbed_n, strict=True))
    assert all(torch.equal(p, q) for p, q in zip(updated_1, updated_n, strict=True))
