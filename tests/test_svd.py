"""The svd space (ESSA): dims, the starting model reproduced, exact restore, exports that load."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_model

from zo_llm.parametrizations import LoraSpace, SVDConfig, SVDSpace
from zo_llm.parametrizations.lora import ADAPTER_DIR

PROMPT = torch.tensor([[1, 20, 21, 22, 23]])
TARGETS = 2 * 7  # two layers of q, k, v, o, gate, up, down


def logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(PROMPT).logits


def snapshot(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


@pytest.fixture(scope="module")
def adapter(tmp_path_factory, tokenizer):
    """A trained-looking LoRA adapter (B != 0) of rank 2 on q_proj and v_proj, and its logits."""
    model = tiny_model(len(tokenizer))
    space = LoraSpace(LoraSpace.test_config())
    space.bind(model)
    space.apply_update([(9, 0.5)])
    path = tmp_path_factory.mktemp("adapter")
    space.save_adapter(path)
    return path, logits(model)


def test_dim_counts_singular_values(model):
    space = SVDSpace(SVDConfig(rank=3))
    space.bind(model)
    assert space.dim == TARGETS * 3
    half = SVDSpace(SVDConfig(fraction=0.5))
    half.bind(tiny_model(model.config.vocab_size))
    # min(out, in): 32 for q/o, 16 for k/v, 32 for gate/up/down -> half of each
    assert half.dim == 2 * (16 + 8 + 8 + 16 + 16 + 16 + 16)


def test_base_start_reproduces_the_model_exactly_and_restores_exactly(tokenizer, model):
    expected = logits(model)
    before = snapshot(model)
    space = SVDSpace(SVDSpace.test_config())
    space.bind(model)
    assert torch.equal(logits(model), expected)
    space.perturb(1, 0.3)
    assert not torch.equal(logits(model), expected)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())  # weights untouched
    space.unperturb()
    assert torch.equal(logits(model), expected)
    with space.at_vector(torch.full((space.dim,), 0.2)):
        assert not torch.equal(logits(model), expected)
    assert torch.equal(logits(model), expected)


def test_vector_scales_the_top_singular_values(model):
    space = SVDSpace(SVDConfig(rank=2, target_modules=("q_proj",)))
    space.bind(model)
    s0 = space.singular_values()
    space.set_vector(torch.tensor([0.5, 0.0, -1.0, 0.0]))
    name = "model.layers.0.self_attn.q_proj"
    weight = space.merged_state_dict()[f"{name}.weight"]
    top = torch.linalg.svdvals(weight)
    torch.testing.assert_close(
        top[:2].sort().values,
        torch.stack([s0[name][0] * 1.5, s0[name][1]]).sort().values,
        atol=1e-5,
        rtol=0,
    )
    assert torch.equal(
        space.singular_values()["model.layers.1.self_attn.q_proj"][0], torch.tensor(0.0)
    )


def test_adapter_start_reproduces_the_adapted_model(tokenizer, adapter):
    path, adapted = adapter
    model = tiny_model(len(tokenizer))
    space = SVDSpace(SVDConfig(adapter=str(path)))
    space.bind(model)
    assert space.dim == 2 * 2 * 2  # two layers, q and v, rank 2
    torch.testing.assert_close(logits(model), adapted, rtol=0, atol=1e-5)


@pytest.mark.parametrize("start", ["base", "adapter"])
def test_exports_load_with_transformers_and_peft(tokenizer, adapter, tmp_path, start):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    config = SVDConfig(rank=2, adapter=str(adapter[0]) if start == "adapter" else None)
    model = tiny_model(len(tokenizer))
    space = SVDSpace(config)
    space.bind(model)
    space.apply_update([(4, 0.2)])
    expected = logits(model)
    space.save_pretrained(tmp_path)
    merged = AutoModelForCausalLM.from_pretrained(tmp_path)
    torch.testing.assert_close(logits(merged), expected, rtol=0, atol=1e-5)
    if start == "adapter":
        peft_model = PeftModel.from_pretrained(tiny_model(len(tokenizer)), tmp_path / ADAPTER_DIR)
        torch.testing.assert_close(logits(peft_model), expected, rtol=0, atol=1e-5)
    else:
        assert not (tmp_path / ADAPTER_DIR).exists()


def test_bad_settings_name_the_fix(model, tmp_path):
    with pytest.raises(ValueError, match="fraction=1.5"):
        SVDConfig(fraction=1.5)
    with pytest.raises(ValueError, match="some of: .*q_proj"):
        SVDSpace(SVDConfig(target_modules=("query",))).bind(model)
    with pytest.raises(ValueError, match="peft LoRA folder"):
        SVDSpace(SVDConfig(adapter=str(tmp_path))).bind(model)


def test_an_untrained_adapter_is_refused_naming_it_and_the_base_weight_start(tokenizer, tmp_path):
    untrained = LoraSpace(LoraSpace.test_config())  # B = 0: every update is zero
    untrained.bind(tiny_model(len(tokenizer)))
    untrained.save_adapter(tmp_path)
    with pytest.raises(ValueError) as error:
        SVDSpace(SVDConfig(adapter=str(tmp_path))).bind(tiny_model(len(tokenizer)))
    message = str(error.value)
    assert f"adapter={str(tmp_path)!r}" in message and "is zero" in message
    assert "drop adapter= to search the singular values of the base weights" in message
