"""The weight change logged at every held-out evaluation: ||theta - theta_0|| / ||theta_0||."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import tiny_model

import zo_llm

SETTINGS = {
    "model": "zo-tiny",
    "task": "countdown-easy",
    "eval_size": 4,
    "batch_size": 4,
    "max_new_tokens": 24,
    "population": 4,
    "sigma": 0.05,
    "lr": 0.05,
    "iterations": 2,
    "eval_every": 1,
    "progress": False,
    "tensorboard": False,
}


def changes(run) -> list[float | None]:
    return [r["weight_change"] for r in run.records if r["type"] == "eval"]


def relative_distance(weights: dict[str, torch.Tensor], base: dict[str, torch.Tensor]) -> float:
    changed = sum(float((weights[n].float() - t.float()).square().sum()) for n, t in base.items())
    return math.sqrt(changed / sum(float(t.float().square().sum()) for t in base.values()))


def base_weights() -> dict[str, torch.Tensor]:
    model, _ = zo_llm.load_model("zo-tiny", "float32", "cpu")
    return {name: p.detach() for name, p in model.named_parameters()}


@pytest.mark.parametrize("space", ["full", "lowrank"])
def test_a_space_that_writes_the_weights_reports_their_distance_from_the_base(space):
    run = zo_llm.train(**SETTINGS, space=space)
    first, *_, last = changes(run)
    assert first == 0.0 and last > 0
    weights = {name: p.detach() for name, p in run.model.named_parameters()}
    assert last == pytest.approx(relative_distance(weights, base_weights()), rel=1e-5)


def test_a_hook_space_reports_the_distance_of_its_merged_weights():
    run = zo_llm.train(**SETTINGS, space="svd")
    assert changes(run)[0] == 0.0 and changes(run)[-1] > 0  # measured: 0.015 at iteration 2
    merged = run.space.merged_state_dict()
    base = base_weights()
    assert changes(run)[-1] == pytest.approx(relative_distance(merged, base), rel=1e-4)


def test_a_run_that_changes_nothing_reports_no_change():
    """Every member scores alike, so every step is zero: the weights never move."""
    rows = [{"q": f"{i} + {i} ="} for i in range(8)]
    alike = zo_llm.FunctionTask(rows, prompt="{q}", reward=lambda example, completion: 1.0)
    settings = {k: v for k, v in SETTINGS.items() if k not in ("task", "eval_size")}
    assert changes(zo_llm.train(**settings, task=alike, space="full")) == [0.0, 0.0, 0.0]


def test_a_model_object_cannot_be_read_again_so_a_written_space_reports_none(tokenizer):
    from conftest import make_char_task

    run = zo_llm.train(
        model=tiny_model(len(tokenizer)),
        tokenizer=tokenizer,
        task=make_char_task(),
        **{k: v for k, v in SETTINGS.items() if k not in ("model", "task", "eval_size")},
    )
    assert changes(run) == [None, None, None]


def test_the_base_is_read_from_safetensors_only_where_there_are_some(tmp_path):
    """A GGUF file or an uncached hub id would need the base loaded again: not measured."""
    from zo_llm.drift import base_tensors
    from zo_llm.models.aliases import resolve_alias

    folder = base_tensors(resolve_alias("zo-tiny"))
    assert folder is not None and dict(folder())["model.embed_tokens.weight"].numel() > 0
    (tmp_path / "model.gguf").write_bytes(b"GGUF")
    assert base_tensors(str(tmp_path / "model.gguf")) is None
    assert base_tensors("nobody/not-cached-anywhere") is None  # offline, not in the cache
    assert base_tensors(None) is None
