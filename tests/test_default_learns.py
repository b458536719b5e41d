"""The out-of-the-box run learns: `zo-llm train`'s defaults raise zo-tiny's held-out accuracy.

A learning check on the shipped model and task, cut to 4 of the default 10
iterations and 100 held-out problems so it costs about 20 s on one thread.
Measured (benchmarks/default_run.py, all 200 problems): 0.29 -> 0.855 at
iteration 4 on seeds 0 and 1, so a 0.2 rise leaves a wide margin.
"""

from __future__ import annotations

import pytest

import zo_llm


@pytest.mark.slow
def test_default_training_raises_heldout_accuracy():
    experiment = zo_llm.train(iterations=4, eval_every=0, eval_size=100, progress=False)
    evals = [r for r in experiment.records if r["type"] == "eval"]
    assert [r["iteration"] for r in evals] == [0, 4]
    before, after = evals[0]["accuracy"], evals[-1]["accuracy"]
    assert 0.05 <= before <= 0.40  # the shipped model is imperfect but not hopeless
    assert after >= before + 0.2, (before, after)
    assert evals[-1]["format"] > evals[0]["format"]  # it learned to use the <answer> tags
