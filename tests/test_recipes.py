"""The shipped recipes: found by name, valid configs, and what zo-llm list shows of them."""

from __future__ import annotations

from pathlib import Path

import pytest

from zo_llm.cli.train import toml_layer
from zo_llm.config import resolve
from zo_llm.recipes import FOLDER, describe, names, recipe_path


def test_both_smollm2_recipes_ship():
    assert {"smollm2-135m-cpu", "smollm2-135m-es-cpu"} <= set(names())


@pytest.mark.parametrize("name", names())
def test_every_recipe_is_a_valid_run_config_with_a_summary(name):
    config = resolve(toml_layer(recipe_path(name)))
    assert config.model.name == "smollm2-135m"
    assert config.task.name in ("arithmetic", "reasoning-gym:chain_sum")
    assert describe(name)


def test_the_reasoning_gym_recipe_asks_few_shot_sums_of_two_2_digit_terms():
    config = resolve(toml_layer(recipe_path("smollm2-135m-sums-cpu")))
    options = config.task.options
    assert (options.dataset, options.answer_format, options.shots, options.chat) == (
        "chain_sum", "line", 3, False
    )  # fmt: skip
    assert dict(options.settings) == {"min_terms": 2, "max_terms": 2, "min_digits": 2,
                                      "max_digits": 2}  # fmt: skip


def test_the_replaced_cma_es_recipe_stays_a_valid_run_config():
    path = Path(__file__).parents[1] / "benchmarks" / "configs" / "smollm2-cma-es-svd.toml"
    config = resolve(toml_layer(path))  # the int8-base and bench measurements ran it
    assert (config.strategy.name, config.space.name, config.task.name) == (
        "cma-es",
        "svd",
        "arithmetic",
    )


def test_es_recipe_searches_all_the_weights():
    config = resolve(toml_layer(recipe_path("smollm2-135m-es-cpu")))
    assert config.strategy.name == "es" and config.space.name in ("full", "lowrank")


def test_a_recipe_is_found_by_name_by_file_name_and_by_path(tmp_path):
    shipped = FOLDER / "smollm2-135m-cpu.toml"
    assert recipe_path("smollm2-135m-cpu") == shipped
    assert recipe_path("smollm2-135m-cpu.toml") == shipped
    own = tmp_path / "smollm2-135m-cpu.toml"
    own.write_text('model = "zo-tiny"\n')
    assert recipe_path(own) == own  # a file that exists wins over the shipped name


def test_an_unknown_recipe_names_the_shipped_ones(tmp_path):
    with pytest.raises(FileNotFoundError, match="shipped recipes: .*smollm2-135m-cpu"):
        recipe_path("nope")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        recipe_path(tmp_path / "missing.toml")
