"""The vllm backend's engine settings: sized from the run where not set, checked before loading.

Pure arithmetic and the model section's checks: no vLLM needed (the engine is tested in
test_vllm; a config naming vllm is refused where vLLM is missing, so sections are built here).
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from zo_llm.generation.vllm import engine_options, kv_bytes_per_token
from zo_llm.sections import ModelSection

#: SmolLM2-135M's shapes: 30 layers, 9 heads of 64, 3 key-value heads.
SMOLLM2 = SimpleNamespace(
    num_attention_heads=9, num_key_value_heads=3, hidden_size=576, num_hidden_layers=30
)


def model_settings(**given):
    return ModelSection(**{"backend": "vllm", "max_new_tokens": 32, **given})


def test_a_token_of_kv_holds_keys_and_values_of_every_layer():
    assert kv_bytes_per_token(SMOLLM2, "float32") == 2 * 30 * 3 * 64 * 4  # 46,080 bytes
    assert kv_bytes_per_token(SMOLLM2, "bfloat16") == 2 * 30 * 3 * 64 * 2


def test_by_default_the_engine_holds_the_longest_sequence_for_every_prompt_at_once():
    options = engine_options(model_settings(), SMOLLM2, [97, 120, 88], rows=32)
    assert options["max_model_len"] == 120 + 32
    blocks = 3 * math.ceil(152 / 16) + 1
    assert options["kv_cache_memory_bytes"] == blocks * 16 * 46_080
    assert "max_num_seqs" not in options and "enable_prefix_caching" not in options


def test_the_kv_cache_is_sized_for_at_most_the_sequences_scheduled_at_once():
    many = [10] * 1000
    default = engine_options(model_settings(), SMOLLM2, many, rows=32)
    assert default["kv_cache_memory_bytes"] == (256 * math.ceil(42 / 16) + 1) * 16 * 46_080
    capped = engine_options(model_settings(generation_batch_size=8), SMOLLM2, many, rows=8)
    assert capped["max_num_seqs"] == 8
    assert capped["kv_cache_memory_bytes"] == (8 * math.ceil(42 / 16) + 1) * 16 * 46_080


def test_set_settings_reach_the_engine_as_given():
    settings = model_settings(max_model_len=512, kv_cache_gib=0.5, prefix_caching=False)
    options = engine_options(settings, SMOLLM2, [100], rows=32)
    assert options == {
        "max_model_len": 512,
        "kv_cache_memory_bytes": 2**29,
        "enable_prefix_caching": False,
    }
    share = engine_options(model_settings(gpu_memory_utilization=0.5), SMOLLM2, [100], rows=32)
    assert share["gpu_memory_utilization"] == 0.5 and "kv_cache_memory_bytes" not in share


def test_a_max_model_len_shorter_than_the_run_is_refused_with_the_lengths():
    with pytest.raises(ValueError, match=r"max_model_len=64 is shorter than .* 132 tokens"):
        engine_options(model_settings(max_model_len=64), SMOLLM2, [100], rows=32)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"backend": "hf", "kv_cache_gib": 2}, "kv_cache_gib=2 is a setting of --backend vllm"),
        ({"backend": "hf", "prefix_caching": False}, "prefix_caching=False is a setting of"),
        ({"kv_cache_gib": 0}, r"kv_cache_gib=0 must be > 0"),
        ({"gpu_memory_utilization": 1.5}, r"gpu_memory_utilization=1.5 must be in \(0, 1\]"),
        ({"kv_cache_gib": 1, "gpu_memory_utilization": 0.5}, "not both"),
        ({"max_model_len": 0}, "max_model_len=0 must be an integer >= 1"),
    ],
)
def test_engine_settings_are_checked_with_the_config(given, message):
    with pytest.raises(ValueError, match=message):
        model_settings(**given)
