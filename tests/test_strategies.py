"""Every registered strategy: runs on a tiny model, resumes exactly, is deterministic, pairs safely.

The tests take their parameters from ``STRATEGIES.names()``, so a new entry is
covered automatically; per-class differences come from ``supported_kinds``
and ``test_config()``, never from the name.
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
import torch
from conftest import make_char_task, run_numbers, tiny_model

import zo_llm
from zo_llm.evaluation import evaluate_candidates
from zo_llm.evaluation.scores import Scores
from zo_llm.iteration import run_iteration
from zo_llm.parametrizations import (
    PARAMETRIZATIONS,
    SEEDED,
    FullWeights,
    TensorConfig,
    TensorSpace,
)
from zo_llm.strategies import STRATEGIES, IncompatibleSpaceError, VectorStrategy

NAMES = STRATEGIES.names()
#: The tiny Llama's final RMSNorm weight: the vector searched by vector-only strategies.
NORM = "model.norm.weight"


def space_options(cls) -> tuple[str, dict]:
    """A seeded space over all weights if the strategy takes one, else the norm weight."""
    return ("full", {}) if SEEDED in cls.supported_kinds else ("tensor", {"parameter": NORM})


def bound_space(cls, model):
    name, options = space_options(cls)
    space = FullWeights() if name == "full" else TensorSpace(TensorConfig(**options))
    space.bind(model)
    return space


def run(strategy, reward, iterations: int) -> list[list]:
    """Runs whole iterations (all their ask/tell rounds); returns every round's candidates."""
    asked = []

    def evaluate(candidates):
        asked.append(candidates)
        values = evaluate_candidates(strategy.space, candidates, lambda: reward(strategy.space))
        return Scores(np.asarray(values, dtype=np.float64))

    for _ in range(iterations):
        run_iteration(strategy, evaluate)
    return asked


def snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def through_checkpoint(state):
    """What a checkpoint gives back: torch.save, then torch.load(weights_only=True)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("name", NAMES)
def test_every_strategy_runs_ask_tell_on_a_tiny_model(name, model):
    """Rewards are the tiny model's logit of one token after a fixed prompt."""
    cls = STRATEGIES.get(name)
    strategy = cls(bound_space(cls, model), cls.test_config(), seed=0)
    prompt = torch.tensor([[1, 20, 21, 22]])

    def logit(space):
        with torch.no_grad():
            return float(model(prompt).logits[0, -1, 40])

    before = snapshot(model)
    run(strategy, logit, iterations=2)
    assert strategy.generation == 2
    assert any(not torch.equal(p, before[n]) for n, p in model.named_parameters())


@pytest.mark.parametrize("name", NAMES)
def test_every_strategy_trains_and_resumes_through_the_runner(name, tokenizer, tmp_path):
    """A run stopped at iteration 2 and resumed to 3 logs and ends like an unbroken run."""
    cls = STRATEGIES.get(name)
    space, options = space_options(cls)
    settings = {
        "tokenizer": tokenizer,
        "task": make_char_task(),
        "strategy": name,
        "strategy_options": dataclasses.asdict(cls.test_config()),
        "space": space,
        "space_options": options,
        "batch_size": 4,
        "max_new_tokens": 8,
        "progress": False,
        "tensorboard": False,
    }
    whole = zo_llm.train(model=tiny_model(len(tokenizer)), iterations=3, **settings)
    zo_llm.train(model=tiny_model(len(tokenizer)), iterations=2, out=str(tmp_path), **settings)
    resumed = zo_llm.resume(
        tmp_path, 3, model=tiny_model(len(tokenizer)), tokenizer=tokenizer, task=make_char_task()
    )
    assert run_numbers(zo_llm.read_metrics(tmp_path)) == run_numbers(whole.records)
    for (n, p), q in zip(resumed.model.named_parameters(), whole.model.parameters()):
        assert torch.equal(p, q), n
    assert any(
        not torch.equal(p, q)
        for p, q in zip(whole.model.parameters(), tiny_model(len(tokenizer)).parameters())
    )


#: The first registered strategy of each kind (seeded, vector): both paths through a space.
FIRST_OF_KIND: dict[frozenset, str] = {}
for _name in NAMES:
    FIRST_OF_KIND.setdefault(STRATEGIES.get(_name).supported_kinds, _name)
ONE_OF_EACH_KIND = list(FIRST_OF_KIND.values())


