"""Throughput of Ray workers: members per second of 1 and 2 workers, and bytes sent.

Times ES iterations (after a first, warm-up one) of the same run in one
process with one torch thread, then on Ray with 1 and 2 workers of one
thread each, and prints members per second, the speed-up over one process
and ``worker_bytes`` (what the driver sent per iteration).

    python benchmarks/workers.py                              # zo-tiny
    python benchmarks/workers.py --model /path/to/smollm2 --iterations 2

Run alone on the machine: the numbers are wall-clock times.
"""

from __future__ import annotations

import argparse
import statistics

import zo_llm


def members_per_second(args: argparse.Namespace, workers: int | None) -> tuple[float, float]:
    """Members per second after the warm-up iteration, and the mean bytes sent per iteration."""
    settings = {
        "model": args.model,
        "strategy": "es",
        "space": args.space,
        "population": args.population,
        "batch_size": args.prompts,
        "max_new_tokens": args.tokens,
        "iterations": args.iterations + 1,
        "eval_every": 0,
        "eval_size": 1,
        "progress": False,
        "tensorboard": False,
        "threads": 1,
    }
    if workers is not None:
        settings["workers"] = workers
        if workers == 1:
            settings["ray_address"] = "local"  # Ray with one worker, not this process
    run = zo_llm.train(**settings)
    timed = [r for r in run.records if r["type"] == "train"][1:]
    seconds = sum(r["iteration_seconds"] for r in timed)
    sent = statistics.mean(r.get("worker_bytes", 0) for r in timed)
    return args.population * len(timed) / seconds, sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="zo-tiny")
    parser.add_argument("--space", default="full")
    parser.add_argument("--population", type=int, default=8)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--iterations", type=int, default=2, help="timed, after a warm-up one")
    args = parser.parse_args()
    print(
        f"{args.model}, es/{args.space}, N = {args.population}, {args.prompts} prompts x "
        f"{args.tokens} tokens, 1 torch thread per process\n"
    )
    print("| evaluation | members / s | x one process | bytes sent per iteration |")
    print("|---|---|---|---|")
    alone, _ = members_per_second(args, None)
    print(f"| one process | {alone:.2f} | 1.00 | - |", flush=True)
    for workers in (1, 2):
        rate, sent = members_per_second(args, workers)
        print(f"| Ray, {workers} worker(s) | {rate:.2f} | {rate / alone:.2f} | {sent:.0f} |")


if __name__ == "__main__":
    main()
