"""Throughput of one ES iteration per space and evaluator, against generation alone.

For each prompt shape (prompts x new tokens) and each (space, evaluator), one
``Experiment.step()`` of ES with N members is timed, in a fresh process (so
that each peak RSS is its own), and compared with:

- pure generation of the minibatch (``HFGenerator.generate``, one member's
  rows): what a member costs at least when members run one after another;
- plain batched generation of the N x prompts rows at the batched
  evaluator's row budget: the physical limit of running members as rows;
- the reference loop: the released algorithm of Qiu et al. (per-tensor noise
  re-seeded with the member seed, drawn in the weight dtype, added then
  subtracted, the update applied seed by seed; one member at a time);
- the peak RSS of plain generation of the same rows at the same row budget.

Batched and sequential runs of a space evaluate the same candidates on the same
prompts, so the share of (member, prompt) rows whose completions agree
measures how often fp32 round-off of the batched forward changes a greedy token.

    python benchmarks/throughput.py --quick                     # zo-tiny, seconds
    python benchmarks/throughput.py --model /path/to/smollm2    # 8x32 and 16x4, N = 30
    python benchmarks/throughput.py --model /path/to/smollm2 --shapes 8x32 \
        --configs full:sequential,full:sequential:vllm,lowrank:batched,lowrank:sequential:vllm

A third field of a row names the generation backend (``hf`` by default): a
``vllm`` row is divided by vLLM's own plain generation of the minibatch, by
the ``hf`` row of the same space, and its completions are compared with the
``hf`` sequential row's (the same candidates on the same prompts).

Run alone on a quiet machine: the numbers are wall-clock times.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

CONFIGS = [
    ("full", "sequential"),
    ("lowrank", "sequential"),
    ("lowrank", "batched"),
    ("lora", "sequential"),
    ("lora", "batched"),
    ("svd", "sequential"),
    ("svd", "batched"),
]
ES = {"sigma": 0.001, "lr": 0.0005}


def timed(work: Callable[[], Any]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- one measurement, in its own process ------------------------------------------------


def experiment(
    job: dict[str, Any], space: str, evaluator: str, seen: list[str] | None = None
) -> Any:
    """The run of one table row; ``seen`` collects every scored completion, in order."""
    import torch

    import zo_llm

    torch.set_num_threads(job["threads"])
    task = zo_llm.TASKS.get("countdown-easy")()
    if seen is not None:
        reward = task.reward
        task.reward = lambda example, text: seen.append(text) or reward(example, text)
    settings = {
        "model": job["model"],
        "space": space,
        "evaluator": evaluator,
        "batch_size": job["prompts"],
        "max_new_tokens": job["tokens"],
        "population": job["population"],
        "eval_every": 0,
        "progress": False,
        "reward_timeout": 0,  # rewards in this process: ``seen`` records the completions
        "backend": job.get("backend", "hf"),
        **ES,
    }
    return zo_llm.Experiment(zo_llm.resolve(settings), task=task)


def measure_plain(job: dict[str, Any]) -> dict[str, Any]:
    """Generation alone: the minibatch once, or the N x prompts rows at the batched budget."""
    from zo_llm.evaluation import BatchedEvaluator
    from zo_llm.generation import HFGenerator

    run = experiment(job, "full", "sequential")
    encoded = run.generator.prepare([run.task.prompt(e) for e in run.minibatch(1)])
    run.generator.generate(encoded)  # warm-up
    if job["kind"] == "plain-eval":
        return {"seconds": timed(lambda: run.generator.generate(encoded)), "rss": peak_rss_mb()}
    rows = BatchedEvaluator.default_rows(run.model.device)
    generator = HFGenerator(run.model, run.tokenizer, job["tokens"], rows)
    seconds = timed(lambda: generator.generate(encoded * job["population"]))
    return {"seconds": seconds, "rss": peak_rss_mb(), "rows": rows}


#: The space's methods whose time is the "weights" share of a step's profile.
WEIGHT_METHODS = ("perturb", "reperturb", "unperturb", "shift", "unshift", "apply_update")


def clocked(owner: Any, name: str, spent: list[float]) -> None:
    """Replaces ``owner.name`` by a wrapper that adds its wall time to ``spent[0]``."""
    method = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - start

    setattr(owner, name, wrapper)


def measure_step(job: dict[str, Any]) -> dict[str, Any]:
    """One ``Experiment.step()`` of ES: seconds, peak RSS, the scored completions and a profile.

    The profile splits the step into generation (every ``generate_blocks``
    call: the member terms of a batched space run inside it) and weight work
    (perturb, restore and update of the space); the rest is scoring and the
    strategy.
    """
    seen: list[str] = []
    run = experiment(job, job["space"], job["evaluator"], seen)
    encoded = run.generator.prepare([run.task.prompt(e) for e in run.minibatch(1)])
    run.generator.generate(encoded)  # warm-up, as for plain generation
    seen.clear()
    generation, weights = [0.0], [0.0]
    clocked(run.generator, "generate_blocks", generation)
    for name in WEIGHT_METHODS:
        if hasattr(run.space, name):
            clocked(run.space, name, weights)
    seconds = timed(run.step)
    return {
        "seconds": seconds,
        "rss": peak_rss_mb(),
        "completions": seen,
        "generation": generation[0],
        "weights": weights[0],
    }


def measure_noise(job: dict[str, Any]) -> dict[str, Any]:
    """Seconds of one draw of the ``full`` space's noise for the whole model, on the threads.

    Drawing is the part of a ``full`` member no pass-count can remove: ES
    draws each member's noise three times (to perturb, to take it off when
    moving to the next member, and in the update), so ``pure generation +
    3 draws`` is the floor of a sequential ``full`` member.
    """
    run = experiment(job, "full", "sequential")
    one_draw = [(7, 1.0)]  # the norm of one seed's noise: a draw plus a cheap reduction
    run.space.update_norm(one_draw)  # warm-up: the thread pool and the scratch buffers
    return {"seconds": timed(lambda: run.space.update_norm(one_draw)), "dim": run.space.dim}


def measure_reference(job: dict[str, Any]) -> dict[str, Any]:
    """The reference loop (the paper's released algorithm) on the same model and prompts."""
    import numpy as np
    import torch

    run = experiment(job, "full", "sequential")
    examples = run.minibatch(1)
    encoded = run.generator.prepare([run.task.prompt(e) for e in examples])
    run.generator.generate(encoded)  # warm-up
    params = list(run.model.parameters())
    population, sigma, lr = job["population"], ES["sigma"], ES["lr"]
    seeds = np.random.default_rng(0).integers(0, 2**31, population).tolist()

    def noise(seed: int, param: torch.Tensor) -> torch.Tensor:
        generator = torch.Generator(device=param.device).manual_seed(seed)
        return torch.randn(param.shape, generator=generator, dtype=param.dtype)

    @torch.no_grad()
    def iteration() -> None:
        rewards = []
        for seed in seeds:
            for param in params:
                param.add_(sigma * noise(seed, param))
            texts = run.generator.generate(encoded)
            scored = zip(examples, texts, strict=True)
            rewards.append(np.mean([run.task.reward(e, t) for e, t in scored]))
            for param in params:
                param.sub_(sigma * noise(seed, param))
        rewards = np.asarray(rewards)
        z = (rewards - rewards.mean()) / (rewards.std() + 1e-8)
        for seed, weight in zip(seeds, z, strict=True):
            for param in params:
                param.add_(lr / population * float(weight) * noise(seed, param))

    return {"seconds": timed(iteration), "rss": peak_rss_mb()}


MEASURES = {
    "plain-eval": measure_plain,
    "plain-batched": measure_plain,
    "reference": measure_reference,
    "step": measure_step,
    "noise": measure_noise,
}


def child(job: dict[str, Any]) -> None:
    print(json.dumps(MEASURES[job["kind"]](job)))


# --- the table --------------------------------------------------------------------------


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--job", json.dumps(job)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise SystemExit(f"measurement {job} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def agreement(first: list[str], second: list[str]) -> float:
    return sum(a == b for a, b in zip(first, second, strict=True)) / len(first)


def shape_table(
    base: dict[str, Any], prompts: int, tokens: int, configs: list[tuple[str, str, str]]
) -> None:
    job = {**base, "prompts": prompts, "tokens": tokens}
    population = job["population"]
    pure = run_job({**job, "kind": "plain-eval"})
    limit = run_job({**job, "kind": "plain-batched"})
    reference = run_job({**job, "kind": "reference"})
    limit_per_member = limit["seconds"] / population
    print(
        f"\n### {prompts} prompts x {tokens} tokens, N = {population}\n\n"
        f"pure generation of the minibatch: {pure['seconds']:.2f} s ({pure['rss']:.0f} MB); "
        f"plain batched generation of the {population * prompts} rows at {limit['rows']} rows "
        f"per batch: {limit_per_member:.2f} s per member "
        f"({limit_per_member / pure['seconds']:.2f} x pure; {limit['rss']:.0f} MB); "
        f"reference loop: {reference['seconds']:.1f} s per iteration "
        f"({reference['seconds'] / population / pure['seconds']:.2f} x pure per member)"
    )
    if any(space == "full" for space, _, _ in configs):
        draw = run_job({**job, "kind": "noise"})["seconds"]
        print(
            f"one draw of the `full` noise: {draw:.2f} s; floor of a sequential `full` "
            f"member (pure generation + 3 draws): {1 + 3 * draw / pure['seconds']:.2f} x pure"
        )
    print(
        "\nprofile: generation = every generate call (member terms included), "
        "weights = perturb, restore and update, as shares of the step\n"
    )
    engines = {"hf": pure}
    for backend in sorted({backend for _, _, backend in configs} - {"hf"}):
        engines[backend] = run_job({**job, "kind": "plain-eval", "backend": backend})
        print(
            f"pure generation of the minibatch on {backend}: {engines[backend]['seconds']:.2f} s "
            f"({engines[backend]['seconds'] / pure['seconds']:.2f} x hf; "
            f"{engines[backend]['rss']:.0f} MB)"
        )
    print(
        "\n| space | evaluator | backend | s per member | / pure generation (its backend) "
        "| / batched limit | / hf, same space | iteration / reference | peak RSS / plain "
        "| rows = hf sequential | generation | weights |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    sequential: dict[str, list[str]] = {}
    on_hf: dict[str, float] = {}
    for space, evaluator, backend in configs:
        step = run_job(
            {**job, "kind": "step", "space": space, "evaluator": evaluator, "backend": backend}
        )
        per_member = step["seconds"] / population
        plain = engines[backend] if evaluator == "sequential" else limit
        if backend == "hf":
            on_hf[space] = per_member
        if evaluator == "sequential" and backend == "hf":
            sequential[space] = step["completions"]
            agree = "-"
        elif space in sequential:
            agree = f"{agreement(step['completions'], sequential[space]):.1%}"
        else:
            agree = "(no hf sequential run)"
        versus_hf = f"{per_member / on_hf[space]:.2f}" if space in on_hf else "-"
        print(
            f"| {space} | {evaluator} | {backend} | {per_member:.2f} "
            f"| {per_member / engines[backend]['seconds']:.2f} "
            f"| {per_member / limit_per_member:.2f} | {versus_hf} "
            f"| {step['seconds'] / reference['seconds']:.2f} | {step['rss'] / plain['rss']:.2f} "
            f"| {agree} | {step['generation'] / step['seconds']:.0%} "
            f"| {step['weights'] / step['seconds']:.0%} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--shapes", default="8x32,16x4", help="prompts x new tokens, comma list")
    parser.add_argument("--population", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--configs",
        default=",".join(f"{space}:{evaluator}" for space, evaluator in CONFIGS),
        help="SPACE:EVALUATOR[:BACKEND] rows of the table, comma list (backend: hf or vllm)",
    )
    parser.add_argument("--quick", action="store_true", help="zo-tiny, 4x8, N = 6: a smoke run")
    parser.add_argument("--job", help=argparse.SUPPRESS)  # one measurement (a child process)
    args = parser.parse_args()
    if args.job:
        child(json.loads(args.job))
        return
    if args.quick:
        args.model, args.shapes, args.population = "zo-tiny", "4x8", 6
    base = {"model": args.model, "population": args.population, "threads": args.threads}
    print(f"{args.model}, fp32, {args.threads} threads, ES sigma {ES['sigma']}; "
          "each cell one iteration in a fresh process after a warm-up generation")  # fmt: skip
    configs = [(*entry.split(":"), "hf")[:3] for entry in args.configs.split(",")]
    for shape in args.shapes.split(","):
        prompts, tokens = (int(part) for part in shape.split("x"))
        shape_table(base, prompts, tokens, configs)


if __name__ == "__main__":
    main()
