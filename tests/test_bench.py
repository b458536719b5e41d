"""zo-llm bench: runs, tables that match the runs' logs, plots, and resuming."""

from __future__ import annotations

import csv
import shutil
import statistics
from pathlib import Path

import pytest

import zo_llm
from zo_llm.bench import DONE_MARKER, BenchConfig, Entry, run_bench
from zo_llm.cli import main

FAST = {"batch_size": 4, "eval_size": 8, "max_new_tokens": 40, "eval_every": 1, "threads": 1}


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """es and mezo x 2 seeds on the shipped model, on one budget of sample evaluations."""
    config = BenchConfig(
        strategies=[Entry("es", {"population": 4}), Entry("mezo", {"lr": 0.05, "eps": 0.01})],
        seeds=[0, 1],
        budget=32,
        target=0.5,
        out=str(tmp_path_factory.mktemp("bench")),
        **FAST,
    )
    return config, run_bench(config)


def test_a_bench_writes_tables_and_plots(bench):
    config, executed = bench
    assert len(executed) == 4
    for name in ("results.csv", "results.md", "heldout_vs_samples.png", "heldout_vs_time.png"):
        assert (Path(config.out) / name).stat().st_size > 0
    assert (
        "| es | full | countdown-easy | accuracy" in (Path(config.out) / "results.md").read_text()
    )


def test_table_numbers_equal_the_runs_metrics(bench):
    config, _ = bench
    with open(Path(config.out) / "results.csv") as handle:
        rows = {row["strategy"]: row for row in csv.DictReader(handle)}
    for strategy in ("es", "mezo"):
        runs = [zo_llm.read_metrics(c.out) for _, c in config.runs() if c.strategy == strategy]
        evals = [[r for r in run if r["type"] == "eval"] for run in runs]
        trains = [[r for r in run if r["type"] == "train"] for run in runs]
        row = rows[strategy]
        assert float(row["before_mean"]) == statistics.mean(e[0]["accuracy"] for e in evals)
        assert float(row["after_mean"]) == statistics.mean(e[-1]["accuracy"] for e in evals)
        assert float(row["samples"]) == statistics.mean(t[-1]["samples"] for t in trains)
        assert float(row["peak_memory_mb"]) == max(r["peak_memory_mb"] for t in trains for r in t)
        assert float(row["train_seconds"]) == pytest.approx(
            statistics.mean(t[-1]["time"] for t in trains)
        )
    # one budget for all: each run stops in the iteration that spends it
    assert int(float(rows["es"]["samples"])) == 32  # 2 iterations of 4 members x 4 prompts
    assert int(float(rows["mezo"]["samples"])) == 32  # 4 iterations of 2 members x 4 prompts


def test_rerunning_redoes_nothing_and_an_interrupted_run_resumes(bench):
    config, _ = bench
    assert run_bench(config) == []
    name, train_config = config.runs()[0]
    before = zo_llm.read_metrics(train_config.out)
    folder = Path(train_config.out)
    (folder / DONE_MARKER).unlink()  # as if killed after its last checkpoint
    shutil.rmtree(folder / "final")
    assert run_bench(config) == [name]
    strip = ("time", "iteration_seconds", "peak_memory_mb")
    after = zo_llm.read_metrics(train_config.out)
    assert [{k: v for k, v in r.items() if k not in strip} for r in after] == [
        {k: v for k, v in r.items() if k not in strip} for r in before
    ]
    assert (folder / "final" / "config.json").exists()


def test_bench_cli_and_config_errors(tmp_path, capsys):
    config = tmp_path / "bench.toml"
    config.write_text('strategies = ["es"]\nbogus = 1\n')
    assert main(["bench", "--config", str(config), "--out", str(tmp_path / "out")]) == 2
    assert "unknown bench key(s) bogus" in capsys.readouterr().err
    assert main(["bench", "--seeds", "0"]) == 2
    assert "needs --strategies and --out" in capsys.readouterr().err
    with pytest.raises(ValueError, match="no 'name'"):
        Entry.parse({"population": 3})
