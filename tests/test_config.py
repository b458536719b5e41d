"""The run config: built and checked before any model loads, one resolver, hooks, light imports."""

from __future__ import annotations

import importlib.machinery
import json
import subprocess
import sys
import types

import pytest
from conftest import make_char_task, tiny_model

import zo_llm
from zo_llm import config as run_config
from zo_llm.cli import main
from zo_llm.strategies import IncompatibleSpaceError


@pytest.fixture
def load_spy(monkeypatch):
    """Counts calls of the runner's model loader, and fails the test if one happens."""
    calls = []

    def spy(*args, **kwargs):
        calls.append(args)
        raise AssertionError(f"load_model was called with {args}")

    monkeypatch.setattr("zo_llm.assembly.load_model", spy)
    return calls


FAST = ["--iterations", "1", "--batch-size", "2", "--no-progress", "--eval-size", "2"]


def test_a_misspelled_component_option_fails_before_the_model_loads(load_spy, tmp_path, capsys):
    argv = ["train", *FAST, "--strategy-opt", "populaton=4", "--out", str(tmp_path / "r")]
    assert main(argv) == 2
    assert "strategy 'es' has no option 'populaton'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="has no option 'populaton'"):
        zo_llm.train(strategy_options={"populaton": 4}, progress=False)
    assert load_spy == [] and not (tmp_path / "r").exists()


def test_an_unknown_pairing_fails_before_the_model_loads(load_spy, capsys):
    with pytest.raises(IncompatibleSpaceError, match="spaces that work with 'cma-es'"):
        run_config.resolve({"strategy": "cma-es", "space": "full"})
    assert main(["train", *FAST, "--strategy", "cma-es", "--space", "full"]) == 2
    assert "strategies that work with 'full'" in capsys.readouterr().err
    assert load_spy == []


