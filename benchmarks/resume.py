"""Resume cost of a short and a long run, with and without snapshots.

For each run length, one ES run on the ``full`` space is trained to that
length, then its checkpoint is loaded into a fresh model (what ``--resume``
does before it continues), timed, with the number of updates replayed. With
snapshots (``--snapshot-every``, zo-llm's default 20) the cost is bounded
whatever the length; without them (a period longer than the run) it grows
with the run, as every past update is replayed from the base model.

    python benchmarks/resume.py                         # zo-tiny, 5 and 45 iterations
    python benchmarks/resume.py --lengths 5,85 --population 30

Run alone: the numbers are wall-clock times.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

import zo_llm
from zo_llm.rundir import RunDir


def train(out: Path, args: argparse.Namespace, length: int, snapshot_every: int) -> None:
    zo_llm.train(
        model=args.model,
        out=str(out),
        iterations=length,
        batch_size=2,
        max_new_tokens=4,
        eval_every=0,
        eval_size=2,
        progress=False,
        tensorboard=False,
        snapshot_every=snapshot_every,
        strategy_options={"population": args.population},
    )


def load_seconds(out: Path) -> tuple[float, int, str | None]:
    """Seconds to load the run's checkpoint into a fresh model, updates replayed, snapshot."""
    rundir = RunDir(out)
    state = rundir.load_checkpoint()
    experiment = zo_llm.Experiment(zo_llm.resolve(rundir.read_config()))
    start = time.perf_counter()
    experiment.load_state_dict(state)
    return time.perf_counter() - start, experiment.space.replayed_updates, state["snapshot"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="zo-tiny")
    parser.add_argument("--lengths", default="5,45", help="run lengths in iterations")
    parser.add_argument("--population", type=int, default=30)
    parser.add_argument("--snapshot-every", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lengths = [int(n) for n in args.lengths.split(",")]
    print(f"{args.model}, es/full, N = {args.population}, {args.threads} threads\n")
    print("| iterations | snapshots | checkpoint's snapshot | updates replayed | load seconds |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as scratch:
        for length in lengths:
            for period, label in ((args.snapshot_every, f"every {args.snapshot_every}"),
                                  (10**9, "none")):  # fmt: skip
                out = Path(scratch) / f"{length}-{period}"
                train(out, args, length, period)
                seconds, replayed, snapshot = load_seconds(out)
                print(
                    f"| {length} | {label} | {snapshot or '-'} | {replayed} | {seconds:.2f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
