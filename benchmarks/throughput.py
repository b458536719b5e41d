"""Seconds per member of one ES iteration, against generation alone: spaces x evaluators.

For each (space, evaluator), one ``Experiment.step()`` of ES with N members
(on its own minibatch of ``--prompts`` countdown-easy prompts, which are all
of similar length) is timed and divided by N, then compared with

- pure generation of the minibatch (``TextGenerator.generate``): what one
  member must cost at least when members run one after another;
- plain batched generation of the N x prompts rows (the same row budget): the
  physical limit per member when all members run as rows of one batch.

    python benchmarks/throughput.py                                  # zo-tiny, quick
    python benchmarks/throughput.py --model smollm2-135m --population 8 --threads 2

Each configuration gets a freshly loaded model (an iteration moves the
weights). Times are the best of ``--repeats`` after one warm-up.
"""

from __future__ import annotations

import argparse
import time

import torch

import zo_llm
from zo_llm.models.generation import TextGenerator

CONFIGS = [("full", "sequential"), ("lowrank", "sequential"), ("lowrank", "batched")]


def best_of(repeats: int, work) -> float:
    work()  # warm-up: first calls allocate and compile kernels
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def settings(args: argparse.Namespace, space: str, evaluator: str) -> dict:
    return {
        "model": args.model,
        "dtype": args.dtype,
        "space": space,
        "evaluator": evaluator,
        "task": "countdown-easy",
        "batch_size": args.prompts,
        "max_new_tokens": args.tokens,
        "generation_batch_size": args.rows,
        "population": args.population,
        "eval_every": 0,
        "progress": False,
        "tensorboard": False,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="zo-tiny")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--population", type=int, default=8)
    parser.add_argument("--rows", type=int, default=64, help="row budget per forward batch")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model, tokenizer = zo_llm.load_model(args.model, args.dtype)
    task = zo_llm.TASKS.get("countdown-easy")()
    examples = list(task.examples("train"))[: args.prompts]
    generator = TextGenerator(model, tokenizer, args.tokens, args.rows)
    encoded = generator.encode([task.prompt(e) for e in examples])
    pure = best_of(args.repeats, lambda: generator.generate(encoded))
    rows = encoded * args.population
    limit = best_of(args.repeats, lambda: generator.generate(rows)) / args.population

    print(f"{args.model} {args.dtype}, {args.threads} threads, {args.prompts} prompts x "
          f"{args.tokens} tokens, N = {args.population}, row budget {args.rows}")  # fmt: skip
    print(f"pure generation of the minibatch: {pure:.3f} s; batched limit per member: "
          f"{limit:.3f} s ({limit / pure:.2f} x)\n")  # fmt: skip
    print("| space | evaluator | s per member | / pure generation | / batched limit |")
    print("|---|---|---|---|---|")
    for space, evaluator in CONFIGS:
        experiment = zo_llm.Experiment(zo_llm.resolve(settings(args, space, evaluator)))
        per_member = best_of(args.repeats, experiment.step) / args.population
        print(f"| {space} | {evaluator} | {per_member:.3f} | {per_member / pure:.2f} | "
              f"{per_member / limit:.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
