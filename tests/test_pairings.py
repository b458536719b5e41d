"""Every (strategy, space) pairing, from the registries: the allowed ones train, the others refuse.

A pairing is allowed when the strategy searches a kind the space has and the
space (at its ``test_config()``) is within the strategy's ``max_dim``; new
registry entries are covered automatically.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
from conftest import make_char_task, tiny_model

import zo_llm
from zo_llm.parametrizations import PARAMETRIZATIONS
from zo_llm.strategies import STRATEGIES, IncompatibleSpaceError

PAIRS = [(s, p) for s in STRATEGIES.names() for p in PARAMETRIZATIONS.names()]


def kinds_fit(strategy: str, space: str) -> bool:
    return bool(STRATEGIES.get(strategy).supported_kinds & PARAMETRIZATIONS.get(space).kinds)


@pytest.mark.parametrize(("strategy", "space"), PAIRS)
def test_every_allowed_pairing_trains_two_iterations_and_others_refuse(strategy, space, tokenizer):
    strategy_cls, space_cls = STRATEGIES.get(strategy), PARAMETRIZATIONS.get(space)
    model = tiny_model(len(tokenizer))
    if not kinds_fit(strategy, space):
        bound = space_cls(space_cls.test_config())
        bound.bind(model)
        fitting = [p for p in PARAMETRIZATIONS.names() if kinds_fit(strategy, p)]
        with pytest.raises(IncompatibleSpaceError, match=", ".join(fitting)):
            strategy_cls(bound, strategy_cls.test_config())
        return
    experiment = zo_llm.train(
        model=model,
        tokenizer=tokenizer,
        task=make_char_task(size=4),
        strategy=strategy,
        strategy_options=dataclasses.asdict(strategy_cls.test_config()),
        space=space,
        space_options=dataclasses.asdict(space_cls.test_config()),
        iterations=2,
        batch_size=2,
        max_new_tokens=3,
        eval_every=0,
        eval_size=2,
        progress=False,
        tensorboard=False,
    )
    limit = experiment.strategy.max_dim()
    assert limit is None or experiment.space.dim <= limit
    assert experiment.strategy.generation == 2
    assert [r["iteration"] for r in experiment.records if r["type"] == "train"] == [1, 2]


def test_list_shows_the_matrix(capsys):
    from zo_llm.cli import main

    assert main(["list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    for strategy in STRATEGIES.names():
        spaces = [p for p in PARAMETRIZATIONS.names() if kinds_fit(strategy, p)]
        assert listing["strategies"][strategy]["spaces"] == spaces
        for space in spaces:
            assert strategy in listing["parametrizations"][space]["strategies"]
