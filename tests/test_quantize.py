"""An int8 frozen base (``quantize = "int8"``) under the adapter spaces, and its exports."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import tiny_model

from zo_llm.cli import main
from zo_llm.config import resolve
from zo_llm.models.quantize import dense, is_quantized, quantize_base
from zo_llm.parametrizations import LoraSpace, SVDConfig, SVDSpace
from zo_llm.parametrizations.lora import ADAPTER_DIR
from zo_llm.sections import ModelSection

pytest.importorskip("torchao")


def logits(model) -> torch.Tensor:
    ids = torch.tensor([[5, 6, 7, 8, 9, 10], [11, 12, 13, 14, 15, 16]])
    return model(input_ids=ids).logits


def quantized(tokenizer, seed: int = 0):
    model = tiny_model(len(tokenizer), seed)
    quantize_base(model, "int8")
    return model


def test_linear_weights_become_int8_and_the_head_stays_float(tokenizer):
    model = tiny_model(len(tokenizer))
    before = logits(model)
    assert quantize_base(model, "int8") == 2 * 7  # q k v o gate up down in 2 layers
    projection = model.model.layers[0].self_attn.q_proj.weight
    assert is_quantized(projection) and not is_quantized(model.lm_head.weight)
    # per-channel int8: each weight within half a step (max|row| / 127 / 2) of the float one
    after = logits(model)
    assert torch.allclose(after, before, atol=0.05 * before.abs().max().item())
    assert not torch.equal(after, before)
    assert not is_quantized(dense(projection)) and dense(projection).dtype == torch.float32


def test_svd_over_an_int8_base_applies_restores_and_exports_a_float_model(tokenizer, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = quantized(tokenizer)
    base = logits(model)
    space = SVDSpace(SVDConfig(rank=2))
    space.bind(model)
    assert torch.equal(logits(model), base)  # v = 0 adds zeros
    vector = torch.linspace(-0.3, 0.3, space.dim)
    space.set_vector(vector)
    changed = logits(model)
    assert not torch.allclose(changed, base, atol=1e-3)
    space.save_pretrained(tmp_path / "final")
    space.set_vector(torch.zeros(space.dim))
    assert torch.equal(logits(model), base)

    # the merged model is a plain float folder whose outputs are the run's
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "final")
    assert not any(is_quantized(p) for p in merged.parameters())
    assert torch.allclose(logits(merged), changed, atol=1e-4)
    # and the change alone is a peft adapter: float base (dequantised) + adapter = merged
    float_base = tiny_model(len(tokenizer))
    state = {name: dense(t) for name, t in model.state_dict().items()}
    float_base.load_state_dict(state)  # the int8 base in float, without the hooks' change
    adapted = PeftModel.from_pretrained(float_base, tmp_path / "final" / ADAPTER_DIR)
    assert torch.allclose(logits(adapted), changed, atol=1e-4)


def test_svd_adapter_of_the_base_change_applies_to_the_float_base(tokenizer, tmp_path):
    from peft import PeftModel

    model = tiny_model(len(tokenizer))
    space = SVDSpace(SVDConfig(rank=2, target_modules=("q_proj", "down_proj")))
    space.bind(model)
    space.set_vector(torch.linspace(-0.5, 0.4, space.dim))
    changed = logits(model)
    space.save_adapter(tmp_path / "adapter")
    settings = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert (settings["r"], settings["lora_alpha"]) == (2, 2)
    assert sorted(settings["target_modules"]) == ["down_proj", "q_proj"]
    adapted = PeftModel.from_pretrained(tiny_model(len(tokenizer)), tmp_path / "adapter")
    assert torch.allclose(logits(adapted), changed, atol=1e-5)


def test_lora_over_an_int8_base_merges_into_a_float_model(tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM

    model = quantized(tokenizer)
    base = logits(model)
    space = LoraSpace(LoraSpace.test_config())
    space.bind(model)
    assert torch.equal(logits(space.model), base)  # B = 0
    vector = torch.linspace(-0.5, 0.5, space.dim)
    space.set_vector(vector)
    changed = logits(space.model)
    assert not torch.allclose(changed, base, atol=1e-3)
    space.save_pretrained(tmp_path / "final")
    assert (tmp_path / "final" / ADAPTER_DIR / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "final")
    assert not any(is_quantized(p) for p in merged.parameters())
    assert torch.allclose(logits(merged), changed, atol=1e-4)
    # the space's own model is untouched by the export: still int8, still the member
    assert is_quantized(model.model.layers[0].self_attn.q_proj.base_layer.weight)
    assert torch.equal(logits(space.model), changed)


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ({"space": "full"}, "space 'full' cannot use: it changes the base weights"),
        ({"space": "lowrank", "strategy": "es"}, "space 'lowrank' cannot use"),
        ({"space": "svd", "space_options": {"adapter": "some/folder"}}, "is merged into"),
    ],
)
def test_a_space_that_writes_the_base_is_refused_before_loading(settings, fragment):
    with pytest.raises(ValueError, match="quantize='int8'") as error:
        resolve({"quantize": "int8", "strategy": "es", **settings})
    assert fragment in str(error.value) and "--space lora or svd" in str(error.value)


def test_unknown_or_uninstalled_quantization_names_the_fix(monkeypatch):
    with pytest.raises(ValueError, match="unknown quantize='int4'; use one of: int8"):
        ModelSection(quantize="int4")
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match=r"needs torchao.*pip install 'zo-llm\[quant\]'"):
        ModelSection(quantize="int8")


def test_train_over_an_int8_base_and_eval_the_saved_float_model(model_dir, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "--model", str(model_dir), "--task", "countdown", "--space", "svd"]
    args += ["--strategy", "es", "--strategy-opt", "sigma=0.05", "--quantize", "int8"]
    args += ["--iterations", "2", "--batch-size", "2", "--max-new-tokens", "4"]
    args += ["--eval-size", "4", "--eval-every", "0", "--out", str(run)]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "int8 base, float32 activations and adapter" in captured.out + captured.err
    assert (run / "final" / ADAPTER_DIR / "adapter_model.safetensors").exists()
    # eval scores the saved float model as saved (not quantised again): the run's numbers
    assert main(["eval", "--model", str(run / "final")]) == 0
    printed = json.loads(capsys.readouterr().out)
    from zo_llm import read_metrics

    last = [r for r in read_metrics(run) if r["type"] == "eval"][-1]
    assert printed["reward"] == pytest.approx(last["reward"], abs=1e-6)


def test_a_passed_model_is_quantized_in_place_as_a_loaded_one(tokenizer, char_task):
    import zo_llm

    model = tiny_model(len(tokenizer))
    settings = {"quantize": "int8", "space": "svd", "strategy": "es", "batch_size": 2}
    settings |= {"space_options": {"rank": 2}, "max_new_tokens": 2, "progress": False}
    run = zo_llm.Experiment(resolve(settings), model=model, tokenizer=tokenizer, task=char_task)
    assert is_quantized(model.model.layers[1].mlp.down_proj.weight)
    assert run.step()["samples"] == 2 * 30  # ES's default 30 members, 2 prompts each
