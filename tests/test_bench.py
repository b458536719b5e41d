"""zo-llm bench: runs, tables that match the runs' logs, plots, resuming, and its checks."""

from __future__ import annotations

import csv
import statistics
import struct
from pathlib import Path

import pytest
from conftest import run_numbers

import zo_llm
from zo_llm.bench import BenchConfig, Entry, run_bench
from zo_llm.cli import build_parser, main
from zo_llm.rundir import CHECKPOINT_FILE, RunDir
from zo_llm.runner import Experiment

FAST = {"batch_size": 4, "eval_size": 8, "max_new_tokens": 40, "eval_every": 1, "threads": 1}
ES = Entry("es", {"population": 4})
MEZO = Entry("mezo", {"lr": 0.05, "eps": 0.01}, label="mezo-lr0.05")
NUMERIC = ("_mean", "_std", "samples", "_seconds", "_mb")  # results.csv columns always numbers


def bench_config(out, **changes) -> BenchConfig:
    """The module's bench: es and mezo (labelled) x 2 seeds on one budget of sample evaluations."""
    settings = {
        "strategies": [ES, MEZO],
        "seeds": [0, 1],
        "budget": 32,
        "target": 0.3,
        "out": str(out),
        **FAST,
        **changes,
    }
    return BenchConfig.from_dict(settings)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    config = bench_config(tmp_path_factory.mktemp("bench"))
    return config, run_bench(config)


def runs_of(config: BenchConfig, key: str) -> list[list[dict]]:
    """The metrics records of the runs of one strategy entry, seed by seed."""
    return [zo_llm.read_metrics(r.config.output.out) for r in config.plan() if r.row[0] == key]


def toml_config(folder: Path, text: str) -> BenchConfig:
    """The bench config of a TOML file holding ``text``."""
    path = folder / "bench.toml"
    path.write_text(text)
    return BenchConfig.from_toml(path)


def run_names(config: BenchConfig) -> list[str]:
    return [name for name, _ in config.runs()]


def test_a_bench_writes_tables_and_plots(bench):
    config, executed = bench
    assert executed == run_names(config) and len(executed) == 4
    assert Path(config.runs()[2][1].output.out).name == "mezo-lr0.05--full--countdown-easy--seed0"
    out = Path(config.out)
    assert (out / "results.csv").stat().st_size > 0
    table = (out / "results.md").read_text()
    assert "| es | full | countdown-easy | accuracy" in table
    assert "| mezo-lr0.05 | full | countdown-easy | accuracy" in table  # the label names the row
    for name in ("heldout_vs_samples.png", "heldout_vs_time.png"):
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
        assert struct.unpack(">II", data[16:24]) == (840, 540)  # 7 x 4.5 inches at 120 dpi
        assert len(data) > 10_000  # axes, two lines and their bands, not an empty canvas


def test_table_numbers_equal_the_runs_metrics(bench):
    config, _ = bench
    with open(Path(config.out) / "results.csv") as handle:
        rows = {row["strategy"]: row for row in csv.DictReader(handle)}
    assert set(rows) == {"es", "mezo-lr0.05"}
    for key, row in rows.items():
        runs = runs_of(config, key)
        evals = [[r for r in run if r["type"] == "eval"] for run in runs]
        trains = [[r for r in run if r["type"] == "train"] for run in runs]
        before = [e[0]["accuracy"] for e in evals]
        after = [e[-1]["accuracy"] for e in evals]
        assert float(row["before_mean"]) == statistics.mean(before)
        assert float(row["before_std"]) == statistics.stdev(before)
        assert float(row["after_mean"]) == statistics.mean(after)
        assert float(row["after_std"]) == statistics.stdev(after)
        assert float(row["samples"]) == statistics.mean(t[-1]["samples"] for t in trains)
        reached = [
            next((r["samples"] for r in e if r["accuracy"] >= config.target), None) for e in evals
        ]
        hits = [s for s in reached if s is not None]
        assert row["samples_to_target"] == (str(statistics.mean(hits)) if hits else "")
        assert row["reached"] == f"{len(hits)}/2"
        assert float(row["peak_memory_mb"]) == max(r["peak_memory_mb"] for t in trains for r in t)
        train_s = [t[-1]["time"] for t in trains]
        eval_s = [sum(r["eval_seconds"] for r in e) for e in evals]
        assert float(row["train_seconds"]) == pytest.approx(statistics.mean(train_s))
        wall = statistics.mean(t + e for t, e in zip(train_s, eval_s, strict=True))
        assert float(row["wall_seconds"]) == pytest.approx(wall)
        assert all(e > 0 for e in eval_s) and float(row["wall_seconds"]) > float(
            row["train_seconds"]
        )
    # one budget for all: each run stops in the iteration that spends it
    assert int(float(rows["es"]["samples"])) == 32  # 2 iterations of 4 members x 4 prompts
    assert int(float(rows["mezo-lr0.05"]["samples"])) == 32  # 4 iterations of 2 members x 4


