"""The lora space: dims, init, exact restore of its own tensors only, vectors, files peft loads."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_model

from zo_llm.parametrizations import LoraSpace, LoraSpaceConfig
from zo_llm.parametrizations.lora import ADAPTER_DIR

PROMPT = torch.tensor([[1, 20, 21, 22, 23]])


def logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(PROMPT).logits


def snapshot(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


@pytest.fixture
def bound(tokenizer):
    model = tiny_model(len(tokenizer))
    space = LoraSpace(LoraSpace.test_config())
    space.bind(model)
    return model, space


def test_dim_counts_the_factors_of_each_target(tokenizer):
    model = tiny_model(len(tokenizer))  # hidden 32, 2 layers, 4 heads, 2 kv heads (v_proj 32->16)
    space = LoraSpace(LoraSpaceConfig(target_modules=("q_proj", "v_proj"), rank=2))
    space.bind(model)
    assert space.dim == 2 * (2 * (32 + 32) + 2 * (32 + 16))
    every = LoraSpace(LoraSpaceConfig(rank=1))
    every.bind(tiny_model(len(tokenizer)))
    # q, k, v, o, gate, up, down: (in + out) * r each
    per_layer = (32 + 32) + (32 + 16) * 2 + (32 + 32) + (32 + 64) * 2 + (64 + 32)
    assert every.dim == 2 * per_layer


def test_starts_at_the_base_model_and_only_b_moves_it_at_first(tokenizer, bound):
    model, space = bound
    assert torch.equal(logits(model), logits(tiny_model(len(tokenizer))))
    names = [name for name, _ in space.adapter_parameters()]
    reference = logits(model)
    for name, param in space.adapter_parameters():
        original = param.detach().clone()
        param.data.add_(torch.ones_like(param))
        moved = not torch.equal(logits(model), reference)
        param.data.copy_(original)
        assert moved == (".lora_B." in name), name  # A alone does nothing while B = 0
    assert any(".lora_A." in n for n in names)
    again = LoraSpace(LoraSpace.test_config())
    again.bind(tiny_model(len(tokenizer)))
    assert torch.equal(again.get_vector(), space.get_vector())  # the init is seeded


def test_perturbing_changes_only_adapters_and_restores_exactly(bound):
    model, space = bound
    space.apply_update([(1, 0.5)])  # B != 0, so perturbations of A matter too
    before = snapshot(model)
    for seed in range(5):
        with space.perturbed(seed, 1e-3):
            changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
            assert changed and all(".lora_" in n for n in changed)
            assert any(".lora_A." in n for n in changed)
        for name, param in model.named_parameters():
            assert torch.equal(param, before[name]), name


def test_vector_kind_round_trips_and_checkpoints(tokenizer, bound):
    model, space = bound
    space.apply_update([(2, 0.3)])
    vector = space.get_vector()
    assert vector.shape == (space.dim,)
    with space.at_vector(torch.zeros(space.dim)):
        assert torch.equal(logits(model), logits(tiny_model(len(tokenizer))))
    assert torch.equal(space.get_vector(), vector)
    other = LoraSpace(LoraSpace.test_config())
    other.bind(tiny_model(len(tokenizer)))
    other.load_state_dict(space.state_dict())
    assert torch.equal(other.get_vector(), vector)


def test_saved_adapter_and_merged_model_load_with_peft_and_transformers(tokenizer, bound, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model, space = bound
    space.apply_update([(3, 0.5)])
    expected = logits(model)
    space.save_pretrained(tmp_path)
    merged = AutoModelForCausalLM.from_pretrained(tmp_path)
    torch.testing.assert_close(logits(merged), expected, rtol=0, atol=1e-5)
    adapted = PeftModel.from_pretrained(tiny_model(len(tokenizer)), tmp_path / ADAPTER_DIR)
    torch.testing.assert_close(logits(adapted), expected, rtol=0, atol=1e-6)


def test_bad_settings_name_the_fix(model):
    with pytest.raises(ValueError, match="rank=0"):
        LoraSpaceConfig(rank=0)
    with pytest.raises(ValueError, match="its linear modules are: .*q_proj"):
        LoraSpace(LoraSpaceConfig(target_modules=("query",))).bind(model)