def test_a_too_large_vector_space_fails_before_the_model_loads(load_spy, capsys):
    """cma-es over zo-tiny's default lora (81,920 dims): known from the model's shapes."""
    argv = ["train", *FAST, "--strategy", "cma-es", "--space", "lora"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "searches at most 5000 dimensions" in err and "'lora' has dim=81920" in err
    assert "rank" in err and "diagonal=True" in err
    assert load_spy == []


def test_a_bench_config_with_a_bad_option_fails_before_any_run(tmp_path, monkeypatch, capsys):
    runs = []
    monkeypatch.setattr("zo_llm.bench.run_in_subprocess", lambda *a, **k: runs.append(a))
    toml = tmp_path / "bench.toml"
    toml.write_text(
        'seeds = [0, 1]\n[[strategies]]\nname = "es"\n[[strategies]]\nname = "mezo"\nqq = 2\n'
    )
    assert main(["bench", "--config", str(toml), "--out", str(tmp_path / "out")]) == 2
    assert "strategy 'mezo' has no option 'qq'" in capsys.readouterr().err
    assert runs == [] and not (tmp_path / "out").exists()


def test_generic_flags_map_onto_each_strategys_own_options(capsys):
    mezo = run_config.resolve({"strategy": "mezo", "population": 6, "sigma": 0.01, "lr": 0.1})
    assert (mezo.strategy.options.q, mezo.strategy.options.eps, mezo.strategy.options.lr) == (
        3,
        0.01,
        0.1,
    )
    # a later layer's --population overrides an earlier layer's q
    later = run_config.resolve(
        {"strategy": "mezo", "strategy_options": {"q": 1}}, {"population": 8}
    )
    assert later.strategy.options.q == 4
    with pytest.raises(ValueError, match="population must be even"):
        run_config.resolve({"strategy": "mezo", "population": 5})
    assert main(["train", "--strategy", "cem", "--space", "svd", "--lr", "0.1"]) == 2
    err = capsys.readouterr().err
    assert "'cem' has no equivalent of lr" in err and "parenthood_ratio" in err


def test_a_shortcut_that_contradicts_its_option_is_an_error(capsys):
    argv = ["train", "--population", "2", "--strategy-opt", "population=4"]
    assert main(argv) == 2
    assert "population=2 contradicts the strategy option population='4'" in capsys.readouterr().err
    assert main(["train", "--eval-size", "3", "--task-opt", "eval_size=4"]) == 2
    assert "eval_size=3 contradicts the task option eval_size='4'" in capsys.readouterr().err
    # the same value twice is no contradiction, nor is one given in a TOML and one as a flag
    same = run_config.resolve({"sigma": 0.001, "strategy_options": {"sigma": "1e-3"}})
    assert same.strategy.options.sigma == 0.001
    with pytest.raises(ValueError, match="population=2 contradicts"):
        zo_llm.train(population=2, strategy_options={"population": 4})


def test_layers_merge_in_order_and_the_config_round_trips():
    toml = {"iterations": 5, "strategy": {"name": "es", "population": 8}, "loop": {"seed": 3}}
    flags = {"iterations": 7, "strategy_options": {"sigma": 0.01}}
    config = run_config.resolve(toml, flags)
    assert (config.loop.iterations, config.loop.seed) == (7, 3)
    assert (config.strategy.options.population, config.strategy.options.sigma) == (8, 0.01)
    # naming another component starts from its defaults
    other = run_config.resolve(toml, {"strategy": "mezo"})
    assert other.strategy.options == type(other.strategy.options)()
    assert run_config.resolve(json.loads(json.dumps(config.to_dict()))) == config
    assert run_config.resolve(config.flat()) == config
    with pytest.raises(ValueError, match="unknown key 'iteration'"):
        run_config.resolve({"iteration": 3})
    with pytest.raises(ValueError, match=r"\[loop\] has no key 'sed'"):
        run_config.resolve({"loop": {"sed": 3}})
    with pytest.raises(ValueError, match="eval_temperature='hot' is not a valid float"):
        run_config.resolve({"eval_temperature": "hot"})
    with pytest.raises(ValueError, match="out=5 is not a valid str"):
        run_config.resolve({"out": 5})
    assert run_config.resolve({"progress": "no"}).output.progress is False


def test_every_setting_has_one_flag_and_a_default_written_once():
    names = run_config.settings()
    assert len(names) == len(set(names))
    args = zo_llm.cli.build_parser().parse_args(["train", "--batch-size", "3", "--no-progress"])
    assert (args.batch_size, args.progress) == (3, False)
    assert not hasattr(args, "iterations")  # untyped flags override nothing


def tiny_run(tokenizer, **settings):
    """A few-hundredths-of-a-second run on a fresh tiny model and the char task."""
    return zo_llm.train(
        model=tiny_model(len(tokenizer)),
        tokenizer=tokenizer,
        task=make_char_task(),
        batch_size=2,
        max_new_tokens=4,
        strategy_options={"population": 4, "sigma": 0.05, "lr": 0.1},
        progress=False,
        **settings,
    )


def test_a_hook_from_python_sees_each_iteration_and_can_stop_the_run(tokenizer, tmp_path):
    seen = []

    def stop_after_two(record):
        seen.append(record)
        return record["iteration"] == 2

    experiment = tiny_run(
        tokenizer, iterations=5, out=str(tmp_path / "run"), hooks=[stop_after_two]
    )
    train = [r for r in experiment.records if r["type"] == "train"]
    assert seen == train and [r["iteration"] for r in seen] == [1, 2]
    import torch

    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["iteration"] == 2


def test_wandb_logs_every_record_offline(tokenizer, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = tmp_path / "run"
    tiny_run(tokenizer, iterations=2, wandb_project="zo-llm-test", out=str(run))
    run_id = (run / "wandb_id").read_text()
    (logged,) = (run / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb")
    data = logged.read_bytes()
    assert b"train/reward_mean" in data and b"eval/reward" in data


def test_wandb_gets_each_record_once_when_a_crashed_run_resumes(tokenizer, tmp_path, monkeypatch):
    """The records replayed after a resume (the same numbers) are not sent to W&B again."""
    pytest.importorskip("wandb")  # the config checks it is installed; the test fakes it
    logged = []

    class FakeRun:
        def log(self, values):
            kinds = {key.split("/")[0] for key in values if "/" in key}
            logged.append((values["iteration"], *kinds))

        def finish(self):
            pass

    fake = types.ModuleType("wandb")
    fake.__spec__ = importlib.machinery.ModuleSpec("wandb", None)  # found, as the check asks
    fake.init = lambda **settings: FakeRun()
    monkeypatch.setitem(sys.modules, "wandb", fake)

    class Crash(zo_llm.Hook):
        def on_record(self, run, record):
            if record["type"] == "train" and record["iteration"] == 3:
                raise RuntimeError("the machine went away")

    run = tmp_path / "run"
    settings = {"wandb_project": "p", "out": str(run), "eval_every": 2, "checkpoint_every": 2}
    with pytest.raises(RuntimeError, match="went away"):
        tiny_run(tokenizer, iterations=4, hooks=[Crash()], **settings)
    assert logged[-1] == (3, "train")  # W&B got iteration 3; the checkpoint is at 2
    zo_llm.resume(run, 4, model=tiny_model(len(tokenizer)), tokenizer=tokenizer,
                  task=make_char_task())  # fmt: skip
    assert logged == [(0, "eval"), (1, "train"), (2, "train"), (2, "eval"), (3, "train"),
                      (4, "train"), (4, "eval")]  # fmt: skip


def test_the_cli_and_the_registries_import_no_torch():
    """`zo-llm --help` and `zo-llm list` stay fast: they need neither torch nor transformers."""
    code = (
        "import sys, zo_llm, zo_llm.cli, zo_llm.config\n"
        "zo_llm.cli.build_parser()\n"
        "import zo_llm.strategies, zo_llm.parametrizations, zo_llm.tasks, zo_llm.models.aliases\n"
        "zo_llm.RunConfig, zo_llm.STRATEGIES, zo_llm.FITNESS, zo_llm.GENERATORS\n"
        "print(sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_public_names_are_derived_from_the_packages_imports():
    import zo_llm.evaluation
    import zo_llm.generation
    import zo_llm.parametrizations
    import zo_llm.strategies
    import zo_llm.tasks

    assert {"OpenAIES", "ESConfig", "STRATEGIES", "StrategyConfig"} <= set(
        zo_llm.strategies.__all__
    )
    assert "es" not in zo_llm.strategies.__all__  # its submodules are not exports
    packages = (zo_llm.strategies, zo_llm.parametrizations, zo_llm.tasks, zo_llm.evaluation,
                zo_llm.generation)  # fmt: skip
    for package in packages:
        assert set(package.__all__) <= set(zo_llm.__all__)
    assert {"train", "resume", "Experiment", "build_run", "RunConfig"} <= set(zo_llm.__all__)
    assert all(getattr(zo_llm, name) is not None for name in zo_llm.__all__)
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        zo_llm.nope  # noqa: B018


def test_a_task_object_brings_its_own_options(tokenizer):
    with pytest.raises(ValueError, match="task= is an object with its own options; set eval_size"):
        zo_llm.train(model=tiny_model(len(tokenizer)), tokenizer=tokenizer,
                     task=make_char_task(), eval_size=5)  # fmt: skip


def test_eval_size_is_no_slice_of_the_training_split(capsys):
    assert main(["eval", "--split", "train", "--eval-size", "3"]) == 2
    assert "--task-opt train_size=N" in capsys.readouterr().err


def test_a_missing_wandb_is_refused_before_the_model_loads(load_spy, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a)
    )
    with pytest.raises(ValueError, match=r"pip install 'zo-llm\[wandb\]'"):
        zo_llm.train(wandb_project="p", progress=False)
    assert load_spy == []


def test_hooks_all_start_before_the_first_record(tokenizer):
    events = []

    class Watcher(zo_llm.Hook):
        def on_start(self, run):
            events.append("start")

        def on_record(self, run, record):
            events.append(record["type"])

    tiny_run(tokenizer, iterations=1, hooks=[Watcher()])
    assert events == ["start", "eval", "train", "eval"]


def test_a_run_folder_of_zo_llm_0_2_reads_as_nested(tmp_path):
    """Before 0.3, run_config.json held flat settings; they read back as the nested layer."""
    from zo_llm.rundir import RunDir

    flat = {"model": "zo-tiny", "strategy": "mezo", "strategy_options": {"q": 2},
            "iterations": 4, "eval_size": 8, "checkpoint_every": 2}  # fmt: skip
    (tmp_path / "run_config.json").write_text(json.dumps({"zo_llm_version": "0.2.0",
                                                          "config": flat}))  # fmt: skip
    config = run_config.resolve(RunDir(tmp_path).read_config())
    assert (config.strategy.name, config.strategy.options.q, config.loop.iterations) == (
        "mezo",
        2,
        4,
    )
    assert config.task.options.eval_size == 8 and config.output.checkpoint_every == 2


@pytest.mark.parametrize(
    ("fitness", "shaping"), [("mean", "zscore"), ("prompt_zscore", "prompt_zscore")]
)
def test_a_run_folder_with_loop_fitness_resumes_with_its_shaping(tmp_path, fitness, shaping):
    """Before fitness shaping had one home, loop.fitness chose per-prompt z-scores."""
    from zo_llm.rundir import RunDir

    saved = run_config.resolve({"strategy": "es"}).to_dict()
    saved["loop"]["fitness"] = fitness
    del saved["strategy"]["shaping"]
    (tmp_path / "run_config.json").write_text(json.dumps({"config": saved}))
    config = run_config.resolve(RunDir(tmp_path).read_config())
    assert config.strategy.options.shaping == shaping


def test_a_setting_added_since_a_run_was_saved_counts_as_its_default():
    wanted = zo_llm.resolve({}).to_dict()
    saved = {section: dict(values) for section, values in wanted.items()}
    del saved["loop"]["task_reward_weight"]  # a run saved before the setting existed
    assert run_config.differences(saved, wanted) == []
    changed = zo_llm.resolve({"reward_url": "http://h", "task_reward_weight": 0.5}).to_dict()
    assert "task_reward_weight (run: 1.0, config: 0.5)" in run_config.differences(saved, changed)
