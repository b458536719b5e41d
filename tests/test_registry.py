"""The generic registry and the three registries built on it."""

from __future__ import annotations

import pytest

import zo_llm
from zo_llm.registry import Registry, UnknownNameError


def test_register_get_and_list():
    registry: Registry[type] = Registry("widget")

    @registry.register("b_one")
    class B: ...

    registry.register("a-two")(int)
    assert registry.get("b_one") is B
    assert registry.names() == ["a-two", "b_one"] == list(registry)
    assert "b_one" in registry and len(registry) == 2


def test_unknown_name_lists_known_names():
    with pytest.raises(UnknownNameError, match="unknown strategy 'nope'; known strategy names: "):
        zo_llm.STRATEGIES.get("nope")
    with pytest.raises(
        UnknownNameError, match="known parametrization names: full, lora, lowrank, svd, tensor"
    ):
        zo_llm.PARAMETRIZATIONS.get("nope")
    with pytest.raises(ValueError):  # also a ValueError, for callers that catch those
        zo_llm.TASKS.get("nope")


def test_duplicate_and_invalid_names_are_refused():
    registry: Registry[type] = Registry("widget")
    registry.register("x")(int)
    with pytest.raises(ValueError, match="already registered"):
        registry.register("x")(float)
    with pytest.raises(ValueError, match="not valid"):
        registry.register("Bad Name")


def test_builtin_entries_are_registered():
    assert "es" in zo_llm.STRATEGIES
    assert "full" in zo_llm.PARAMETRIZATIONS
    assert "countdown" in zo_llm.TASKS


def test_user_can_register_a_task_and_train_with_it_by_name(tmp_path, model, tokenizer):
    from conftest import make_char_task

    task_class = type(make_char_task())
    zo_llm.TASKS.register("test_char_task")(task_class)
    try:
        experiment = zo_llm.train(
            model=model,
            tokenizer=tokenizer,
            task="test_char_task",
            iterations=1,
            batch_size=2,
            max_new_tokens=4,
            strategy_options={"population": 2},
            progress=False,
        )
        assert isinstance(experiment.task, task_class)
    finally:
        zo_llm.TASKS._entries.pop("test_char_task")
