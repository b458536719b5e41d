"""A user's mistake is one line naming the file or object, never a traceback (issue 13).

Each case runs ``zo-llm`` in-process on files made in ``tmp_path`` and checks
the exit code, that the one ``zo-llm CMD: error:`` line names the bad file or
object, and that no traceback is printed. Cases refuse before a model loads
where they can; those that need one use the shipped ``zo-tiny``. Only a bug in
zo-llm itself prints a traceback, and then says so.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from zo_llm.cli import main
from zo_llm.models.aliases import resolve_alias
from zo_llm.tasks.countdown import check_equation, evaluate_equation

ZO_TINY = Path(resolve_alias("zo-tiny"))
#: Settings that keep a run that gets past its checks tiny.
QUICK = ["--iterations", "1", "--population", "2", "--batch-size", "1", "--max-new-tokens", "2"]
GOOD_ROW = '{"prompt": "1+1=", "answer": "2"}'
_modules = itertools.count()


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    """Exit code and stderr of ``zo-llm argv`` (argparse's own errors exit through SystemExit)."""
    try:
        code = main(argv)
    except SystemExit as stop:
        code = stop.code
    captured = capsys.readouterr()
    return code, captured.err + captured.out


def error_line(output: str) -> str:
    """The one ``zo-llm CMD: error: ...`` line; fails if there is none, or a traceback."""
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if ": error: " in line]
    assert len(errors) == 1, output
    return errors[0]


# --- what each case writes: a function of tmp_path returning the argv ---------


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def user_module(tmp_path: Path, monkeypatch, source: str) -> str:
    """A module of the user's, importable for ``--task module:object``; returns its name."""
    name = f"user_tasks_{next(_modules)}"
    write(tmp_path / f"{name}.py", source)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def model_folder(tmp_path: Path, *files: str, weights: bytes | None = None) -> Path:
    """A copy of zo-tiny's ``files``; ``weights`` replaces its model.safetensors."""
    folder = tmp_path / "model"
    folder.mkdir()
    for name in files:
        shutil.copy(ZO_TINY / name, folder / name)
    if weights is not None:
        (folder / "model.safetensors").write_bytes(weights)
    return folder


def run_folder(folder: Path) -> Path:
    """The files that make a folder look like a zo-llm run (not a model)."""
    write(folder / "run_config.json", "{}")
    write(folder / "final" / "config.json", "{}")
    return folder


TOKENIZER = ("tokenizer.json", "tokenizer_config.json")
MODEL = ("config.json", "generation_config.json", "model.safetensors")

Case = Callable[[Path, pytest.MonkeyPatch], list[str]]

