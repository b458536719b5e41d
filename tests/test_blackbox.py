"""zo_llm.maximize, and every strategy on functions with known optima.

The functions, their budgets (objective evaluations) and targets, and the
settings per strategy live in :mod:`zo_llm.objectives`: tuned once on seeds
0-4, with targets that leave a margin of about 2x over the worst of those
seeds (see the comment next to each problem there). Here seed 0 must reach them.
"""

from __future__ import annotations

import math

import pytest
import torch

import zo_llm
from zo_llm import objectives
from zo_llm.objectives import ES_SMOOTH, ESSAM_SMOOTH, PROBLEMS, SETTINGS, sphere
from zo_llm.strategies import STRATEGIES


def test_objectives_have_their_stated_optima_and_start_values():
    for problem, optimum, start in [
        ("sphere", objectives.SHIFT, -11.67),
        ("rosenbrock", torch.ones(2, dtype=torch.float64), -1.0),
        ("noisy_quadratic", objectives.CENTER, -22.4),
    ]:
        spec = PROBLEMS[problem]
        assert spec.monitor(optimum) == 0.0 and spec.x0().shape == (spec.dim,)
        assert spec.monitor(spec.x0()) == pytest.approx(start, abs=0.01), problem
        assert spec.monitor(optimum + 0.01) < 0.0

    def draws(seed: int) -> list[float]:
        noisy = objectives.noisy_quadratic(seed)
        return [noisy(objectives.CENTER) for _ in range(200)]

    values = draws(3)
    assert values == draws(3) and values != draws(4)  # seeded, fresh noise at every call
    assert abs(sum(values) / 200) < 0.03 and 0.07 < torch.tensor(values).std() < 0.13


def test_every_strategy_has_settings_for_every_problem():
    """A new strategy must state how it reaches the targets."""
    for problem in PROBLEMS:
        assert sorted(SETTINGS[problem]) == STRATEGIES.names(), problem


@pytest.mark.parametrize("problem", list(PROBLEMS))
@pytest.mark.parametrize("name", STRATEGIES.names())
def test_strategy_reaches_the_target_within_the_budget(name, problem):
    spec = PROBLEMS[problem]
    result = zo_llm.maximize(
        spec.objective(0),
        spec.x0(),
        strategy=name,
        strategy_options=SETTINGS[problem][name],
        max_evaluations=spec.budget,
        target=spec.target,
        monitor=spec.monitor,
        seed=0,
    )
    assert result.evaluations_to_target is not None, (
        f"{name} reached {result.history[-1]['monitor']:.3g} on {problem}, target {spec.target}"
    )
    assert result.evaluations_to_target <= spec.budget
    assert spec.monitor(result.x) >= spec.target


# --- the maximize loop ----------------------------------------------------------


def test_maximize_reports_history_best_and_budget():
    result = zo_llm.maximize(
        sphere, [0.0] * 10, strategy="es", strategy_options=ES_SMOOTH, max_evaluations=100
    )
    assert result.evaluations == 100 and len(result.history) == 5  # 20 members per iteration
    assert [h["evaluations"] for h in result.history] == [20, 40, 60, 80, 100]
    assert result.best_reward == max(h["reward_max"] for h in result.history)
    assert result.best_reward == sphere(result.best_x)
    assert result.reward == sphere(result.x) and result.x.dtype == torch.float64
    assert result.evaluations_to_target is None and result.seconds > 0


def test_maximize_is_deterministic_and_leaves_x0_alone():
    x0 = torch.zeros(10, dtype=torch.float64)
    runs = [zo_llm.maximize(sphere, x0, strategy="cma-es", iterations=5, seed=7) for _ in range(2)]
    assert torch.equal(runs[0].x, runs[1].x) and runs[0].history == runs[1].history
    assert torch.equal(x0, torch.zeros(10, dtype=torch.float64))


def test_an_iteration_with_two_rounds_counts_both():
    result = zo_llm.maximize(
        sphere, [0.0] * 10, strategy="essam", strategy_options=ESSAM_SMOOTH, iterations=2
    )
    assert result.evaluations == 80


def test_target_on_the_best_candidate_without_monitor():
    result = zo_llm.maximize(
        sphere,
        [0.0] * 10,
        strategy="cma-es",
        strategy_options={"sigma": 0.5},
        max_evaluations=5000,
        target=-1.0,
    )
    assert result.best_reward >= -1.0
    assert result.evaluations_to_target <= result.evaluations < 5000


def test_failing_objective_values_are_survived():
    def flaky(x: torch.Tensor) -> float:
        return math.nan if float(x[0]) > 0.5 else sphere(x)

    result = zo_llm.maximize(flaky, [0.0] * 10, strategy="snes", iterations=30)
    assert torch.isfinite(result.x).all()
    assert sphere(result.x) > sphere(torch.zeros(10, dtype=torch.float64)) + 5


def test_maximize_needs_a_bound_and_a_known_strategy():
    with pytest.raises(ValueError, match="iterations= or max_evaluations="):
        zo_llm.maximize(sphere, [0.0])
    with pytest.raises(ValueError, match="unknown strategy 'nope'"):
        zo_llm.maximize(sphere, [0.0], strategy="nope", iterations=1)
    with pytest.raises(ValueError, match="has no option 'sigmaa'"):
        zo_llm.maximize(sphere, [0.0], strategy_options={"sigmaa": 1.0}, iterations=1)
