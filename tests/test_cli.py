"""The ``zo-llm`` command: list, train (flags, TOML, resume), eval, and its errors."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import make_char_task, run_numbers, tiny_model
from transformers import AutoModelForCausalLM

import zo_llm
from zo_llm.cli import main
from zo_llm.config import RESUMABLE
from zo_llm.runner import load_run_config
from zo_llm.strategies import ESConfig

TINY = [
    "--iterations", "2",
    "--population", "4",
    "--sigma", "0.05",
    "--lr", "0.05",
    "--batch-size", "4",
    "--max-new-tokens", "8",
    "--task-opt", "train_size=8",
    "--task-opt", "eval_size=4",
    "--no-progress",
]  # fmt: skip


def train_args(model_dir, out, *extra):
    return [
        "train",
        "--model",
        str(model_dir),
        "--task",
        "countdown",
        *TINY,
        "--out",
        str(out),
        *extra,
    ]


def train_run(model_dir, out, capsys, *extra) -> Path:
    assert main(train_args(model_dir, out, *extra)) == 0
    capsys.readouterr()
    return Path(out)


def saved_config(run: Path) -> dict:
    return load_run_config(run)


def assert_clean_error(capsys, *fragments: str) -> str:
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    # One "zo-llm <command>: error: ..." line (transformers may print progress bars before it).
    errors = [line for line in captured.err.splitlines() if line.startswith("zo-llm ")]
    assert len(errors) == 1 and ": error: " in errors[0], captured.err
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    return errors[0]


# --- list -------------------------------------------------------------------


def test_list_prints_every_registry(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for section in ("strategies:", "parametrizations:", "tasks:"):
        assert section in out.splitlines()
    names = {
        line.split()[0] for line in out.splitlines() if line.startswith("  ") and line[2] != " "
    }
    assert {"es", "full", "countdown"} <= names
    assert "sigma = 0.001" in out  # options are listed with their defaults


def test_list_json(capsys):
    assert main(["list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    sections = {"strategies", "parametrizations", "tasks", "evaluators", "models", "recipes"}
    assert set(listing) == sections | {"shapings", "backends"}
    assert "sequential" in listing["evaluators"]
    assert set(listing["shapings"]) == {"raw", "zscore", "centered_rank", "prompt_zscore"}
    assert "hf" in listing["backends"]
    assert "+26 points" in listing["recipes"]["smollm2-135m-cpu"]["summary"]
    assert {"zo-tiny", "smollm2-135m"} <= set(listing["models"])
    assert "es" in listing["strategies"]
    assert "full" in listing["parametrizations"]
    assert "countdown" in listing["tasks"]
    options = {name: default for name, default, _ in listing["strategies"]["es"]["options"]}
    assert options == dataclasses.asdict(ESConfig())


def test_console_script_runs():
    script = Path(sys.executable).with_name("zo-llm")
    command = str(script) if script.exists() else shutil.which("zo-llm")
    assert command, "the zo-llm console script is not installed"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [command, "list", "--json"], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "es" in json.loads(result.stdout)["strategies"]


# --- train and eval -----------------------------------------------------------


def test_train_then_eval_reproduces_the_logged_metrics(model_dir, tmp_path, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = tmp_path / "run"
    assert main(train_args(model_dir, run)) == 0
    out = capsys.readouterr().out
    assert "held-out before: iteration=0" in out
    assert "held-out after:  iteration=2" in out
    assert f"run folder: {run}" in out
    assert f"zo-llm eval --model {run / 'final'} --task countdown" in out

    records = zo_llm.read_metrics(run)
    assert [r["iteration"] for r in records if r["type"] == "train"] == [1, 2]
    last_eval = [r for r in records if r["type"] == "eval"][-1]
    assert last_eval["iteration"] == 2

    argv = ["eval", "--model", str(run / "final"), "--task", "countdown"]
    argv += ["--task-opt", "eval_size=4", "--max-new-tokens", "8"]
    assert main(argv) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["examples"] == 4 and metrics["split"] == "eval"
    assert "accuracy" in metrics
    run_only = ("type", "iteration", "split", "time", "samples", "eval_seconds", "weight_change")
    logged = {k: v for k, v in last_eval.items() if k not in run_only}
    assert {k: metrics[k] for k in logged} == logged

    model = AutoModelForCausalLM.from_pretrained(run / "final")
    assert model.num_parameters() > 0
    AutoTokenizer.from_pretrained(run / "final")


def test_printed_eval_command_matches_the_run(model_dir, tmp_path, capsys):
    import shlex

    from zo_llm.cli import build_parser

    run = tmp_path / "run"
    assert main(train_args(model_dir, run)) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "zo-llm eval" in x)
    command = shlex.split(line.split(":", 1)[1])
    assert command[:2] == ["zo-llm", "eval"]
    args = build_parser().parse_args(command[1:])
    task = zo_llm.components.build_task(args.task, dict(x.split("=", 1) for x in args.task_opt))
    examples = list(task.examples(args.split))[: args.eval_size]
    assert len(examples) == 4  # the run evaluated on 4 held-out examples
    assert args.max_new_tokens == 8
    assert main(command[1:]) == 0  # and running it repeats the run's last evaluation
    printed = json.loads(capsys.readouterr().out)
    last = [r for r in zo_llm.read_metrics(run) if r["type"] == "eval"][-1]
    assert {k: printed[k] for k in ("accuracy", "reward", "format")} == {
        k: last[k] for k in ("accuracy", "reward", "format")
    }


def test_bare_eval_of_a_run_uses_the_runs_task_and_settings(model_dir, tmp_path, capsys):
    run = train_run(model_dir, tmp_path / "run", capsys)
    assert main(["eval", "--model", str(run / "final")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["settings_from"] == str(run / "run_config.json")
    assert (printed["task"], printed["examples"]) == ("countdown", 4)
    last = [r for r in zo_llm.read_metrics(run) if r["type"] == "eval"][-1]
    assert {k: printed[k] for k in ("accuracy", "reward", "format")} == {
        k: last[k] for k in ("accuracy", "reward", "format")
    }
    # the run's best model is scored the same way, and gets the metric best.json names
    best = json.loads((run / "best.json").read_text())
    assert main(["eval", "--model", str(run / "best")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["settings_from"] == str(run / "run_config.json")
    assert printed[best["metric"]] == best["value"]
    # flags still win: another task starts from that task's own defaults
    assert main(["eval", "--model", str(run / "final"), "--task", "countdown-easy",
                 "--eval-size", "2"]) == 0  # fmt: skip
    printed = json.loads(capsys.readouterr().out)
    assert (printed["task"], printed["examples"]) == ("countdown-easy", 2)


def test_eval_reads_a_train_toml(model_dir, tmp_path, capsys):
    config = write_toml(tmp_path / "run.toml", model_dir)  # [task] countdown, eval_size = 4
    assert main(["eval", "--config", str(config)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert (printed["model"], printed["task"], printed["examples"]) == (
        str(model_dir),
        "countdown",
        4,
    )

    # a run's own task options stay under a TOML that only adds to them
    run = train_run(model_dir, tmp_path / "run", capsys)
    extra = tmp_path / "extra.toml"
    extra.write_text("[task]\neval_size = 3\n")  # no name: the run's task
    assert main(["eval", "--model", str(run / "final"), "--config", str(extra)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert (printed["task"], printed["examples"]) == ("countdown", 3)
    # the run's eval size counts held-out examples: the train split is scored whole
    assert main(["eval", "--model", str(run / "final"), "--split", "train"]) == 0
    assert json.loads(capsys.readouterr().out)["examples"] == 8  # the run's train_size


def test_eval_writes_completions(model_dir, tmp_path, capsys):
    out = tmp_path / "eval" / "result.json"
    argv = ["eval", "--model", str(model_dir)]
    argv += ["--eval-size", "3", "--max-new-tokens", "4", "--out", str(out)]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads(out.read_text())
    assert printed["examples"] == 3 and len(saved["completions"]) == 3
    assert saved["metrics"]["accuracy"] == printed["accuracy"]


# --- TOML config ----------------------------------------------------------------


def write_toml(path: Path, model_dir, **top) -> Path:
    lines = [f"model = {json.dumps(str(model_dir))}"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in top.items()]
    lines += [
        "iterations = 1",
        "batch_size = 4",
        "max_new_tokens = 8",
        "progress = false",
        "[strategy]",
        'name = "es"',
        "population = 4",
        "sigma = 0.05",
        "lr = 0.05",
        "[space]",
        'name = "full"',
        'exclude = ["embed_tokens"]',
        "[task]",
        'name = "countdown"',
        "train_size = 8",
        "eval_size = 4",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_toml_config_equals_flags_and_flags_override(model_dir, tmp_path, capsys):
    toml = write_toml(tmp_path / "run.toml", model_dir, seed=1)
    from_file = tmp_path / "from_file"
    assert main(["train", "--config", str(toml), "--out", str(from_file)]) == 0

    from_flags = tmp_path / "from_flags"
    argv = ["train", "--model", str(model_dir), "--iterations", "1", "--batch-size", "4"]
    argv += ["--max-new-tokens", "8", "--no-progress", "--seed", "1"]
    argv += ["--strategy", "es", "--population", "4", "--sigma", "0.05", "--lr", "0.05"]
    argv += ["--space", "full", "--space-opt", "exclude=embed_tokens"]
    argv += ["--task", "countdown", "--task-opt", "train_size=8", "--task-opt", "eval_size=4"]
    assert main([*argv, "--out", str(from_flags)]) == 0

    overridden = tmp_path / "overridden"
    argv = ["train", "--config", str(toml), "--seed", "3", "--strategy-opt", "sigma=0.1"]
    assert main([*argv, "--out", str(overridden)]) == 0
    capsys.readouterr()

    file_config = saved_config(from_file)
    assert file_config["seed"] == 1
    assert file_config["strategy_options"]["population"] == 4
    assert file_config["space_options"]["exclude"] == ["embed_tokens"]
    assert file_config["task_options"]["train_size"] == 8

    def but_out(config):
        return {k: v for k, v in config.items() if k != "out"}

    assert but_out(saved_config(from_flags)) == but_out(file_config)
    expected = but_out(file_config)
    expected["seed"] = 3
    expected["strategy_options"] = {**expected["strategy_options"], "sigma": 0.1}
    assert but_out(saved_config(overridden)) == expected


def test_toml_unknown_key_is_named(model_dir, tmp_path, capsys):
    toml = write_toml(tmp_path / "run.toml", model_dir, itrations=3)
    assert main(["train", "--config", str(toml), "--out", str(tmp_path / "run")]) == 2
    assert_clean_error(capsys, "itrations", "iterations")
    assert not (tmp_path / "run").exists()


def test_toml_unknown_strategy_option_is_named(model_dir, tmp_path, capsys):
    toml = write_toml(tmp_path / "run.toml", model_dir)
    toml.write_text(toml.read_text().replace("sigma = 0.05", "sigmaa = 0.05"))
    assert main(["train", "--config", str(toml), "--out", str(tmp_path / "run")]) == 2
    assert_clean_error(capsys, "sigmaa", "population")


def test_missing_toml_file(tmp_path, capsys):
    assert main(["train", "--config", str(tmp_path / "nope.toml")]) == 2
    assert_clean_error(capsys, "nope.toml")


# --- resume ---------------------------------------------------------------------


def test_resume_continues_to_more_iterations(model_dir, tmp_path, capsys):
    run = train_run(model_dir, tmp_path / "run", capsys)
    assert main(["train", "--resume", str(run), "--iterations", "4"]) == 0
    out = capsys.readouterr().out
    assert "held-out after:  iteration=4" in out

    records = zo_llm.read_metrics(run)
    assert [r["iteration"] for r in records if r["type"] == "train"] == [1, 2, 3, 4]
    assert [r["iteration"] for r in records if r["type"] == "eval"] == [0, 2, 4]
    assert torch.load(run / "checkpoint.pt", weights_only=True)["iteration"] == 4
    assert saved_config(run)["iterations"] == 4

    # the same numbers and weights as a run that never stopped
    whole = train_run(model_dir, tmp_path / "whole", capsys, "--iterations", "4")
    assert run_numbers(zo_llm.read_metrics(run)) == run_numbers(zo_llm.read_metrics(whole))
    resumed_final = AutoModelForCausalLM.from_pretrained(run / "final").state_dict()
    for name, tensor in AutoModelForCausalLM.from_pretrained(whole / "final").state_dict().items():
        assert torch.equal(tensor, resumed_final[name]), name


@pytest.mark.parametrize(
    "extra",
    [
        ["--sigma", "0.1"],
        ["--strategy-opt", "sigma=0.1"],
        ["--seed", "3"],
        ["--task-opt", "train_size=16"],
    ],
    ids=lambda extra: " ".join(extra),
)
def test_resume_refuses_config_changes(model_dir, tmp_path, capsys, extra):
    run = train_run(model_dir, tmp_path / "run", capsys)
    before = (run / "metrics.jsonl").read_text()
    assert main(["train", "--resume", str(run), "--iterations", "4", *extra]) == 2
    flags = [f"--{name.replace('_', '-')}" for name in RESUMABLE]
    assert_clean_error(capsys, "cannot change", f"only {', '.join(flags[:-1])} and {flags[-1]}")
    assert (run / "metrics.jsonl").read_text() == before  # nothing ran
    assert torch.load(run / "checkpoint.pt", weights_only=True)["iteration"] == 2


@pytest.mark.parametrize(
    "extra",
    [["--no-progress"], ["--threads", "1"], ["--no-tensorboard"], ["--checkpoint-every", "2"]],
    ids=lambda extra: " ".join(extra),
)
def test_resume_accepts_the_flags_it_says_may_change(model_dir, tmp_path, capsys, extra):
    run = train_run(model_dir, tmp_path / "run", capsys)
    whole = train_run(model_dir, tmp_path / "whole", capsys, "--iterations", "3")
    assert main(["train", "--resume", str(run), "--iterations", "3", *extra]) == 0
    records = zo_llm.read_metrics(run)
    assert [r["iteration"] for r in records if r["type"] == "train"] == [1, 2, 3]
    assert run_numbers(records) == run_numbers(zo_llm.read_metrics(whole))  # no number changed


def test_resume_from_python_takes_the_same_settings(model_dir, tmp_path, capsys):
    run = train_run(model_dir, tmp_path / "run", capsys)
    with pytest.raises(ValueError, match="resume cannot change lr: .* may change iterations"):
        zo_llm.resume(run, 3, lr=1.0)
    assert zo_llm.resume(run, 3, tensorboard=False, progress=False).iteration == 3


def test_resume_of_a_folder_that_is_no_run(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path), "--iterations", "4"]) == 2
    assert_clean_error(capsys, str(tmp_path), "run_config.json")


# --- errors ---------------------------------------------------------------------


def test_unknown_strategy_lists_the_known_ones(model_dir, tmp_path, capsys):
    assert main(train_args(model_dir, tmp_path / "run", "--strategy", "nope")) == 2
    err = assert_clean_error(capsys, "'nope'", "known strategy names: ")
    assert "es" in err.split("known strategy names: ", 1)[1].split(", ")


def test_default_train_runs_the_shipped_model_and_writes_a_loadable_final(tmp_path, capsys):
    """`zo-llm train` with every default but a cut budget (issue: the first command a user runs)."""
    from transformers import AutoModelForCausalLM

    run = tmp_path / "run"
    argv = ["train", "--iterations", "1", "--population", "4", "--eval-size", "16"]
    assert main([*argv, "--out", str(run), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "held-out before: iteration=0, accuracy=" in out and f"run folder: {run}" in out
    config = saved_config(run)
    assert (config["model"], config["task"], config["strategy"]) == (
        "zo-tiny",
        "countdown-easy",
        "es",
    )
    assert AutoModelForCausalLM.from_pretrained(run / "final").num_parameters() > 0


def test_default_run_folder_is_created_under_runs(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["train", "--iterations", "1", "--population", "2", "--eval-size", "4"]
    assert main([*argv, "--batch-size", "2", "--no-progress"]) == 0
    (folder,) = (tmp_path / "runs").iterdir()
    assert folder.name.startswith("countdown-easy-es-") and (folder / "final").is_dir()


def test_missing_model_folder(tmp_path, capsys):
    missing = tmp_path / "no-such-model"
    assert main(train_args(missing, tmp_path / "run")) == 2
    assert_clean_error(capsys, str(missing), "does not exist")
    assert main(["eval", "--model", str(missing), "--task-opt", "eval_size=4"]) == 2
    assert_clean_error(capsys, str(missing))


def test_bad_value_is_named(model_dir, tmp_path, capsys):
    assert main(train_args(model_dir, tmp_path / "run", "--population", "1")) == 2
    assert_clean_error(capsys, "population=1")
    assert main(train_args(model_dir, tmp_path / "run", "--iterations", "0")) == 2
    assert_clean_error(capsys, "iterations=0")


def test_malformed_key_value_option(model_dir, tmp_path, capsys):
    assert main(train_args(model_dir, tmp_path / "run", "--task-opt", "train_size")) == 2
    assert_clean_error(capsys, "'train_size'", "KEY=VALUE")


def test_argparse_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--iterations", "many"])
    assert exit_info.value.code == 2
    assert "invalid int value" in capsys.readouterr().err


def test_eval_of_a_task_object_run_asks_for_the_task(tokenizer, tmp_path, capsys):

    run = tmp_path / "run"
    zo_llm.train(
        model=tiny_model(len(tokenizer)),
        tokenizer=tokenizer,
        task=make_char_task(),
        iterations=1,
        batch_size=2,
        max_new_tokens=4,
        progress=False,
        out=str(run),
    )
    assert main(["eval", "--model", str(run / "final")]) == 2
    assert_clean_error(capsys, "task object", "pass --task")


def test_the_cli_reference_page_is_the_current_help():
    from pathlib import Path

    from zo_llm.cli.reference import reference

    page = Path(__file__).parents[1] / "docs" / "cli.md"
    regenerate = "python -m zo_llm.cli.reference > docs/cli.md"
    assert page.read_text() == reference(), regenerate


@pytest.mark.parametrize(
    ("flags", "noted"),
    [
        (["--model", "my-org/my-model"], True),  # a real model meets the demo's defaults
        (["--model", "my-org/my-model", "--task", "gsm8k"], False),  # the user chose
        (["--model", "my-org/my-model", "--config", "smollm2-135m-cpu"], False),
        ([], False),  # zo-tiny: the defaults are its own
    ],
)
def test_a_real_model_on_the_demo_defaults_is_pointed_at_a_recipe(flags, noted, capsys):
    from zo_llm.cli import build_parser
    from zo_llm.cli.train import resolve_train_config

    resolve_train_config(build_parser().parse_args(["train", *flags]))
    note = "start from a recipe" in capsys.readouterr().err
    assert note is noted


# --- failing fast, logging to files ---------------------------------------------------

REFUSALS = [
    ["train", "--population", "0"],
    ["train", "--model", "./no-such-folder"],
    ["train", "--backend", "nope"],
    ["train", "--resume", "no-such-run"],
    ["train", "--resume", "no-such-run", "--seed", "3"],
    ["eval", "--eval-size", "0"],
    ["eval", "--model", "/no/such/model"],
    ["train", "--reward-url", "http://127.0.0.1:9/score"],  # the discard port: nothing listens
    ["train", "--task", "reasoning-gym:prodcts"],
    ["bench", "--strategies", "es,nope", "--out", "bench-out"],
    ["bench", "--strategies", "es", "--out", "bench-out", "--model", "./no-such-folder"],
]


@pytest.mark.parametrize("argv", REFUSALS, ids=" ".join)
def test_a_refusal_that_needs_no_model_loads_neither_torch_nor_transformers(argv, tmp_path):
    """Counted, not timed: the heavy imports are what made refusals take seconds."""
    probe = (
        "import sys; from zo_llm.cli import main; code = main(sys.argv[1:]); "
        "heavy = sorted(m for m in ('torch', 'transformers', 'vllm') if m in sys.modules); "
        "print(code, ','.join(heavy) or 'none')"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, *argv], capture_output=True, text=True, cwd=tmp_path
    )
    assert done.stdout.split() == ["2", "none"], done.stdout + done.stderr
    assert done.stderr.count("error:") == 1 and "Traceback" not in done.stderr


def test_a_run_logged_to_a_file_writes_a_line_per_iteration_and_evaluation(tmp_path):
    argv = [sys.executable, "-m", "zo_llm", "train", "--iterations", "3", "--eval-every", "1"]
    argv += ["--eval-size", "4", "--batch-size", "2", "--population", "2", "--max-new-tokens", "4"]
    log = tmp_path / "run.log"
    with log.open("w") as file:
        done = subprocess.run([*argv, "--out", str(tmp_path / "a")], stdout=file, stderr=file)
    assert done.returncode == 0, log.read_text()
    text = log.read_text()
    assert "\r" not in text  # no bar redrawn into the file
    lines = text.splitlines()
    assert [line.split(":")[0] for line in lines if line.startswith("iteration ")] == [
        "iteration 1/3", "iteration 2/3", "iteration 3/3"
    ]  # fmt: skip
    assert sum(line.startswith("held-out at iteration") for line in lines) == 4  # 0, 1, 2, 3
    quiet = subprocess.run([*argv, "--out", str(tmp_path / "b"), "--quiet"], capture_output=True)
    assert quiet.returncode == 0 and quiet.stderr.decode().strip() == ""
