"""An int8 frozen base against the float one, for the adapter spaces: memory, speed, accuracy.

For each adapter space (``svd`` and ``lora``) and each base (``float32`` and
``int8``, ``quantize = "int8"``), in a fresh process so each memory figure is
its own:

- the bytes the model's weights take (an int8 weight counts its int8 values
  and its per-channel scales), the process's anonymous and file-backed
  resident memory after the iterations below, and its peak RSS;
- the held-out accuracy of the base on the recipes' arithmetic task (200
  problems: what quantisation alone costs);
- the seconds of one training iteration (28 members x 16 prompts, the
  batched evaluator), the mean of two after a warm-up.

    python benchmarks/quantized_base.py --model /path/to/smollm2-folder
    python benchmarks/quantized_base.py --model zo-tiny --quick   # seconds, a smoke run

Run alone on a quiet machine: the seconds are wall-clock times.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import subprocess
import sys
import time
from typing import Any

CONFIGS = [("svd", None), ("svd", "int8"), ("lora", None), ("lora", "int8")]
#: Each space's strategy: smollm2-cma-es-svd.toml's for svd, ES (the issue's lora screen) for lora.
STRATEGIES = {
    "svd": {"strategy": "cma-es", "population": 28, "sigma": 0.1},
    "lora": {"strategy": "es", "population": 28, "sigma": 0.003, "lr": 0.002},
}


def stored_bytes(tensor: Any) -> int:
    """Bytes a weight takes: a tensor subclass (torchao's Int8Tensor) counts its inner tensors."""
    if hasattr(tensor, "__tensor_flatten__"):
        names, _ = tensor.__tensor_flatten__()
        return sum(stored_bytes(getattr(tensor, name)) for name in names)
    return tensor.numel() * tensor.element_size()


def resident_mb(kind: str) -> float:
    """The process's resident memory now, in MiB: ``VmRSS`` (all), ``RssAnon`` or ``RssFile``.

    A safetensors checkpoint is memory-mapped, so float weights are file pages
    (the page cache's, reclaimable), while a quantised copy is anonymous memory.
    """
    with open("/proc/self/status") as status:
        line = next(x for x in status if x.startswith(f"{kind}:"))
    return int(line.split()[1]) / 1024


def measure(job: dict[str, Any]) -> dict[str, Any]:
    import torch

    import zo_llm
    from zo_llm.evaluation import evaluate_task

    torch.set_num_threads(job["threads"])
    settings = {
        "model": job["model"],
        "space": job["space"],
        "quantize": job["quantize"],
        "task": "arithmetic",
        "batch_size": job["prompts"],
        "max_new_tokens": 5,
        "eval_every": 0,
        "progress": False,
        "threads": job["threads"],
        **STRATEGIES[job["space"]],
    }
    if job["quick"]:
        settings |= {"population": 4, "batch_size": 2, "eval_size": 8}
    run = zo_llm.Experiment(zo_llm.resolve(settings))
    gc.collect()
    weights = sum(stored_bytes(p) for p in run.model.parameters()) / 2**20
    held_out, _ = evaluate_task(run.generator, run.task, run.eval_examples, run.parts.scorer)
    run.step()  # warm-up: thread pools, the strategy's first generation
    start = time.perf_counter()
    for _ in range(2):
        run.step()
    return {
        "weights_mb": weights,
        "anonymous_mb": resident_mb("RssAnon"),
        "file_mb": resident_mb("RssFile"),
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "accuracy": held_out["accuracy"],
        "iteration_seconds": (time.perf_counter() - start) / 2,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--quick", action="store_true", help="4 members x 2 prompts: a smoke run")
    parser.add_argument("--job", help=argparse.SUPPRESS)  # one measurement, in a child process
    args = parser.parse_args()
    if args.job:
        print(json.dumps(measure(json.loads(args.job))))
        return
    rows = []
    for space, quantize in CONFIGS:
        job = {
            "model": args.model,
            "space": space,
            "quantize": quantize,
            "threads": args.threads,
            "prompts": args.prompts,
            "quick": args.quick,
        }
        command = [sys.executable, __file__, "--job", json.dumps(job)]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        rows.append((space, quantize or "float32", json.loads(output.splitlines()[-1])))
    print(f"model {args.model}, {args.threads} threads, arithmetic task (200 held-out problems)\n")
    print("| space | base | weights (MiB) | anonymous / file pages after 3 iterations (MiB) "
          "| peak RSS (MiB) | base accuracy | s / iteration |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for space, base, r in rows:
        print(
            f"| {space} | {base} | {r['weights_mb']:.0f} | {r['anonymous_mb']:.0f} / "
            f"{r['file_mb']:.0f} | {r['peak_mb']:.0f} | {r['accuracy']:.3f} | "
            f"{r['iteration_seconds']:.1f} |"
        )


if __name__ == "__main__":
    main()
