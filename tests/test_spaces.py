"""The tensor space, and the protocol additions of seeded spaces: shift, update_norm, at_vector."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_model

from zo_llm.parametrizations import FullWeights, TensorConfig, TensorSpace
from zo_llm.parametrizations.noise import chunk_noise, name_key


def snapshot(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def assert_bit_identical(model, reference) -> None:
    for name, param in model.named_parameters():
        assert torch.equal(param, reference[name]), name


# --- the tensor space -----------------------------------------------------


def test_vector_sources_and_dtypes():
    assert TensorSpace(x0=[1, 2, 3]).get_vector().dtype == torch.float64  # ints become float64
    assert TensorSpace(x0=[0.5, 1.0]).get_vector().dtype == torch.float64  # so do lists
    assert TensorSpace(x0=torch.arange(3)).get_vector().dtype == torch.float64
    assert TensorSpace(x0=torch.zeros(2, dtype=torch.float32)).get_vector().dtype == torch.float32
    own = TensorSpace(TensorConfig(dim=3, init=0.5))
    assert own.dim == 3
    assert torch.equal(own.get_vector(), torch.full((3,), 0.5, dtype=torch.float64))
    x0 = torch.ones(4, dtype=torch.float64)
    space = TensorSpace(x0=x0)
    space.apply_update([(1, 1.0)])
    assert torch.equal(x0, torch.ones(4, dtype=torch.float64))  # x0 was copied


def test_seeded_noise_is_the_shared_noise_module():
    space = TensorSpace(x0=torch.zeros(5, dtype=torch.float64))
    eps = chunk_noise(7, name_key("tensor"), 0, 5, "cpu").double()
    with space.perturbed(7, 0.5):
        assert torch.equal(space.get_vector(), 0.5 * eps)
    assert torch.equal(space.get_vector(), torch.zeros(5, dtype=torch.float64))
    space.apply_update([(7, 2.0), (8, -1.0)], decay=0.1)
    eps8 = chunk_noise(8, name_key("tensor"), 0, 5, "cpu").double()
    torch.testing.assert_close(space.get_vector(), 2.0 * eps - eps8, rtol=0, atol=1e-15)


def test_perturb_shift_and_vectors_restore_exactly():
    x0 = torch.randn(6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    space = TensorSpace(x0=x0)
    space.shift([(1, 0.3), (2, -0.2)])
    shifted = space.get_vector()
    for seed in range(5):
        with space.perturbed(seed, 1e-3):
            assert not torch.equal(space.get_vector(), shifted)
        assert torch.equal(space.get_vector(), shifted)
    space.unshift()
    assert torch.equal(space.get_vector(), x0)
    with space.at_vector(torch.ones(6)):
        assert torch.equal(space.get_vector(), torch.ones(6, dtype=torch.float64))
    assert torch.equal(space.get_vector(), x0)


def test_parameter_of_a_model_is_searched_in_place_with_full_space_noise(model):
    space = TensorSpace(TensorConfig(parameter="model.norm.weight"))
    assert space.dim == 0  # known once bound
    space.bind(model)
    assert space.dim == 32
    full = FullWeights()
    full.bind(model)
    before = snapshot(model)
    space.perturb(3, 0.1)
    expected = before["model.norm.weight"] + 0.1 * full.noise_tensors(3)["model.norm.weight"]
    assert torch.equal(model.model.norm.weight, expected)  # same noise, same rounding as full
    space.unperturb()
    assert_bit_identical(model, before)
    space.set_vector(torch.zeros(32))
    assert torch.equal(model.model.norm.weight, torch.zeros(32))


def test_update_norm_is_exact():
    space = TensorSpace(x0=torch.zeros(1000, dtype=torch.float64))
    update = [(1, 0.5), (2, -1.5), (3, 0.25)]
    space.apply_update(update)
    assert space.update_norm(update) == pytest.approx(float(space.get_vector().norm()), rel=1e-12)


def test_state_dict_and_save_pretrained_round_trip(tmp_path):
    space = TensorSpace(x0=torch.arange(4.0, dtype=torch.float64))
    space.apply_update([(5, 0.1)])
    other = TensorSpace(x0=torch.zeros(4, dtype=torch.float64))
    other.load_state_dict(space.state_dict())
    assert torch.equal(other.get_vector(), space.get_vector())
    space.save_pretrained(tmp_path / "vec")
    assert sorted(p.name for p in (tmp_path / "vec").iterdir()) == [
        "vector.safetensors",
        "vector_config.json",
    ]
    loaded = TensorSpace.from_pretrained(tmp_path / "vec")
    assert torch.equal(loaded.get_vector(), space.get_vector())


def test_tensor_space_misuse_is_reported(model):
    with pytest.raises(ValueError, match="needs a vector"):
        TensorSpace()
    with pytest.raises(ValueError, match=r"1-D vector; got shape \(2, 2\)"):
        TensorSpace(x0=torch.zeros(2, 2))
    with pytest.raises(ValueError, match="dim=-1"):
        TensorConfig(dim=-1)
    with pytest.raises(ValueError, match="never reads"):
        TensorSpace(TensorConfig(dim=3)).bind(model)
    with pytest.raises(ValueError, match="no parameter 'nope'"):
        TensorSpace(TensorConfig(parameter="nope")).bind(model)
    with pytest.raises(RuntimeError, match="bind"):
        TensorSpace(TensorConfig(parameter="model.norm.weight")).get_vector()
    space = TensorSpace(x0=[0.0, 0.0])
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        space.set_vector(torch.zeros(3))
    space.perturb(1, 0.1)
    for call in (lambda: space.perturb(2, 0.1), lambda: space.apply_update([(1, 1.0)])):
        with pytest.raises(RuntimeError):
            call()
    space.unperturb()


# --- shift and update_norm on the full space -------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_full_shift_restores_exactly_with_members_on_top(tokenizer, dtype):
    model = tiny_model(len(tokenizer), dtype=dtype)
    space = FullWeights()
    space.bind(model)
    before = snapshot(model)
    space.shift([(11, 0.02), (12, -0.03), (13, 0.01)])
    shifted = snapshot(model)
    assert any(not torch.equal(shifted[n], before[n]) for n in before)
    for seed in range(20):
        with space.perturbed(seed, 1e-3):
            pass
    assert_bit_identical(model, shifted)
    space.unshift()
    assert_bit_identical(model, before)


def test_full_shift_is_the_combination(model):
    space = FullWeights()
    space.bind(model)
    before = snapshot(model)
    update = [(1, 0.02), (2, -0.01)]
    noise = [space.noise_tensors(seed) for seed, _ in update]
    space.shift(update)
    for name, param in model.named_parameters():
        expected = before[name] + 0.02 * noise[0][name] - 0.01 * noise[1][name]
        torch.testing.assert_close(param, expected, rtol=0, atol=1e-6)
    with pytest.raises(RuntimeError, match="unshift"):
        space.apply_update([(3, 0.1)])
    with pytest.raises(RuntimeError, match="twice"):
        space.shift(update)
    space.perturb(4, 0.1)
    with pytest.raises(RuntimeError, match="unperturb"):
        space.unshift()
    space.unperturb()
    space.unshift()
    with pytest.raises(RuntimeError, match="no active shift"):
        space.unshift()


def test_full_update_norm_is_exact(model):
    space = FullWeights()
    space.bind(model)
    update = [(1, 0.5), (2, -1.5)]
    noise = [space.noise_tensors(seed) for seed, _ in update]
    squares = sum(
        float(((0.5 * noise[0][n].double() - 1.5 * noise[1][n].double()) ** 2).sum())
        for n in space.parameter_names
    )
    assert space.update_norm(update) == pytest.approx(squares**0.5, rel=1e-6)
    assert space.update_norm([]) == 0.0
