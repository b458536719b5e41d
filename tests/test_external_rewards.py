"""Rewards from elsewhere: math-verify grading, a reward model, a reward server."""

from __future__ import annotations

import importlib.util
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch
from conftest import char_tokenizer

import zo_llm
from zo_llm.components import build_task
from zo_llm.errors import RewardsFailed
from zo_llm.evaluation import external
from zo_llm.evaluation.external import RewardModel, RewardServer, check_reward_sources
from zo_llm.evaluation.rewards import RewardScorer
from zo_llm.tasks.math_grading import math_equal

pytest.importorskip("math_verify")

RUN = {"model": "zo-tiny", "population": 2, "batch_size": 2, "iterations": 1, "eval_size": 4,
       "max_new_tokens": 8, "reward_timeout": 5}  # fmt: skip


# --- math-verify -------------------------------------------------------------


@pytest.mark.parametrize(
    ("completion", "answer", "expected"),
    [
        ("0.5", "1/2", 1.0),
        ("\\frac{1}{2}", "0.5", 1.0),
        ("so the answer is \\boxed{\\frac12}", "1/2", 1.0),
        ("It is $2^{10}$.", "1024", 1.0),
        ("0.49", "1/2", 0.0),
        ("no number here", "3", 0.0),
    ],
)
def test_math_equal_scores_equivalent_forms_alike(completion, answer, expected):
    assert math_equal(completion, answer) == expected


def test_file_and_gsm8k_tasks_take_reward_math(tmp_path):
    data = tmp_path / "half.jsonl"
    data.write_text("\n".join(json.dumps({"prompt": f"q{i}", "answer": "1/2"}) for i in range(4)))
    task = build_task(str(data), {"reward": "math"})
    example = task.examples("eval")[0]
    assert [task.reward(example, c) for c in ("0.5", "\\frac{1}{2}", "2")] == [1.0, 1.0, 0.0]
    gsm8k = build_task("gsm8k", {**zo_llm.tasks.GSM8KTask.test_config().__dict__, "reward": "math"})
    for example in gsm8k.examples("eval"):  # 70, 1000...: gold numbers ending in zeros too
        number = example["answer"].split("####")[-1].strip().replace(",", "")
        assert gsm8k.reward(example, f"so \\boxed{{{number}}}") == 1.0, number
        assert gsm8k.reward(example, f"\\boxed{{{number}1}}") == 0.0, number
    with pytest.raises(ValueError, match="reward='maths'; use one of: number, math"):
        build_task("gsm8k", {"reward": "maths"})


def test_a_missing_math_verify_is_refused_with_the_install_command(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "math_verify" else real(n, *a)
    )
    with pytest.raises(ValueError, match=r"needs math_verify: pip install 'zo-llm\[math\]'"):
        build_task("file", {"data": str(tmp_path / "x.jsonl"), "reward": "math"})


# --- a reward model ----------------------------------------------------------


def tiny_classifier(folder, labels=1):
    from transformers import LlamaConfig, LlamaForSequenceClassification

    tokenizer = char_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32,
                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                         num_labels=labels, pad_token_id=0)  # fmt: skip
    LlamaForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_the_reward_model_scores_prompt_and_completion_in_batches(tmp_path, monkeypatch):
    folder = tiny_classifier(tmp_path / "rm")
    monkeypatch.setattr(external, "MODEL_BATCH", 2)  # 3 records: two batches, one padded
    model = RewardModel(str(folder), "cpu")
    prompts, completions = ["1 + 1 =", "2 + 2 =", "a"], [" 2", " 5 or so", " b"]
    outcomes = model.score(prompts, completions, [{}] * 3)
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    direct = AutoModelForSequenceClassification.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    for (kind, value), prompt, completion in zip(outcomes, prompts, completions, strict=True):
        ids = tokenizer(prompt + completion, return_tensors="pt")
        assert kind == "value"
        with torch.no_grad():
            expected = float(direct(**ids).logits[0, 0])
        assert value == pytest.approx(expected, abs=1e-5)


def test_a_run_adds_the_reward_models_score_and_logs_each_part(tmp_path):
    folder = tiny_classifier(tmp_path / "rm")
    zo_llm.train(**RUN, reward_model=str(folder), task_reward_weight=0.5, out=str(tmp_path / "run"))
    first = zo_llm.read_metrics(tmp_path / "run")[0]
    # the task's own metrics stay the task's; the model's mean and the weighted sum beside them
    assert {"accuracy", "reward", "reward_model", "reward_total"} <= set(first)
    assert first["reward_total"] == pytest.approx(0.5 * first["reward"] + first["reward_model"])


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: zo_llm.load_model("zo-tiny", "float32", "cpu")[0].save_pretrained(p) or p,
         "is a LlamaForCausalLM, not a sequence classifier"),
        (lambda p: tiny_classifier(p, labels=2), "has 2 labels; a reward model has one"),
        (lambda p: p, "no model config found"),
    ],
)  # fmt: skip
def test_a_reward_model_that_is_not_one_is_refused_before_the_policy_loads(tmp_path, make, message):
    folder = make(tmp_path / "rm")
    with pytest.raises(ValueError, match=message):
        check_reward_sources(zo_llm.resolve({"reward_model": str(folder)}).loop)