def test_markdown_rows_round_the_csv(bench):
    config, _ = bench
    with open(Path(config.out) / "results.csv") as handle:
        rows = {row["strategy"]: row for row in csv.DictReader(handle)}
    lines = (Path(config.out) / "results.md").read_text().splitlines()
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header[7:] == ["train s", "wall s", "peak MiB", "best", "tokens", "fwd / bwd passes",
                          "weight change", "KL", "probe before → after"]  # fmt: skip
    for line in lines[2:]:
        cells = dict(zip(header, (c.strip() for c in line.strip("|").split("|")), strict=True))
        row = rows[cells["strategy"]]
        number = {k: float(v) for k, v in row.items() if k.endswith(NUMERIC)}
        assert cells["metric before"] == (
            f"accuracy {number['before_mean']:.3f} ± {number['before_std']:.3f}"
        )
        assert cells["metric after"] == f"{number['after_mean']:.3f} ± {number['after_std']:.3f}"
        assert cells["samples"] == f"{number['samples']:.0f}"
        to_target = f"{float(row['samples_to_target']):.0f}" if row["samples_to_target"] else "-"
        assert cells["samples to target"] == f"{to_target} ({row['reached']})"
        assert cells["train s"] == f"{number['train_seconds']:.1f}"
        assert cells["wall s"] == f"{number['wall_seconds']:.1f}"
        assert cells["peak MiB"] == f"{number['peak_memory_mb']:.0f}"
        assert cells["best"] == f"{number['best_mean']:.3f}"
        passes = f"{float(row['forward_passes']):.0f} / {float(row['backward_passes']):.0f}"
        assert cells["fwd / bwd passes"] == passes
        assert cells["tokens"] == f"{float(row['generated_tokens']):.0f}"
        assert cells["KL"] == "-" and cells["probe before → after"] == "-"  # neither asked
        assert cells["weight change"] == f"{float(row['weight_change']):.2e}"


def test_rerunning_redoes_nothing(bench):
    config, _ = bench
    assert run_bench(config) == []
    # the same settings, spelled differently (a default given, other threads): still the same runs
    same = bench_config(
        config.out, strategies=[Entry("es", {"population": 4, "sigma": 1e-3}), MEZO], threads=2
    )
    assert run_bench(same) == []


def test_an_interrupted_run_resumes_to_the_uninterrupted_metrics(bench, tmp_path):
    config, _ = bench
    partial = bench_config(tmp_path, strategies=[ES], seeds=[0])
    ((name, train_config),) = partial.runs()
    experiment = Experiment(train_config)
    experiment.finished = lambda: experiment.iteration >= 1  # killed after iteration 1 of 2
    experiment.run()
    folder = Path(train_config.output.out)
    assert (folder / CHECKPOINT_FILE).exists() and not RunDir(folder).bench_done_file.exists()
    assert run_bench(partial) == [name]
    uninterrupted = zo_llm.read_metrics(Path(config.out) / "runs" / name)
    resumed = zo_llm.read_metrics(folder)
    assert [r["iteration"] for r in resumed if r["type"] == "train"] == [1, 2]
    assert run_numbers(resumed) == run_numbers(uninterrupted)
    assert (folder / "final" / "config.json").exists() and RunDir(folder).bench_done_file.exists()


def test_a_changed_config_is_refused_before_any_run(bench):
    config, _ = bench
    marker = RunDir(config.runs()[0][1].output.out).bench_done_file
    stamp = marker.stat().st_mtime_ns
    changed = bench_config(config.out, strategies=[Entry("es", {"population": 4, "sigma": 1e-2})])
    with pytest.raises(ValueError, match="es--full--countdown-easy--seed0") as error:
        run_bench(changed)
    message = str(error.value)
    assert "strategy_options.sigma (run: 0.001, config: 0.01)" in message
    assert "another --out" in message and "delete that run folder" in message
    with pytest.raises(ValueError, match=r"max_samples \(run: 32, config: 48\)"):
        run_bench(bench_config(config.out, budget=48))
    assert marker.stat().st_mtime_ns == stamp  # nothing was redone


def test_runs_of_another_zo_llm_version_are_refused(bench, monkeypatch):
    config, _ = bench
    monkeypatch.setattr("zo_llm.bench.__version__", "9.9.9")  # rewards may have changed since
    with pytest.raises(ValueError, match=rf"zo-llm version \(run: '{zo_llm.__version__}', now"):
        run_bench(config)


def test_entries_with_one_name_need_labels(tmp_path):
    entries = [Entry("es", {"sigma": 1e-3}), Entry("es", {"sigma": 1e-2})]
    with pytest.raises(ValueError, match="same run folder name es--full--countdown-easy") as error:
        BenchConfig.from_dict({"strategies": entries, "out": str(tmp_path)})
    assert "{'sigma': 0.001} and es {'sigma': 0.01}" in str(error.value)
    assert "label = " in str(error.value)
    config = toml_config(
        tmp_path,
        f'out = "{tmp_path}"\nseeds = [0]\n'
        '[[strategies]]\nname = "es"\nlabel = "es-1e-3"\nsigma = 1e-3\n'
        '[[strategies]]\nname = "es"\nlabel = "es-1e-2"\nsigma = 1e-2\n',
    )
    assert run_names(config) == [
        "es-1e-3--full--countdown-easy--seed0",
        "es-1e-2--full--countdown-easy--seed0",
    ]
    assert [c.strategy.options.sigma for _, c in config.runs()] == [1e-3, 1e-2]
    assert {c.strategy.name for _, c in config.runs()} == {"es"}
    with pytest.raises(ValueError, match="folder name"):
        Entry("es", label="a/b")