@pytest.mark.parametrize("space", ["lora", "svd"])
@pytest.mark.parametrize("name", ONE_OF_EACH_KIND)
def test_resume_on_lora_and_svd_equals_an_unbroken_run(name, space, tokenizer, tmp_path):
    """Stopped at 2 and resumed to 3: the same metrics.jsonl, search point and final/ files."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    settings = {
        "tokenizer": tokenizer,
        "task": make_char_task("+"),
        "strategy": name,
        "strategy_options": dataclasses.asdict(STRATEGIES.get(name).test_config()),
        "space": space,
        "space_options": dataclasses.asdict(PARAMETRIZATIONS.get(space).test_config()),
        "batch_size": 4,
        "max_new_tokens": 8,
        "eval_every": 1,
        "checkpoint_every": 1,
        "progress": False,
        "tensorboard": False,
    }
    whole_dir, split_dir = tmp_path / "whole", tmp_path / "split"
    whole = zo_llm.train(
        model=tiny_model(len(tokenizer)), iterations=3, out=str(whole_dir), **settings
    )
    zo_llm.train(model=tiny_model(len(tokenizer)), iterations=2, out=str(split_dir), **settings)
    resumed = zo_llm.resume(
        split_dir,
        3,
        model=tiny_model(len(tokenizer)),
        tokenizer=tokenizer,
        task=make_char_task("+"),
    )
    assert run_numbers(zo_llm.read_metrics(split_dir)) == run_numbers(whole.records)
    rewards = {r["reward_mean"] for r in whole.records if r["type"] == "train"}
    assert len(rewards) > 1  # rewards vary, so equality means something
    assert torch.equal(resumed.space.get_vector(), whole.space.get_vector())
    finals = [
        AutoModelForCausalLM.from_pretrained(d / "final").state_dict()
        for d in (whole_dir, split_dir)
    ]
    assert finals[0].keys() == finals[1].keys()
    for key in finals[0]:
        assert torch.equal(finals[0][key], finals[1][key]), key
    start = tiny_model(len(tokenizer)).state_dict()
    assert any(not torch.equal(finals[0][k], start[k]) for k in start)  # training moved it
    adapters = sorted(whole_dir.glob("final/adapter/*.safetensors"))
    assert (space == "lora") == bool(adapters)
    for path in adapters:
        ours, theirs = load_file(path), load_file(split_dir / path.relative_to(whole_dir))
        assert ours.keys() == theirs.keys()
        assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def quadratic(space) -> float:
    """A smooth reward over any space's vector: highest at 0.3 in every coordinate."""
    return -float(((space.get_vector().double() - 0.3) ** 2).sum())


def tensor_space(dim: int = 6) -> TensorSpace:
    return TensorSpace(x0=torch.linspace(-1, 1, dim, dtype=torch.float64))


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip_mid_run_continues_identically(name):
    cls = STRATEGIES.get(name)
    whole = cls(tensor_space(), cls.test_config(), seed=5)
    whole_asked = run(whole, quadratic, iterations=6)

    first = cls(tensor_space(), cls.test_config(), seed=5)
    run(first, quadratic, iterations=3)
    state = through_checkpoint({"strategy": first.state_dict(), "space": first.space.state_dict()})
    second = cls(tensor_space(), cls.test_config(), seed=0)  # the seed comes from the state
    second.load_state_dict(state["strategy"])
    second.space.load_state_dict(state["space"])
    asked = run(second, quadratic, iterations=3)

    assert asked == whole_asked[-len(asked) :]
    assert torch.equal(second.space.get_vector(), whole.space.get_vector())
    assert not torch.equal(whole.space.get_vector(), tensor_space().get_vector())


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_numbers_other_seed_other_numbers(name):
    cls = STRATEGIES.get(name)
    a, b, c = (cls(tensor_space(), cls.test_config(), seed=s) for s in (1, 1, 2))
    assert run(a, quadratic, 2) == run(b, quadratic, 2)
    assert torch.equal(a.space.get_vector(), b.space.get_vector())
    assert (
        run(c, quadratic, 1)[0]
        != run(cls(tensor_space(), cls.test_config(), seed=1), quadratic, 1)[0]
    )


@pytest.mark.parametrize("name", NAMES)
def test_asking_twice_proposes_the_same_candidates(name):
    cls = STRATEGIES.get(name)
    strategy = cls(tensor_space(), cls.test_config(), seed=0)
    assert strategy.ask() == strategy.ask()


@pytest.mark.parametrize("name", NAMES)
def test_non_finite_rewards_never_win_and_all_invalid_moves_nothing(name):
    cls = STRATEGIES.get(name)
    strategy = cls(tensor_space(), cls.test_config(), seed=0)
    start = strategy.space.get_vector()
    candidates = strategy.ask()
    info = strategy.tell(candidates, [float("nan")] * len(candidates))
    assert info["skipped"] and info["invalid"] == len(candidates)
    assert torch.equal(strategy.space.get_vector(), start)
    candidates = strategy.ask()
    rewards = evaluate_candidates(strategy.space, candidates, lambda: quadratic(strategy.space))
    rewards[0] = float("inf")
    assert strategy.tell(candidates, rewards)["invalid"] == 1
    assert np.isfinite(strategy.space.get_vector().numpy()).all()


@pytest.mark.parametrize("name", NAMES)
def test_ask_moves_nothing_and_tell_applies_the_step_it_returns(name):
    """Replaying tell's step on a copy of the point before tell gives the same point."""
    cls = STRATEGIES.get(name)
    strategy = cls(tensor_space(), cls.test_config(), seed=0)
    while strategy.generation < 2:
        before = strategy.space.get_vector()
        candidates = strategy.ask()
        assert torch.equal(strategy.space.get_vector(), before)
        rewards = evaluate_candidates(strategy.space, candidates, lambda: quadratic(strategy.space))
        info = strategy.tell(candidates, rewards)
        replica = TensorSpace(x0=before)
        if info["step"] is not None:
            info["step"].apply_to(replica)
        assert torch.equal(strategy.space.get_vector(), replica.get_vector())


