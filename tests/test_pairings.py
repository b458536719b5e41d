"""Every (strategy, space) pairing from the registries, through ``zo-llm train`` on ``zo-tiny``.

The README's claim, checked as a user would: each allowed pairing trains two
iterations with ``zo-llm train --model zo-tiny`` (in-process, through
``zo_llm.cli.main``), ``final/`` loads with plain transformers and scores what
the run's last evaluation logged, and a ``final/adapter`` loads with peft; each
other pairing stops before training with exit code 2 and a message naming what
works. A pairing is allowed when the strategy searches a kind the space has;
the space's ``test_config()`` (for ``lora`` with ``rank=1``: 2,048 dims on
zo-tiny, the README's example) keeps it within the strategy's ``max_dim``, the
strategy's (with at most 4 members) keeps the run short. New registry entries are covered
automatically.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from zo_llm.cli import main
from zo_llm.logging import read_metrics
from zo_llm.models.aliases import ALIASES
from zo_llm.parametrizations import PARAMETRIZATIONS, LoraSpace
from zo_llm.parametrizations.lora import ADAPTER_DIR
from zo_llm.strategies import STRATEGIES

MODEL = "zo-tiny"
TASK = "countdown-easy"
EVAL_SIZE, NEW_TOKENS = 4, 32  # 32 tokens: zo-tiny's answers end at about 30
POPULATION = 4
FAST = [
    "--iterations", "2", "--batch-size", "1", "--eval-size", str(EVAL_SIZE),
    "--max-new-tokens", str(NEW_TOKENS), "--eval-every", "0", "--threads", "1",
    "--no-progress", "--no-tensorboard",
]  # fmt: skip
#: Space options beyond ``test_config()`` (made for the tests' smaller Llama) that zo-tiny needs.
ZO_TINY_SPACE_OPTIONS = {"lora": ["--space-opt", "rank=1"]}
PAIRS = [(s, p) for s in STRATEGIES.names() for p in PARAMETRIZATIONS.names()]
PROMPT = torch.tensor([[1, 20, 21, 22, 23]])


def kinds_fit(strategy: str, space: str) -> bool:
    return bool(STRATEGIES.get(strategy).supported_kinds & PARAMETRIZATIONS.get(space).kinds)


ALLOWED = [pair for pair in PAIRS if kinds_fit(*pair)]
REFUSED = [pair for pair in PAIRS if not kinds_fit(*pair)]


def cli_options(flag: str, config) -> list[str]:
    """``flag KEY=VALUE`` for each field of ``config`` that differs from its default."""
    defaults = type(config)()
    argv = []
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if value != getattr(defaults, field.name):
            shown = ",".join(map(str, value)) if isinstance(value, tuple) else value
            argv += [flag, f"{field.name}={shown}"]
    return argv


def strategy_config(strategy: str):
    """The strategy's ``test_config()``, with at most 4 members a round (generation is the cost)."""
    config = STRATEGIES.get(strategy).test_config()
    if getattr(config, "population", None) is None:
        return config
    return dataclasses.replace(config, population=min(config.population, POPULATION))


def train_argv(strategy: str, space: str, out, *space_opts: str) -> list[str]:
    return [
        "train", "--model", MODEL, "--task", TASK, "--strategy", strategy, "--space", space,
        "--out", str(out), *FAST,
        *cli_options("--strategy-opt", strategy_config(strategy)),
        *cli_options("--space-opt", PARAMETRIZATIONS.get(space).test_config()),
        *ZO_TINY_SPACE_OPTIONS.get(space, []), *space_opts,
    ]  # fmt: skip


def logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(PROMPT).logits