# --- a reward server ---------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    """Answers as ``server.mode`` says: good numbers, or one kind of bad answer."""

    def do_POST(self):  # noqa: N802 -- http.server's name
        records = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.seen.append(records)
        mode = self.server.mode
        if mode == "slow":
            time.sleep(2)
        if mode == "error":
            self.send_error(500, "broken")
            return
        values = [len(r["completion"]) / 10 for r in records]
        answer = {"good": values, "wrapped": {"rewards": values}, "short": values[:-1],
                  "strings": [str(v) for v in values], "slow": values}[mode]  # fmt: skip
        body = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setattr(external, "BACKOFF", (0.01, 0.01))  # a 500 is retried: quickly here
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.mode, httpd.seen = "good", []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def url_of(httpd):
    return f"http://127.0.0.1:{httpd.server_address[1]}/score"


@pytest.mark.parametrize("mode", ["good", "wrapped"])
def test_the_server_gets_the_records_and_its_numbers_are_the_rewards(server, mode):
    server.mode = mode
    outcomes = RewardServer(url_of(server), 5).score(
        ["p1", "p2"], ["abc", "abcdef"], [{"a": 1}, {"a": 2}]
    )
    assert outcomes == [("value", 0.3), ("value", 0.6)]
    first, second = server.seen[-1]
    assert first == {"prompt": "p1", "completion": "abc", "example": {"a": 1}}
    assert second == {"prompt": "p2", "completion": "abcdef", "example": {"a": 2}}


@pytest.mark.parametrize(
    ("mode", "kind"),
    [("error", "reward server: HTTP 500"), ("short", "reward server: wrong count"),
     ("strings", "reward server: returned str"), ("slow", "reward server: timed out")],
)  # fmt: skip
def test_each_bad_answer_is_a_failure_of_its_own_kind(server, mode, kind):
    server.mode = mode
    outcomes = RewardServer(url_of(server), 1).score(["p"] * 2, ["a", "b"], [{}, {}])
    assert [o[0] for o in outcomes] == [kind, kind]


def test_a_refused_connection_is_retried_then_fails(server, monkeypatch):
    url = url_of(server)
    server.shutdown()
    server.server_close()
    monkeypatch.setattr(external, "BACKOFF", (0.01, 0.01))
    sleeps = []
    monkeypatch.setattr(external.time, "sleep", sleeps.append)
    outcomes = RewardServer(url, 1).score(["p"], ["a"], [{}])
    assert outcomes[0][0] == "reward server: connection failed" and sleeps == [0.01, 0.01]
    with pytest.raises(ValueError, match="cannot connect.*start the reward server"):
        check_reward_sources(zo_llm.resolve({"reward_url": url}).loop)


def test_scorer_sums_the_weighted_parts_and_a_failure_is_nan(server):
    task = build_task("countdown-easy", {"eval_size": 2})
    examples = list(task.examples("eval"))
    scorer = RewardScorer(task, sources=[(RewardServer(url_of(server), 5), 2.0)], task_weight=0.0)
    assert scorer(examples, ["ab", "abcd"]) == pytest.approx([0.4, 0.8])
    assert scorer.last_parts["reward_url"] == pytest.approx([0.2, 0.4])
    server.mode = "strings"
    assert all(v != v for v in scorer(examples, ["ab", "abcd"]))  # NaN: failures
    assert scorer.last_failure[0] == "reward server: returned str"


def test_a_run_goes_on_with_a_good_server_and_stops_when_every_reward_fails(server, tmp_path):
    zo_llm.train(**RUN, reward_url=url_of(server), out=str(tmp_path / "good"))
    first = zo_llm.read_metrics(tmp_path / "good")[0]
    assert first["reward_url"] > 0 and first["reward_failures"] == 0
    server.mode = "error"
    with pytest.raises(
        RewardsFailed, match="every reward of the held-out evaluation failed.*HTTP 500"
    ):
        zo_llm.train(**RUN, reward_url=url_of(server), out=str(tmp_path / "bad"))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"reward_url": "localhost:8000"}, "not an http\\(s\\) URL"),
        ({"reward_model_weight": 2.0}, "reward_model_weight=2.0 is set without a reward_model"),
        ({"task_reward_weight": 0.0}, "without either it changes nothing"),
        ({"reward_url": "http://h", "reward_url_weight": 0}, "drop --reward_url"),
        ({"reward_url": "http://h", "task_reward_weight": float("nan")}, "must be a finite"),
        ({"reward_model_device": "cpu"}, "without a reward_model"),
    ],
)
def test_reward_settings_that_mean_nothing_are_refused_with_the_config(settings, message):
    with pytest.raises(ValueError, match=message):
        zo_llm.resolve(settings)
