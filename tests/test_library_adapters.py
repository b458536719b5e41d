"""The library adapters against the libraries' own runs (pycma, evotorch); config validation."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from zo_llm.parametrizations import TensorSpace
from zo_llm.strategies import (
    CMAES,
    STRATEGIES,
    CEMConfig,
    CMAESConfig,
    ESSAMConfig,
    MeZOConfig,
    PGPEConfig,
    SNESConfig,
    VectorStrategy,
    XNESConfig,
)


def rewards_of(candidates, space) -> list[float]:
    values = []
    for candidate in candidates:
        with candidate.applied_to(space):
            values.append(float(weighted_sphere(space.get_vector())))
    return values


def weighted_sphere(x: torch.Tensor) -> torch.Tensor:
    """-sum_i i (x_i - 1)^2 over the last axis (batched for evotorch's Problem)."""
    return -(((x - 1.0) ** 2) * torch.arange(1, x.shape[-1] + 1, dtype=x.dtype)).sum(-1)


# --- CMA-ES against pycma -----------------------------------------------------------


def test_cma_es_reproduces_pycmas_own_trajectory():
    import cma

    space = TensorSpace(x0=torch.zeros(5, dtype=torch.float64))
    strategy = CMAES(space, CMAESConfig(population=6, sigma=0.5), seed=3)
    options = {"seed": strategy.library_seed, "popsize": 6, "CMA_diagonal": False}
    saved = np.random.get_state()  # pycma's own run seeds numpy's global generator
    try:
        reference = cma.CMAEvolutionStrategy(
            np.zeros(5), 0.5, options | {"verbose": -9, "verb_log": 0, "verb_disp": 0}
        )
        for _ in range(40):
            candidates = strategy.ask()
            strategy.tell(candidates, rewards_of(candidates, space))
            solutions = reference.ask()
            values = [-float(weighted_sphere(torch.from_numpy(x))) for x in solutions]
            reference.tell(solutions, values)
            assert np.array_equal(torch.stack([c.vector for c in candidates]).numpy(), solutions)
            assert np.array_equal(space.get_vector().numpy(), reference.mean)
            assert strategy._es.sigma == reference.sigma
    finally:
        np.random.set_state(saved)
    assert float(weighted_sphere(space.get_vector())) > -1e-2  # from -15 at the start


def test_cma_es_leaves_numpys_global_generator_alone():
    before = np.random.get_state()[1].copy()
    strategy = CMAES(TensorSpace(x0=[0.0] * 4), CMAESConfig(population=6), seed=0)
    for _ in range(3):
        candidates = strategy.ask()
        strategy.tell(candidates, rewards_of(candidates, strategy.space))
    assert np.array_equal(np.random.get_state()[1], before)


# --- evotorch's searchers against evotorch's own classes ------------------------------------


@pytest.mark.parametrize(
    ("name", "config", "searcher", "options"),
    [
        ("snes", SNESConfig(sigma=0.5), "SNES", {}),
        ("xnes", XNESConfig(sigma=0.5), "XNES", {}),
        (
            "pgpe",
            PGPEConfig(sigma=0.5, population=10),
            "PGPE",
            {"popsize": 10, "center_learning_rate": 0.05, "stdev_learning_rate": 0.1},
        ),
        (
            "cem",
            CEMConfig(sigma=0.5, population=10, stdev_max_change=0.1),
            "CEM",
            {"popsize": 10, "parenthood_ratio": 0.5, "stdev_max_change": 0.1},
        ),
    ],
)
def test_evotorch_adapters_reproduce_evotorchs_searchers(name, config, searcher, options):
    """Same objective and seed: the same means (bit for bit, except ClipUp's rounding in PGPE)."""
    import evotorch
    import evotorch.algorithms

    space = TensorSpace(x0=torch.zeros(5, dtype=torch.float64))
    strategy = STRATEGIES.get(name)(space, config, seed=1)
    problem = evotorch.Problem(
        "max",
        weighted_sphere,
        solution_length=5,
        dtype=torch.float64,
        seed=strategy.library_seed,
        vectorized=True,
        initial_bounds=(-1.0, 1.0),
    )
    center = torch.zeros(5, dtype=torch.float64)
    reference = getattr(evotorch.algorithms, searcher)(
        problem, stdev_init=0.5, center_init=center, **options
    )
    for _ in range(20):
        candidates = strategy.ask()
        strategy.tell(candidates, rewards_of(candidates, space))
        reference.step()
    reference.step()  # evotorch applies a population's update at the start of the next step
    torch.testing.assert_close(space.get_vector(), reference.status["center"], rtol=0, atol=1e-12)


# --- config validation --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "options", "message"),
    [
        (ESSAMConfig, {"rho": 0.0}, "rho=0.0 must be positive"),
        (ESSAMConfig, {"grad_norm": "approx"}, "grad_norm='approx'.*exact, estimate, none"),
        (ESSAMConfig, {"population": 3, "antithetic": True}, "population=3 .* even"),
        (MeZOConfig, {"q": 0}, "q=0"),
        (MeZOConfig, {"eps": -1.0}, "eps=-1.0"),
        (MeZOConfig, {"momentum": 1.0}, r"momentum=1.0 must be in \[0, 1\)"),
        (MeZOConfig, {"momentum_window": 0}, "momentum_window=0"),
        (CMAESConfig, {"population": 1}, "population=1"),
        (CMAESConfig, {"sigma": 0.0}, "sigma=0.0"),
        (CMAESConfig, {"options": {"popsize": 8}}, "options\\['popsize'\\].*population option"),
        (CMAESConfig, {"options": {"seed": 8}}, "run seed"),
        (CMAESConfig, {"options": {"tolfunn": 1e-9}}, "no option 'tolfunn'"),
        (SNESConfig, {"ranking": "best"}, "ranking='best'.*nes, centered"),
        (XNESConfig, {"stdev_lr": -0.1}, "stdev_lr=-0.1"),
        (PGPEConfig, {"population": 7}, "population=7 must be even.*use 8"),
        (PGPEConfig, {"momentum": 1.5}, "momentum=1.5"),
        (CEMConfig, {"parenthood_ratio": 0.01}, "parenthood_ratio=0.01.*at least one"),
        (CEMConfig, {"population": 1}, "population=1"),
    ],
)
def test_bad_config_names_the_value(config, options, message):
    with pytest.raises(ValueError, match=message):
        config(**options)


