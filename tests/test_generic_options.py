"""The generic options population, sigma and lr: one meaning, mapped onto each strategy's names."""

from __future__ import annotations

import dataclasses

import pytest

from zo_llm.strategies import STRATEGIES
from zo_llm.strategies.base import GENERIC_OPTIONS

GENERIC_VALUES = {"population": 4, "sigma": 0.1, "lr": 0.1}


def test_mezo_takes_population_as_2q_and_sigma_as_eps():
    mezo = STRATEGIES.get("mezo")
    translated = mezo.translate_options({"population": "4", "sigma": "1e-3", "lr": 0.1})
    assert translated == {"q": 2, "eps": "1e-3", "lr": 0.1}
    assert mezo.translate_options({"population": 4, "q": "2"}) == {"q": 2}  # the same value


def test_mezo_refuses_an_odd_population():
    with pytest.raises(ValueError) as error:
        STRATEGIES.get("mezo").translate_options({"population": 5})
    assert str(error.value) == (
        "mezo evaluates 2q members (+eps and -eps per seed): population must be even; "
        "got 5 (q=2 is population 4)"
    )


def test_a_generic_option_without_equivalent_is_refused_naming_the_strategys_options():
    with pytest.raises(ValueError) as error:
        STRATEGIES.get("cem").translate_options({"lr": 0.1})
    assert str(error.value) == (
        "strategy 'cem' has no equivalent of lr (the generic --lr); its options: "
        "parenthood_ratio, population, shaping, sigma, stdev_max_change"
    )
    with pytest.raises(ValueError, match="strategy 'cma-es' has no equivalent of lr"):
        STRATEGIES.get("cma-es").translate_options({"lr": 0.1})


def test_a_generic_option_and_its_equivalent_at_other_values_are_refused():
    with pytest.raises(ValueError) as error:
        STRATEGIES.get("mezo").translate_options({"population": 4, "q": 3})
    message = str(error.value)
    assert "population=4" in message and "q=3" in message
    with pytest.raises(ValueError, match="lr=0.1 .* center_lr=0.2"):
        STRATEGIES.get("snes").translate_options({"lr": 0.1, "center_lr": 0.2})


def test_fields_of_the_generic_names_pass_through_unchanged():
    options = {"population": "8", "sigma": 0.01, "lr": "1e-3", "antithetic": True}
    translated = STRATEGIES.get("es").translate_options(options)
    assert translated == options and translated is not options
    assert STRATEGIES.get("pgpe").translate_options({"lr": 0.2}) == {"center_lr": 0.2}


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_every_strategys_translation_builds_its_config(name):
    """Each generic option is a config field or maps onto one; the values make a valid config."""
    cls = STRATEGIES.get(name)
    fields = {field.name for field in dataclasses.fields(cls.config_class)}
    assert set(cls.equivalents) <= set(GENERIC_OPTIONS) - fields
    assert {equivalent.option for equivalent in cls.equivalents.values()} <= fields
    given = {k: v for k, v in GENERIC_VALUES.items() if k in fields or k in cls.equivalents}
    cls.config_class(**cls.translate_options(given))
