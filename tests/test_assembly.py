"""One builder for every run, a generation seam a new backend plugs into, and the space
methods a strategy calls, checked before the model loads."""

from __future__ import annotations

import contextlib
import json

import numpy as np
import pytest
import torch

import zo_llm
from zo_llm import assembly
from zo_llm.candidates import SEEDED
from zo_llm.cli import main
from zo_llm.evaluation.distributed import Replica
from zo_llm.generation import GENERATORS, Generator
from zo_llm.parametrizations.base import Parametrization


@GENERATORS.register("fixed-test")
class FixedGenerator(Generator):
    """Writes 1 to 17 "a"s, as many as the model's final norm weights say: a fixed completion
    per member, known to no other module of zo-llm."""

    built: list[FixedGenerator] = []

    def __init__(self, model, stop) -> None:
        self.model, self.stop, self.generated = model, tuple(stop), 0

    @classmethod
    def create(cls, model, tokenizer, settings, rows, stop, prompts=()):
        generator = cls(model, stop)
        cls.built.append(generator)
        return generator

    def render(self, prompt):
        return str(prompt), False

    def prepare(self, prompts):
        return list(prompts)

    def completion(self) -> str:
        total = float(self.model.model.norm.weight.double().sum())
        return "a" * (1 + int(abs(total) * 1e4) % 17)

    def generate_blocks(self, prepared, blocks, around_batch=None):
        completions = []
        for block in range(blocks):
            with (
                around_batch(range(block, block + 1)) if around_batch else contextlib.nullcontext()
            ):
                completions.append([self.completion() for _ in prepared])
            self.generated += len(prepared)
            self.report(len(prepared))
        return completions

    def member_groups(self, prompts, blocks):
        return [range(block, block + 1) for block in range(blocks)]

    def sample(self, prepared, temperature, seed):
        return [self.completion() for _ in prepared]

    def kl_from(self, reference, prepared):
        return {"kl": 0.0, "kl_per_sequence": 0.0, "kl_tokens": 0.0}


FIXED = {
    "backend": "fixed-test",
    "task": "conciseness",
    "eval_size": 3,
    "strategy": "es",
    "space": "tensor",
    "space_options": {"parameter": "model.norm.weight"},
    "evaluator": "sequential",
    "population": 6,
    "sigma": 0.05,
    "lr": 0.05,
    "batch_size": 2,
    "iterations": 2,
    "eval_every": 1,
    "progress": False,
    "tensorboard": False,
}


def test_a_backend_registered_by_a_user_trains_and_evaluates(model_dir, tmp_path, capsys):
    FixedGenerator.built.clear()
    run = zo_llm.train(model=str(model_dir), out=str(tmp_path / "run"), **FIXED)
    (generator,) = FixedGenerator.built
    assert run.generator is generator
    # 3 held-out evaluations of 3 prompts, 2 iterations of 6 members x 2 prompts
    assert generator.generated == 3 * 3 + 2 * 6 * 2
    train = [r for r in run.records if r["type"] == "train"]
    assert train[0]["reward_max"] > train[0]["reward_min"]  # members wrote different lengths

    assert main(["eval", "--model", str(tmp_path / "run" / "final")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(FixedGenerator.built) == 2  # eval read the backend from the run's settings
    assert report["examples"] == 3 and report["reward"] == run.records[-1]["reward"]


def spy_on_builder(monkeypatch):
    calls = []
    original = assembly.build_run

    def spy(config, **kwargs):
        calls.append(kwargs.get("purpose", "train"))
        return original(config, **kwargs)

    monkeypatch.setattr(assembly, "build_run", spy)
    return spy, calls


def test_zo_llm_eval_is_built_by_the_one_builder(model_dir, monkeypatch, capsys):
    spy, calls = spy_on_builder(monkeypatch)
    assert main(["eval", "--model", str(model_dir), "--task", "conciseness", "--eval-size", "2",
                 "--max-new-tokens", "2"]) == 0  # fmt: skip
    assert calls == ["eval"]
    assert json.loads(capsys.readouterr().out)["examples"] == 2


def test_a_ray_replica_is_built_by_the_one_builder_and_scores_as_the_driver(model_dir, monkeypatch):
    spy, calls = spy_on_builder(monkeypatch)
    settings = {**FIXED, "backend": "hf", "max_new_tokens": 4, "model": str(model_dir)}
    config = zo_llm.resolve(settings)
    driver = assembly.build_run(config, purpose="replica")
    replica = Replica(spy, config, threads=torch.get_num_threads())
    assert calls == ["replica", "replica"]
    examples = driver.train_examples[:2]
    candidates = driver.strategy.ask()
    expected = driver.evaluator.evaluate(candidates, examples).per_prompt
    fingerprint, scored = replica.round(1, [list(range(len(candidates)))], examples)
    np.testing.assert_array_equal(scored[0], expected)
    driver.close(), replica.run.close()


class NoShift(Parametrization):
    """A seeded space of one number that perturbs and updates, but cannot shift."""

    kinds = frozenset({SEEDED})

    def bind(self, model):
        self.model, self.value, self.saved = model, 0.0, None

    @property
    def dim(self):
        return 1

    def perturb(self, seed, scale):
        self.saved, self.value = self.value, self.value + scale * (seed % 7 - 3)

    def unperturb(self):
        self.value = self.saved

    def apply_update(self, update, decay=0.0):
        self.value += sum(coeff * (seed % 7 - 3) for seed, coeff in update)

    def state_dict(self):
        return {"value": self.value}

    def load_state_dict(self, state, snapshot=None):
        self.value = state["value"]

    def save_pretrained(self, path):
        pass


@pytest.fixture
def no_loading(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(assembly, "load_model", refuse)


@pytest.mark.parametrize(
    ("options", "missing"),
    [({}, "shift, unshift, update_norm"), ({"grad_norm": "estimate"}, "shift, unshift")],
)
def test_a_space_without_a_method_essam_calls_is_refused_before_the_model_loads(
    no_loading, options, missing
):
    with pytest.raises(ValueError, match=f"strategy 'essam' calls {missing} of its space, which "
                                         "NoShift does not implement"):  # fmt: skip
        zo_llm.train(model="zo-tiny", strategy="essam", space=NoShift(), strategy_options=options)


def test_the_same_space_passes_the_check_for_es(no_loading):
    with pytest.raises(AssertionError, match="the model was loaded"):  # checked, then loading
        zo_llm.train(model="zo-tiny", strategy="es", space=NoShift())


def test_a_strategy_config_must_bring_shaping():
    from dataclasses import dataclass

    from zo_llm.strategies import Strategy

    @dataclass(frozen=True)
    class Plain:
        population: int = 4

    with pytest.raises(TypeError, match="must subclass zo_llm.strategies.StrategyConfig"):

        class Mine(Strategy):  # noqa: F841 -- refused when defined
            config_class = Plain
