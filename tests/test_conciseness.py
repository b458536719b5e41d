"""Conciseness: reward and rescaling, shipped data, sampled evaluation and KL from the base."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from zo_llm.evaluation import evaluate_sampled, evaluate_task
from zo_llm.generation import HFGenerator
from zo_llm.tasks.base import ChatPrompt
from zo_llm.tasks.conciseness import (
    ConcisenessConfig,
    ConcisenessTask,
    conciseness_reward,
    rescale,
)


@pytest.mark.parametrize(
    ("completion", "answer", "reward", "rescaled"),
    [
        ("Paris", "Paris", 0.0, 1.0),
        ("Lyon!", "Paris", 0.0, 1.0),  # only the length counts: a hackable reward
        ("", "Paris", -5.0, 0.9975),
        ("The capital is Paris.", "Paris", -16.0, 0.992),
        ("x" * 1005, "Paris", -1000.0, 0.5),
        ("x" * 2005, "Paris", -2000.0, 0.0),
        ("x" * 5005, "Paris", -5000.0, 0.0),  # clipped
    ],
)
def test_reward_and_rescaling_table(completion, answer, reward, rescaled):
    assert conciseness_reward(completion, answer) == reward
    assert rescale(reward) == pytest.approx(rescaled)
    task = ConcisenessTask()
    assert task.reward({"question": "q", "answer": answer}, completion) == reward


def test_shipped_data_and_metrics():
    task = ConcisenessTask()
    train, held_out = task.examples("train"), task.examples("eval")
    assert (len(train), len(held_out)) == (60, 30)
    assert {e["question"] for e in train}.isdisjoint(e["question"] for e in held_out)
    assert all(0 < len(e["answer"]) <= 20 for e in [*train, *held_out])
    prompt = ConcisenessTask(ConcisenessConfig(chat=False)).prompt(held_out[0])
    assert held_out[0]["question"] in prompt and held_out[0]["answer"] not in prompt
    chat = ConcisenessTask(ConcisenessConfig(chat=True)).prompt(held_out[0])
    assert chat == [{"role": "user", "content": prompt}]
    either = task.prompt(held_out[0])  # default: the tokenizer's template decides
    assert isinstance(either, ChatPrompt) and either.text == prompt and list(either) == chat
    metrics = task.metrics(held_out[:2], ["ab", "abcd"], [-2.0, -2000.0])
    assert metrics == {
        "reward": -1001.0,
        "reward_rescaled": pytest.approx((0.999 + 0.0) / 2),
        "length": 3.0,
        "contains_answer": 0.0,
    }
    answer = held_out[0]["answer"]
    kept = task.metrics(held_out[:2], [f"It is {answer.upper()}.", "no idea"], [0.0, 0.0])
    assert kept["contains_answer"] == 0.5  # the fact asked for, kept by one of two answers


def test_wrong_schema_names_missing_field(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text('{"question": "q", "reply": "a"}\n' * 4)
    with pytest.raises(ValueError, match="lacks field.*answer"):
        ConcisenessTask(ConcisenessConfig(data=str(path))).examples("eval")


def test_sampled_evaluation_is_seeded_and_leaves_global_rng(model, tokenizer):
    task = ConcisenessTask(ConcisenessTask.test_config())
    examples = list(task.examples("eval"))[:2]
    generator = HFGenerator(model, tokenizer, max_new_tokens=6)
    greedy, _ = evaluate_task(generator, task, examples)
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    first, completions = evaluate_sampled(generator, task, examples, samples=3, seed=7)
    assert torch.equal(torch.random.get_rng_state(), state)
    again, same = evaluate_sampled(generator, task, examples, samples=3, seed=7)
    assert same == completions and again == first
    assert len(completions) == 6
    assert set(first) == {f"sampled_{k}" for k in greedy}
    assert math.isfinite(first["sampled_reward_rescaled"])


def test_kl_zero_against_itself_and_positive_after_a_change(model, tokenizer):
    prompts = [e["question"] for e in ConcisenessTask().examples("eval")[:3]]
    base = copy.deepcopy(model)
    generator = HFGenerator(model, tokenizer, max_new_tokens=5)
    same = generator.kl_from(base, generator.prepare(prompts))
    assert same["kl"] == pytest.approx(0.0, abs=1e-6) and same["kl_tokens"] > 0
    with torch.no_grad():
        model.lm_head.weight.add_(0.5 * torch.randn_like(model.lm_head.weight))
    changed = generator.kl_from(base, generator.prepare(prompts))
    assert changed["kl"] > 1e-3
    assert changed["kl_per_sequence"] == pytest.approx(
        changed["kl"] * changed["kl_tokens"] / len(prompts)
    )


def kl_by_definition(model, reference, generator, prompts) -> float:
    """KL(model || reference) per generated token from full forwards of both models on each
    greedy completion (the estimate before it reused generation's logits), one prompt at a
    time: no padding, every position's logits."""
    total = tokens = 0.0
    for ids in generator.prepare(prompts):
        prompt = torch.tensor([ids])
        whole = model.generate(
            input_ids=prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=5,
            do_sample=False, pad_token_id=generator.tokenizer.pad_token_id,
        )  # fmt: skip
        new = whole.shape[1] - prompt.shape[1]
        with torch.no_grad():
            log_p = torch.log_softmax(model(whole).logits[0, -new - 1 : -1].float(), -1)
            log_q = torch.log_softmax(reference(whole).logits[0, -new - 1 : -1].float(), -1)
        total += float((log_p.exp() * (log_p - log_q)).sum(-1).clamp_min(0).sum())
        tokens += new
    return total / tokens


def test_the_cheap_kl_equals_the_estimate_by_its_definition(model, tokenizer):
    """Within 1e-4 relative: measured about 1e-6 on this model, the round-off of a batched
    cached generation against one full forward."""
    prompts = [e["question"] for e in ConcisenessTask().examples("eval")[:4]]
    base = copy.deepcopy(model)
    with torch.no_grad():
        model.lm_head.weight.add_(0.5 * torch.randn_like(model.lm_head.weight))
    generator = HFGenerator(model, tokenizer, max_new_tokens=5)
    cheap = generator.kl_from(base, generator.prepare(prompts))["kl"]
    assert cheap > 1e-3
    assert cheap == pytest.approx(kl_by_definition(model, base, generator, prompts), rel=1e-4)