@pytest.fixture(scope="module")
def zo_tiny_adapter(tmp_path_factory):
    """A trained-looking LoRA adapter (B != 0) of zo-tiny, for ``svd`` from an adapter."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(ALIASES[MODEL].locate())
    space = LoraSpace(LoraSpace.test_config())
    space.bind(model)
    space.apply_update([(9, 0.01)])
    path = tmp_path_factory.mktemp("zo-tiny-adapter")
    space.save_adapter(path)
    return path


def check_run(out, capsys, adapter_expected: bool) -> None:
    """final/ loads with transformers and scores the last eval logged; final/adapter with peft."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    capsys.readouterr()
    last = [r for r in read_metrics(out) if r["type"] == "eval"][-1]
    assert last["iteration"] == 2
    final = out / "final"
    assert main(["eval", "--model", str(final), "--task", TASK, "--eval-size", str(EVAL_SIZE),
                 "--max-new-tokens", str(NEW_TOKENS)]) == 0  # fmt: skip
    reported = json.loads(capsys.readouterr().out)
    metrics = {k: v for k, v in reported.items() if k in last and k not in ("iteration", "time")}
    assert {"accuracy", "reward", "format"} <= metrics.keys()
    assert metrics == {k: last[k] for k in metrics}

    merged = AutoModelForCausalLM.from_pretrained(final)
    assert (final / ADAPTER_DIR).exists() == adapter_expected
    if adapter_expected:
        base = AutoModelForCausalLM.from_pretrained(ALIASES[MODEL].locate())
        adapted = PeftModel.from_pretrained(base, final / ADAPTER_DIR)
        # Merged weights W + BA and the adapter's W x + B(A x) round differently in float32:
        # logits of size ~10 differ by ~1e-5 (seen up to 1.05e-5). A relative tolerance of
        # 1e-4 (1e3 float32 epsilons) holds on any machine, and an adapter that was not
        # saved, or saved wrong, changes logits by orders of magnitude more.
        torch.testing.assert_close(logits(adapted), logits(merged), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("strategy", "space"), ALLOWED)
def test_every_allowed_pairing_runs_from_the_cli_on_zo_tiny(strategy, space, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(train_argv(strategy, space, out)) == 0
    # lora always writes its adapter; svd only when it started from one (the test below)
    check_run(out, capsys, adapter_expected=space == "lora")


#: One strategy of each kind that searches svd: the seeded and the vector path of the export.
FIRST_OF_KIND: dict[frozenset, str] = {}
for _name, _space in ALLOWED:
    if _space == "svd":
        FIRST_OF_KIND.setdefault(STRATEGIES.get(_name).supported_kinds, _name)
ADAPTER_STRATEGIES = list(FIRST_OF_KIND.values())


@pytest.mark.parametrize("strategy", ADAPTER_STRATEGIES)
def test_svd_from_an_adapter_runs_from_the_cli_and_writes_an_adapter(
    strategy, zo_tiny_adapter, tmp_path, capsys
):
    """ESSA's pipeline: the singular values of a LoRA adapter's updates, exported as an adapter."""
    out = tmp_path / "run"
    argv = train_argv(strategy, "svd", out, "--space-opt", f"adapter={zo_tiny_adapter}")
    assert main(argv) == 0
    check_run(out, capsys, adapter_expected=True)


@pytest.mark.parametrize(("strategy", "space"), REFUSED)
def test_every_other_pairing_fails_at_start_naming_what_works(strategy, space, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(train_argv(strategy, space, out)) == 2
    error = capsys.readouterr().err
    spaces = [p for p in PARAMETRIZATIONS.names() if kinds_fit(strategy, p)]
    strategies = [s for s in STRATEGIES.names() if kinds_fit(s, space)]
    assert f"spaces that work with {strategy!r}: {', '.join(spaces)}" in error
    assert f"strategies that work with {space!r}: {', '.join(strategies)}" in error
    assert not (out / "metrics.jsonl").exists()  # nothing ran


def test_a_space_too_large_fails_at_start_naming_the_options_that_shrink_it(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--model", MODEL, "--strategy", "cma-es", "--space", "lora", "--out",
            str(out), *FAST]  # fmt: skip
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert "at most 5000 dimensions" in error and "'lora' has dim=81920" in error
    assert "use diagonal=True" in error
    assert "lower rank (now 8) or adapt fewer target_modules" in error
    assert not (out / "metrics.jsonl").exists()


def test_list_shows_the_matrix(capsys):
    assert main(["list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    for strategy in STRATEGIES.names():
        spaces = [p for p in PARAMETRIZATIONS.names() if kinds_fit(strategy, p)]
        assert listing["strategies"][strategy]["spaces"] == spaces
        for space in spaces:
            assert strategy in listing["parametrizations"][space]["strategies"]