# --- resuming between ask and tell ------------------------------------------------------------


@pytest.mark.parametrize(
    "name", [n for n in STRATEGIES.names() if issubclass(STRATEGIES.get(n), VectorStrategy)]
)
def test_vector_strategy_state_saved_between_ask_and_tell(name):
    """The pending population survives a checkpoint (pycma's is regenerated by replay)."""
    cls = STRATEGIES.get(name)

    def start() -> TensorSpace:
        return TensorSpace(x0=torch.linspace(-1, 1, 6, dtype=torch.float64))

    strategy = cls(start(), cls.test_config(), seed=2)
    for _ in range(3):
        candidates = strategy.ask()
        strategy.tell(candidates, rewards_of(candidates, strategy.space))
    pending = strategy.ask()
    buffer = io.BytesIO()
    torch.save({"strategy": strategy.state_dict(), "space": strategy.space.state_dict()}, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    restored = cls(start(), cls.test_config(), seed=0)
    restored.load_state_dict(state["strategy"])
    restored.space.load_state_dict(state["space"])
    assert restored.ask() == pending
    for s in (strategy, restored):
        s.tell(pending, rewards_of(pending, s.space))
    assert restored.ask() == strategy.ask()
    assert torch.equal(restored.space.get_vector(), strategy.space.get_vector())


def test_cma_es_refuses_a_population_pycma_cannot_run():
    from zo_llm.strategies import CMAESConfig

    with pytest.raises(ValueError, match="population=2 is too small; use 3 or more"):
        CMAESConfig(population=2)
    assert CMAESConfig(population=3).population == 3