#: id -> (argv builder, exit code, fragments the error line must hold; "{tmp}" is tmp_path).
CASES: dict[str, tuple[Case, int, tuple[str, ...]]] = {
    # 1. config files
    "toml malformed": (
        lambda t, m: ["train", "--config", str(write(t / "run.toml", "iterations = \n"))],
        2,
        ("run.toml", "not valid TOML", "line 1, column 14"),
    ),
    "toml not utf-8": (
        lambda t, m: ["train", "--config", str(write(t / "run.toml", b'model = "\xff"\n'))],
        2,
        ("run.toml", "not UTF-8", "byte 0xff at line 1, column 10"),
    ),
    "toml missing": (
        lambda t, m: ["eval", "--config", str(t / "nope.toml")],
        2,
        ("nope.toml", "does not exist"),
    ),
    "toml is a folder": (
        lambda t, m: ["train", "--config", str(t)],
        2,
        ("{tmp}", "is a folder"),
    ),
    "toml unknown key": (
        lambda t, m: ["train", "--config", str(write(t / "run.toml", "iterationz = 3\n"))],
        2,
        ("run.toml", "unknown key 'iterationz'"),
    ),
    # 2. data files
    "jsonl not utf-8": (
        lambda t, m: ["train", "--task", str(write(t / "d.jsonl", b'{"prompt": "\xe9"}\n'))],
        2,
        ("file: ", "d.jsonl", "not UTF-8", "line 1, column 13", "save it as UTF-8"),
    ),
    "jsonl bad line": (
        lambda t, m: [
            "train",
            "--task",
            str(write(t / "d.jsonl", f'{GOOD_ROW}\n{{"prompt": "x" "answer": 1}}\n')),
        ],
        2,
        ("d.jsonl, line 2", "not valid JSON", "Expecting ',' delimiter"),
    ),
    "json bad document": (
        lambda t, m: ["train", "--task", str(write(t / "d.json", f"[{GOOD_ROW},\n {{}},]\n"))],
        2,
        ("d.json is not valid JSON", "line 2, column"),
    ),
    "json not a list": (
        lambda t, m: ["train", "--task", str(write(t / "d.json", "42\n"))],
        2,
        ("d.json holds a JSON int",),
    ),
    "jsonl rows not objects": (
        lambda t, m: ["train", "--task", str(write(t / "d.jsonl", "[1, 2]\n3\n"))],
        2,
        ("example 0 of", "d.jsonl", "not an object"),
    ),
    "jsonl empty": (
        lambda t, m: ["train", "--task", str(write(t / "d.jsonl", "\n\n"))],
        2,
        ("d.jsonl is empty",),
    ),
    "jsonl lacks a field": (
        lambda t, m: ["train", "--task", str(write(t / "d.jsonl", '{"prompt": "x"}\n' * 2))],
        2,
        ("d.jsonl lacks field(s) answer",),
    ),
    "csv not utf-8": (
        lambda t, m: ["train", "--task", str(write(t / "d.csv", b"prompt,answer\nh\xe9,b\n"))],
        2,
        ("d.csv is not UTF-8", "line 2, column 2"),
    ),
    "data file missing": (
        lambda t, m: ["train", "--task", str(t / "nope.jsonl")],
        2,
        ("nope.jsonl", "data not found"),
    ),
    "countdown data bad line": (
        lambda t, m: [
            "train",
            "--task",
            "countdown",
            "--data",
            str(write(t / "cd.jsonl", '{"numbers": [1, 2], "target": 3}\n{"numbers": [1\n')),
        ],
        2,
        ("countdown: ", "cd.jsonl, line 2", "not valid JSON"),
    ),
    "countdown data not utf-8": (
        lambda t, m: ["train", "--task", "countdown", "--data", str(write(t / "cd.json", b"\xff"))],
        2,
        ("countdown: ", "cd.json is not UTF-8",),
    ),
    "countdown data missing": (
        lambda t, m: ["train", "--task", "countdown", "--data", str(t / "cd.json")],
        2,
        ("countdown: ", "cd.json", "not found"),
    ),
    "gsm8k data bad json": (
        lambda t, m: ["eval", "--task", "gsm8k", "--data", str(write(t / "g.json", "[{]"))],
        2,
        ("gsm8k: ", "g.json is not valid JSON", "line 1, column 3"),
    ),
    "eval data bad line": (
        lambda t, m: ["eval", "--task", str(write(t / "d.jsonl", f"{GOOD_ROW}\n{{\n"))],
        2,
        ("d.jsonl, line 2",),
    ),
    # 3. the user's code
    "factory raises ValueError": (
        lambda t, m: [
            "train",
            "--task",
            user_module(t, m, "def make(**options):\n    raise ValueError('n must be > 0')\n")
            + ":make",
        ],
        2,
        ("task factory user_tasks_", ":make raised ValueError: n must be > 0", ".py, line 2"),
    ),
    "factory has a bug": (
        lambda t, m: [
            "eval",
            "--task",
            user_module(t, m, "def make(**options):\n    return options['size'] + 1\n") + ":make",
        ],
        2,
        ("task factory user_tasks_", ":make raised KeyError: size", ".py, line 2"),
    ),
    "task class raises": (
        lambda t, m: [
            "train",
            "--task",
            user_module(
                t,
                m,
                "from zo_llm.tasks import Task\n"
                "class Mine(Task):\n"
                "    def __init__(self, config=None):\n"
                "        raise RuntimeError('no data here')\n"
                "    examples = prompt = reward = None\n",
            )
            + ":Mine",
        ],
        2,
        (":Mine raised RuntimeError: no data here", ".py, line 4"),
    ),
    "module fails to import": (
        lambda t, m: ["train", "--task", user_module(t, m, "x = 1 / 0\n") + ":make"],
        2,
        ("task factory user_tasks_", ": importing user_tasks_", "ZeroDivisionError", ".py, line 1"),
    ),
    "factory given a wrong option": (
        lambda t, m: [
            "train",
            "--task",
            user_module(t, m, "def make(size=1):\n    pass\n") + ":make",
            "--task-opt",
            "sise=2",
        ],
        2,
        (":make raised TypeError: make() got an unexpected keyword argument 'sise'",
         "--task-opt"),
    ),
    "task class left abstract": (
        lambda t, m: [
            "train",
            "--task",
            user_module(t, m, "from zo_llm.tasks import Task\nclass Mine(Task):\n    pass\n")
            + ":Mine",
        ],
        2,
        (":Mine raised TypeError: Can't instantiate abstract class Mine",),
    ),
    "factory not found": (
        lambda t, m: ["train", "--task", user_module(t, m, "pass\n") + ":make"],
        2,
        ("cannot import 'make' from 'user_tasks_",),
    ),
    "factory returns no task": (
        lambda t, m: ["train", "--task", user_module(t, m, "make = lambda: 42\n") + ":make"],
        2,
        (":make' is not a Task",),
    ),
    # 4. model folders (the weights are junk: each is refused before they are read)
    "model without tokenizer": (
        lambda t, m: ["eval", "--model", str(model_folder(t, "config.json", weights=b"junk"))],
        2,
        ("{tmp}/model", "no tokenizer files", "tokenizer.json", "tokenizer.model",
         "save_pretrained("),
    ),  # fmt: skip
    "train model without tokenizer": (
        lambda t, m: ["train", "--model", str(model_folder(t, *MODEL)), *QUICK],
        2,
        ("{tmp}/model", "no tokenizer files", "save_pretrained("),
    ),
    "model without config": (
        lambda t, m: ["eval", "--model", str(model_folder(t, *TOKENIZER, weights=b"junk"))],
        2,
        ("{tmp}/model has no config.json", "save_pretrained(folder)"),
    ),
    "model without weights": (
        lambda t, m: ["eval", "--model", str(model_folder(t, "config.json", *TOKENIZER))],
        2,
        ("{tmp}/model has config.json but no weights", "model.safetensors"),
    ),
    "run folder as model": (
        lambda t, m: ["eval", "--model", str(run_folder(t / "run"))],
        2,
        ("{tmp}/run has no config.json: it is a zo-llm run folder", "{tmp}/run/final"),
    ),
    "model weights damaged": (
        lambda t, m: [
            "eval",
            "--model",
            str(model_folder(t, "config.json", *TOKENIZER, weights=b"\x08\x00junk")),
        ],
        2,
        ("{tmp}/model", "SafetensorError", "damaged or incomplete"),
    ),
    "model missing": (
        lambda t, m: ["eval", "--model", str(t / "nope")],
        2,
        ("{tmp}/nope", "does not exist"),
    ),
    # other bad values, refused before anything loads
    "unknown strategy": (lambda t, m: ["train", "--strategy", "x"], 2, ("unknown strategy 'x'",)),
    "unknown task": (lambda t, m: ["eval", "--task", "nope"], 2, ("unknown task 'nope'",)),
    "unknown dtype": (lambda t, m: ["eval", "--dtype", "float8"], 2, ("unknown dtype 'float8'",)),
    "bad int flag": (lambda t, m: ["train", "--iterations", "many"], 2, ("invalid int value",)),
    "bad int option": (
        lambda t, m: ["train", "--task-opt", "train_size=abc"],
        2,
        ("train_size='abc' is not a valid int",),
    ),
    "malformed option": (
        lambda t, m: ["train", "--space-opt", "rank"],
        2,
        ("'rank' is not KEY=VALUE",),
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_a_users_mistake_is_one_line(case, tmp_path, monkeypatch, capsys):
    build, expected_code, fragments = CASES[case]
    argv = build(tmp_path, monkeypatch)
    code, output = run_cli(argv, capsys)
    assert code == expected_code, output
    line = error_line(output)
    for fragment in fragments:
        assert fragment.replace("{tmp}", str(tmp_path)) in line, (fragment, line)


def test_a_bug_in_zo_llm_prints_its_traceback_and_says_so(monkeypatch, capsys):
    from zo_llm.cli import listing

    monkeypatch.setattr(listing, "_describe", None)  # zo-llm's own code now raises TypeError
    code, output = run_cli(["list", "--json"], capsys)
    assert code == 1
    assert "Traceback" in output and "TypeError" in output
    last = output.strip().splitlines()[-1]
    assert "bug in zo-llm" in last and "please report it with the command line" in last
    assert "zo-llm list --json" in last


def test_running_out_of_memory_is_one_line(monkeypatch, capsys):
    from zo_llm.cli import listing

    code = compile("def boom(entry):\n    raise MemoryError\n", listing.__file__, "exec")
    namespace: dict = {}
    exec(code, namespace)  # a function that zo-llm's own file raises from
    monkeypatch.setattr(listing, "_describe", namespace["boom"])
    code, output = run_cli(["list"], capsys)
    assert code == 1
    assert "out of memory" in error_line(output)


def test_ctrl_c_is_not_caught(monkeypatch):
    from zo_llm.cli import listing

    def interrupted(entry):
        raise KeyboardInterrupt

    monkeypatch.setattr(listing, "_describe", interrupted)
    with pytest.raises(KeyboardInterrupt):
        main(["list"])


def test_the_command_prints_no_traceback(tmp_path):
    """The real entry point (``python -m zo_llm``), not only ``main``."""
    config = write(tmp_path / "run.toml", "[task\nname = 1\n")
    done = subprocess.run(
        [sys.executable, "-m", "zo_llm", "train", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith(f"zo-llm train: error: config file {config} is not valid TOML")


# --- zo-llm eval of a model with NaN/inf weights -----------------------------


def test_eval_warns_once_about_non_finite_weights(tmp_path, capsys):
    import torch
    from safetensors.torch import load_file, save_file

    folder = model_folder(tmp_path, "config.json", "generation_config.json", *TOKENIZER)
    weights = load_file(ZO_TINY / "model.safetensors")
    name = "model.embed_tokens.weight"
    weights[name].view(-1)[:3] = torch.tensor([float("nan"), float("inf"), float("nan")])
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    argv = ["eval", "--model", str(folder), "--task", "countdown-easy", "--eval-size", "1"]
    code, output = run_cli([*argv, "--max-new-tokens", "2"], capsys)
    assert code == 0, output
    warnings = [line for line in output.splitlines() if "warning" in line]
    assert len(warnings) == 1
    assert "3 non-finite (NaN or inf) weights in 1 of its" in warnings[0]
    assert name.removesuffix(".weight") in warnings[0]


def test_eval_of_finite_weights_does_not_warn(capsys):
    argv = ["eval", "--model", "zo-tiny", "--eval-size", "1", "--max-new-tokens", "2"]
    code, output = run_cli(argv, capsys)
    assert code == 0, output
    assert "warning" not in output


# --- countdown: whitespace inside an answer ------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        "(1 + 2) * 3",
        "(1\t+ 2)\t* 3",
        "(1\n+ 2) * 3",
        "(1 + 2)\n* 3",  # a newline outside parentheses: the same rule
        "(1 +\r\n2)*3",
        "\n(1+2)*3\n",
    ],
)
def test_countdown_ignores_spaces_tabs_and_newlines_between_tokens(answer):
    """Unicode spaces inside an answer make it invalid, as for the paper's grader
    (tests/test_countdown.py)."""
    assert evaluate_equation(answer) == 9
    assert check_equation(answer, [1, 2, 3], 9)


@pytest.mark.parametrize("answer", ["1 2 + 3", "12\n3 - 100", "(1\n2) * 3"])
def test_countdown_whitespace_never_joins_digits(answer):
    assert evaluate_equation(answer) is None
