"""A probe task (--probe-task): scored beside the held-out set, never trained on."""

from __future__ import annotations

import pytest

import zo_llm

SETTINGS = {
    "model": "zo-tiny",
    "task": "countdown-easy",
    "eval_size": 4,
    "iterations": 1,
    "population": 2,
    "batch_size": 2,
    "max_new_tokens": 24,
    "eval_every": 1,
    "progress": False,
    "tensorboard": False,
}
PROBE_MODULE = '''
from zo_llm.tasks.countdown import CountdownTask

class OneLine(CountdownTask):
    """Countdown prompts whose completions must end at the first newline."""

    stop = ("\\\\n",)

    def reward(self, example, completion):
        return 0.0 if "\\\\n" in completion else 1.0

one_line = OneLine(OneLine.config_class(min_numbers=2, max_numbers=2, max_number=30))
'''


@pytest.fixture
def probe_module(tmp_path, monkeypatch):
    (tmp_path / "probe_tasks.py").write_text(PROBE_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "probe_tasks:one_line"


def test_a_probe_is_scored_at_every_evaluation_with_its_own_stop_strings(probe_module):
    run = zo_llm.train(**SETTINGS, probe_task=probe_module, probe_size=3, sigma=0.05, lr=0.05)
    evals = [r for r in run.records if r["type"] == "eval"]
    assert [r["iteration"] for r in evals] == [0, 1]
    for record in evals:
        assert record["probe_reward"] == 1.0  # every completion ended at its first newline
        assert record["probe_reward_failures"] == 0 and "probe_accuracy" in record
    assert len(run.parts.probe.examples) == 3
    # the run's own task has no stop string: its completions run past newlines
    prompts = [run.task.prompt(e) for e in run.eval_examples]
    assert any("\n" in text for text in run.generator.generate(run.generator.prepare(prompts)))


def test_a_run_that_changes_nothing_reports_equal_probe_metrics(probe_module):
    run = zo_llm.train(**SETTINGS, probe_task="arithmetic", probe_size=8, lr=1e-12)
    first, last = (
        {k: v for k, v in r.items() if k.startswith("probe_")}
        for r in run.records
        if r["type"] == "eval"
    )
    assert first == last and "probe_accuracy" in first


def test_an_unknown_probe_task_is_refused_before_the_model_loads(monkeypatch):
    import zo_llm.assembly

    monkeypatch.setattr(zo_llm.assembly, "load_base", lambda *a: pytest.fail("model loaded"))
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        zo_llm.train(**SETTINGS, probe_task="nope")
