"""Batched evaluation: every space that supports it gives the sequential evaluator's numbers."""

from __future__ import annotations

import pytest
import torch
from conftest import make_char_task, tiny_model

import zo_llm
from zo_llm.evaluation import BatchedEvaluator, SequentialEvaluator, choose_evaluator
from zo_llm.generation import HFGenerator
from zo_llm.parametrizations import PARAMETRIZATIONS
from zo_llm.strategies import Candidate, VectorCandidate

BATCHED_SPACES = ["lowrank", "lora", "svd", "tensor"]


def seeded_candidates() -> list[Candidate]:
    """Plain members, an antithetic pair, and members around an offset (ESSAM's round 2)."""
    offset = ((11, 0.02), (12, -0.01))
    return [
        Candidate(1, 0.05),
        Candidate(2, 0.05),
        Candidate(2, -0.05),
        Candidate(3, 0.05, offset),
        Candidate(4, -0.05, offset),
    ]


def vector_candidates(space) -> list[VectorCandidate]:
    generator = torch.Generator().manual_seed(5)
    start = space.get_vector()
    return [
        VectorCandidate(start + 0.3 * torch.randn(start.shape, generator=generator).to(start))
        for _ in range(4)
    ]


def few_shot_task():
    """The char task's prompts (4 characters each for the first ten) after one 18-character
    few-shot prefix."""
    task = make_char_task("1")
    task.prompt = lambda example: "1+1=2;2+2=4;3+3=6;" + example["text"]
    return task


def evaluate(evaluator_class, space_name, tokenizer, candidates_of, rows=4, task=None):
    """Rewards and completions, in scoring order, of one evaluator on a float64 tiny model."""
    task = task if task is not None else make_char_task("1")
    scored = []
    reward = task.reward
    task.reward = lambda example, text: scored.append(text) or reward(example, text)
    examples = list(task.examples("train"))[:6]
    model = tiny_model(len(tokenizer), seed=3, dtype=torch.float64)
    space_class = PARAMETRIZATIONS.get(space_name)
    space = space_class(space_class.test_config())
    space.bind(model)
    generator = HFGenerator(model, tokenizer, max_new_tokens=12, batch_size=rows)
    evaluator = evaluator_class(space, generator, task)
    scores = evaluator.evaluate(candidates_of(space), examples)
    untouched = tiny_model(len(tokenizer), seed=3, dtype=torch.float64).state_dict()
    for name, value in model.state_dict().items():  # every member restored (LoRA adds B = 0)
        if name in untouched:
            assert torch.equal(value, untouched[name]), name
    return scores.rewards.tolist(), scored


@pytest.mark.parametrize("space_name", BATCHED_SPACES)
def test_auto_picks_the_batched_evaluator_for_spaces_that_support_it(space_name):
    assert choose_evaluator("auto", PARAMETRIZATIONS.get(space_name)) is BatchedEvaluator


@pytest.mark.parametrize("space_name", BATCHED_SPACES)
@pytest.mark.parametrize("rows", [4, 12, 64])
def test_seeded_members_as_row_blocks_match_sequential_in_float64(tokenizer, space_name, rows):
    """The same completions and rewards, whether a batch holds part of a member or several."""
    sequential = evaluate(SequentialEvaluator, space_name, tokenizer, lambda _: seeded_candidates())
    batched = evaluate(BatchedEvaluator, space_name, tokenizer, lambda _: seeded_candidates(), rows)
    assert batched == sequential
    assert len(set(sequential[1])) > 1  # the members differ


@pytest.mark.parametrize("space_name", BATCHED_SPACES)
def test_a_shared_prompt_prefix_read_once_per_member_changes_no_completion(
    tokenizer, space_name, monkeypatch
):
    """Read once per member (the few-shot prefix) or in every row: the same completions."""
    from zo_llm.generation import hf as generation

    embedded = []
    original = torch.nn.Embedding.forward
    monkeypatch.setattr(
        torch.nn.Embedding,
        "forward",
        lambda self, ids: embedded.append(ids.numel()) or original(self, ids),
    )

    def run(evaluator_class):
        embedded.clear()
        result = evaluate(
            evaluator_class,
            space_name,
            tokenizer,
            lambda _: seeded_candidates(),
            12,
            few_shot_task(),
        )
        return result, sum(embedded)

    (sequential, read_shared), (batched, _) = run(SequentialEvaluator), run(BatchedEvaluator)
    monkeypatch.setattr(generation, "MIN_SHARED_PREFIX", 10**6)  # every row reads it all
    (unshared, read_all), (batched_unshared, _) = run(SequentialEvaluator), run(BatchedEvaluator)
    assert sequential == batched == unshared == batched_unshared
    assert len(set(sequential[1])) > 1  # the members differ
    # the 18 shared characters were read once per member, not once per prompt of each member
    members, prompts = len(seeded_candidates()), 6
    assert read_all - read_shared == members * (prompts - 1) * 18


@pytest.mark.parametrize("space_name", ["lora", "svd", "tensor"])
def test_vector_members_as_row_blocks_match_sequential_in_float64(tokenizer, space_name):
    sequential = evaluate(SequentialEvaluator, space_name, tokenizer, vector_candidates)
    batched = evaluate(BatchedEvaluator, space_name, tokenizer, vector_candidates, rows=12)
    assert batched == sequential
    assert len(set(sequential[1])) > 1


def test_generate_blocks_batches_whole_members_within_the_row_budget(model, tokenizer):
    generator = HFGenerator(model, tokenizer, max_new_tokens=2, batch_size=10)
    seen = []
    generator._generate_batch = lambda rows, blocks: seen.append(len(rows)) or ["x"] * len(rows)
    generator.generate_blocks([[1, 2]] * 3, 7, around_batch=lambda blocks: _recording(blocks, seen))
    # 3 prompts per member, at most 10 rows: 3 members per batch, spread evenly as 2, 2, 3
    assert seen == [range(0, 2), 6, range(2, 4), 6, range(4, 7), 9]
    seen.clear()
    generator.generate_blocks([[1]] * 13, 2, around_batch=lambda blocks: _recording(blocks, seen))
    assert seen == [range(0, 1), 10, range(0, 1), 3, range(1, 2), 10, range(1, 2), 3]


def _recording(blocks, seen):
    seen.append(blocks)
    return torch.no_grad()


def test_lora_vector_strategy_runs_batched(tokenizer):
    run = zo_llm.train(
        model=tiny_model(len(tokenizer)), tokenizer=tokenizer, task=make_char_task("u"),
        strategy="cma-es", space="lora", iterations=2, batch_size=2, max_new_tokens=4,
        eval_every=0, progress=False, population=4,
        space_options={"target_modules": ("q_proj",), "rank": 1, "alpha": 2.0},
    )  # fmt: skip
    assert type(run.evaluator) is BatchedEvaluator
    assert [r["iteration"] for r in run.records if r["type"] == "train"] == [1, 2]


def test_the_row_budget_defaults_per_evaluator_and_device_unless_set(tokenizer):
    def rows(**settings):
        return zo_llm.Experiment(
            zo_llm.resolve({"eval_every": 0, "progress": False, **settings}),
            model=tiny_model(len(tokenizer)), tokenizer=tokenizer, task=make_char_task("u"),
        ).generator.batch_size  # fmt: skip

    assert BatchedEvaluator.default_rows("cpu") == 64
    assert BatchedEvaluator.default_rows("cuda:0") == 512
    assert rows(space="lowrank") == 64
    assert rows(space="full") == SequentialEvaluator.default_rows("cpu") == 32
    assert rows(space="lowrank", generation_batch_size=8) == 8
