"""The GRPO baseline in zo-llm bench: one budget of training completions, the work columns."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest

import zo_llm
from zo_llm.bench import BenchConfig, Entry, run_bench
from zo_llm.cli import main

pytest.importorskip("trl")

GRPO = Entry("grpo", {"completions": 4, "prompts_per_step": 2, "lr": 1e-3})
SETTINGS = {
    "strategies": [Entry("es", {"population": 4}), GRPO],
    "budget": 40,  # es: 16 a iteration, stops at 48; grpo: 8 a step, 5 steps
    "batch_size": 4,
    "eval_size": 8,
    "max_new_tokens": 24,
    "eval_every": 0,
    "eval_every_samples": 16,
    "probe_task": "arithmetic",
    "probe_size": 4,
}


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    config = BenchConfig.from_dict({**SETTINGS, "out": str(tmp_path_factory.mktemp("grpo"))})
    return config, run_bench(config)


def test_grpo_and_es_spend_the_same_budget_within_one_step(bench):
    config, executed = bench
    assert executed == ["es--full--countdown-easy--seed0", "grpo--full--countdown-easy--seed0"]
    trained = {r.row[0]: zo_llm.read_metrics(r.config.output.out) for r in config.plan()}
    spent = {k: [r for r in v if r["type"] == "train"][-1]["samples"] for k, v in trained.items()}
    assert spent == {"es": 48, "grpo": 40}
    assert abs(spent["grpo"] - spent["es"]) <= 16  # one es iteration (4 members x 4 prompts)
    # both evaluated every 16 completions (grpo: when a step crosses a multiple), by zo-llm
    grpo_evals = [r["samples"] for r in trained["grpo"] if r["type"] == "eval"]
    assert grpo_evals == [0, 16, 32, 40]
    saved = json_config(config, "grpo")
    assert saved["strategy"]["name"] == "grpo" and saved["strategy"]["lr"] == 1e-3


def json_config(config, key):
    run = next(r for r in config.plan() if r.row[0] == key)
    return zo_llm.RunDir(run.config.output.out).read_config()


def test_every_row_gets_the_work_drift_and_probe_columns(bench):
    config, _ = bench
    with open(Path(config.out) / "results.csv") as handle:
        rows = {row["strategy"]: row for row in csv.DictReader(handle)}
    for key, row in rows.items():
        records = zo_llm.read_metrics(
            next(r for r in config.plan() if r.row[0] == key).config.output.out
        )
        train = [r for r in records if r["type"] == "train"]
        evals = [r for r in records if r["type"] == "eval"]
        for name in ("generated_tokens", "forward_passes", "backward_passes"):
            assert float(row[name]) == sum(r[name] for r in train)
        assert float(row["weight_change"]) == evals[-1]["weight_change"]
        assert row["probe"] == "accuracy"
        assert float(row["probe_before"]) == evals[0]["probe_accuracy"]
        assert float(row["best_mean"]) == max(r["accuracy"] for r in evals)
    assert float(rows["es"]["backward_passes"]) == 0
    assert float(rows["grpo"]["backward_passes"]) == 5  # one per step
    assert float(rows["grpo"]["generated_tokens"]) == 40 * 24  # TRL runs to max_new_tokens
    assert 0 < float(rows["es"]["generated_tokens"]) <= 48 * 24  # es stops at stop strings
    table = (Path(config.out) / "results.md").read_text()
    assert "| grpo | full | countdown-easy |" in table


def test_a_changed_grpo_setting_is_refused_before_any_run(bench):
    config, _ = bench
    changed = Entry("grpo", {**GRPO.options, "lr": 1e-4})
    other = BenchConfig.from_dict(
        {**SETTINGS, "strategies": [SETTINGS["strategies"][0], changed], "out": config.out}
    )
    with pytest.raises(ValueError, match=r"strategy_options.lr \(run: 0.001, config: 0.0001\)"):
        run_bench(other)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"spaces": ["svd"]}, r"not space 'svd': give its \[\[strategies\]\] table"),
        ({"budget": None}, "set budget = N"),
        ({"strategies": [Entry("grpo", {"groups": 3})]}, "unknown option.*groups.*completions"),
    ],
)
def test_grpo_entries_are_checked_with_the_config(tmp_path, changes, message):
    with pytest.raises(ValueError, match=message):
        BenchConfig.from_dict({**SETTINGS, "out": str(tmp_path), **changes})


def test_a_missing_trl_is_refused_before_any_run(tmp_path, monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "trl" else real(name, *a)
    )
    argv = ["bench", "--strategies", "es,grpo", "--budget", "32", "--out", str(tmp_path / "b")]
    assert main(argv) == 2
    assert "pip install 'zo-llm[baseline]'" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()