@pytest.mark.parametrize("default", [False, True], ids=["test_config", "default_config"])
@pytest.mark.parametrize("name", NAMES)
def test_evaluations_per_iteration_is_what_one_iteration_asks(name, default):
    """Known before the first ask (vector strategies size their population from the dim)."""
    cls = STRATEGIES.get(name)
    config = cls.config_class() if default else cls.test_config()
    strategy = cls(tensor_space(32), config, seed=0)
    expected = strategy.evaluations_per_iteration()
    for _ in range(2):
        result = run_iteration(
            strategy, lambda candidates: Scores(np.linspace(0.0, 1.0, len(candidates)))
        )
        assert result.evaluations == expected == strategy.evaluations_per_iteration()


# --- pairings and sizes -------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_a_space_of_no_supported_kind_is_refused_naming_both_sides(name, model):
    """The message names the spaces the strategy searches and the strategies the space takes."""
    cls = STRATEGIES.get(name)
    if SEEDED in cls.supported_kinds:
        space = TensorSpace(x0=[0.0])
        space.kinds = frozenset({"vector"})  # a vector-only tensor space
        label = "'tensor'"
    else:
        space, label = FullWeights(), "'full'"
    fitting = ", ".join(
        p for p in PARAMETRIZATIONS.names() if PARAMETRIZATIONS.get(p).kinds & cls.supported_kinds
    )
    searchers = ", ".join(s for s in NAMES if STRATEGIES.get(s).supported_kinds & space.kinds)
    with pytest.raises(IncompatibleSpaceError) as error:
        cls(space, cls.test_config())
    message = str(error.value)
    assert f"spaces that work with '{name}': {fitting}" in message
    assert f"strategies that work with {label}: {searchers}" in message


def test_too_large_for_cma_names_diagonal_the_space_options_and_the_alternatives():
    huge = TensorSpace(TensorConfig(parameter=NORM))
    huge._vector = torch.empty(100_000_000, dtype=torch.float32)  # a 100M-dim vector space
    with pytest.raises(IncompatibleSpaceError) as error:
        STRATEGIES.get("cma-es")(huge)
    message = str(error.value)
    assert "at most 5000 dimensions" in message and "'tensor' has dim=100000000" in message
    assert "use diagonal=True (sep-CMA, up to 1000000 dimensions)" in message
    assert "name a smaller parameter (parameter=NAME; now 'model.norm.weight')" in message
    assert "spaces that work with 'cma-es': lora, svd, tensor" in message
    assert "any size with: es, essam, mezo" in message
    with pytest.raises(IncompatibleSpaceError, match="at most 1000000"):
        STRATEGIES.get("cma-es")(huge, zo_llm.CMAESConfig(diagonal=True))


@pytest.mark.parametrize(
    ("space", "hint"),
    [
        ("lora", "lower rank (now 2) or adapt fewer target_modules (now q_proj,v_proj)"),
        ("svd", "lower rank (now 2), or a small fraction (e.g. 0.1), or fewer target_modules"),
        ("tensor", "name a smaller parameter (parameter=NAME; now 'model.norm.weight')"),
    ],
)
def test_too_large_names_the_options_that_shrink_each_space(space, hint, model, monkeypatch):
    bound = PARAMETRIZATIONS.get(space)(PARAMETRIZATIONS.get(space).test_config())
    bound.bind(model)
    strategy = STRATEGIES.get("xnes")(bound, seed=0)
    monkeypatch.setattr(STRATEGIES.get("xnes"), "full_max_dim", 1)
    with pytest.raises(IncompatibleSpaceError) as error:
        strategy.check_dim()
    message = str(error.value)
    assert f"'{space}' has dim={bound.dim}" in message and hint in message
    assert "search seeded spaces of any size with: es, essam, mezo" in message


def test_the_full_space_says_it_is_not_a_vector_space():
    assert "full is not a vector space" in FullWeights().size_hint()


def test_dim_is_checked_again_once_the_space_is_bound(model, monkeypatch):
    """A strategy built before its space is bound checks the size on its first ask."""
    space = TensorSpace(TensorConfig(parameter=NORM))
    strategy = STRATEGIES.get("xnes")(space, seed=0)
    monkeypatch.setattr(STRATEGIES.get("xnes"), "full_max_dim", 16)  # the norm weight has 32
    space.bind(model)
    with pytest.raises(IncompatibleSpaceError, match="at most 16 dimensions"):
        strategy.ask()


def test_vector_strategies_start_from_the_bound_space(model):
    for name in NAMES:
        cls = STRATEGIES.get(name)
        if issubclass(cls, VectorStrategy):
            space = TensorSpace(TensorConfig(parameter=NORM))
            strategy = cls(space, cls.test_config(), seed=0)
            space.bind(model)
            candidates = strategy.ask()
            assert candidates[0].vector.shape == (32,)