def test_names_options_and_pairings_are_checked_up_front(tmp_path):
    out = str(tmp_path / "never")

    def fails(match: str, **settings):
        with pytest.raises(ValueError, match=match):
            BenchConfig.from_dict({"out": out, **settings})

    fails("unknown strategy 'bogus'; known strategy names: .*es", strategies=[Entry("bogus")])
    fails("unknown parametrization 'nope'", strategies=[ES], spaces=[Entry("nope")])
    fails("unknown task 'nope'", strategies=[ES], tasks=[Entry("nope")])
    fails("strategy 'es' has no option 'sigmaa'", strategies=[Entry("es", {"sigmaa": 1})])
    fails(
        "parametrization 'svd': rank=0 must be >= 1",
        strategies=[ES],
        spaces=[Entry("svd", {"rank": 0})],
    )
    fails(
        r"strategy 'cma-es' cannot search space 'full'.*spaces = \[\"svd\"\]",
        strategies=[ES, Entry("cma-es")],
        spaces=[Entry("full"), Entry("svd")],
    )
    fails("restricted to spaces lora", strategies=[Entry("cma-es", spaces=("lora",))])
    assert not Path(out).exists()
    config = toml_config(
        tmp_path,
        f'out = "{out}"\nspaces = ["full", {{ name = "svd", rank = 2 }}]\n'
        '[[strategies]]\nname = "es"\n'
        '[[strategies]]\nname = "cma-es"\nspaces = ["svd"]\nsigma = 0.05\n',
    )
    assert run_names(config) == [
        "es--full--countdown-easy--seed0",
        "es--svd--countdown-easy--seed0",
        "cma-es--svd--countdown-easy--seed0",
    ]
    assert config.runs()[2][1].strategy.options.sigma == 0.05
    with pytest.raises(ValueError, match="only \\[\\[strategies\\]\\] entries take 'spaces'"):
        Entry.parse({"name": "svd", "spaces": ["full"]}, "space")


def test_bench_cli_and_config_errors(tmp_path, capsys):
    config = tmp_path / "bench.toml"
    config.write_text('strategies = ["es"]\nbogus = 1\n')
    assert main(["bench", "--config", str(config), "--out", str(tmp_path / "out")]) == 2
    assert "unknown bench key(s) bogus" in capsys.readouterr().err
    assert main(["bench", "--seeds", "0"]) == 2
    assert "needs --strategies and --out" in capsys.readouterr().err
    config.write_text('strategies = ["es"]\n')
    assert main(["bench", "--config", str(config)]) == 2
    assert "no output folder; pass --out DIR or set out = " in capsys.readouterr().err
    config.write_text(f'out = "{tmp_path}"\n')
    assert main(["bench", "--config", str(config)]) == 2
    assert "no strategies; pass --strategies" in capsys.readouterr().err
    assert main(["bench", "--strategies", "es", "--seeds", "0,x", "--out", str(tmp_path)]) == 2
    assert "--seeds '0,x': expected comma-separated integers" in capsys.readouterr().err
    with pytest.raises(ValueError, match="no 'name'"):
        Entry.parse({"population": 3})


def test_singular_flags_are_aliases():
    args = build_parser().parse_args(
        ["bench", "--strategy", "es", "--space", "svd", "--task", "countdown", "--seed", "1"]
    )
    assert (args.strategies, args.spaces, args.tasks, args.seeds) == ("es", "svd", "countdown", "1")


def test_a_failing_run_is_a_clean_cli_error(tmp_path, capfd):
    out = tmp_path / "out"
    argv = ["bench", "--strategies", "es", "--batch-size", "4", "--out", str(out)]
    toml = tmp_path / "bench.toml"
    # 2 training problems for 4 prompts per iteration: only the run itself can find that out
    toml.write_text('tasks = [{ name = "countdown-easy", train_size = 2, eval_size = 2 }]\n')
    assert main([*argv, "--config", str(toml)]) == 1
    err = capfd.readouterr().err
    assert "zo-llm bench: error: bench run es--full--countdown-easy--seed0 failed" in err
    assert "batch_size=4 exceeds the 2 training examples" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(("name", "runs"), [("compare", 8), ("smollm2", 4)])
def test_the_shipped_example_configs_are_valid(name, runs):
    path = Path(__file__).parents[1] / "benchmarks" / "configs" / f"{name}.toml"
    config = BenchConfig.from_toml(path, out="unused")
    assert [s.name for s in config.strategies] == ["es", "essam", "mezo", "cma-es"]
    assert {c.space.name for _, c in config.runs()} == {"svd"} and len(config.runs()) == runs
    assert config.budget == config.runs()[0][1].loop.max_samples
