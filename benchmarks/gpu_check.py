"""The checks a GPU machine runs: the device-dependent tests on CUDA, then hf against vllm.

Prepared for a machine with a CUDA GPU (the project's own machine has none);
run it there as one script, with a saved model folder:

    python benchmarks/gpu_check.py --model FOLDER [--skip-tests]

1. pytest of the tests whose paths differ on a GPU (members as rows of a
   batch, every space, the vllm backend when vLLM is installed), with the
   model on CUDA (``device = "auto"`` picks it);
2. ``benchmarks/throughput.py`` on ``--model``: ``full``, ``lowrank`` and
   ``svd`` on ``hf`` (batched where a space has it) and, with vLLM, on
   ``vllm``, so the table answers which backend to use for each space there.

Exits non-zero when a test fails or CUDA is missing.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Tests whose code paths depend on the device.
DEVICE_TESTS = ("tests/test_batched.py", "tests/test_spaces.py", "tests/test_vllm.py")
HF_ROWS = ("full:sequential", "lowrank:batched", "svd:batched")
VLLM_ROWS = ("full:sequential:vllm", "lowrank:sequential:vllm", "svd:sequential:vllm")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a saved model folder")
    parser.add_argument("--shapes", default="8x32,16x4")
    parser.add_argument("--skip-tests", action="store_true")
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("no CUDA device: this script checks the GPU paths", file=sys.stderr)
        return 2
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}", flush=True)
    failed = 0
    if not args.skip_tests:
        failed = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *DEVICE_TESTS],
            cwd=ROOT,
            check=False,
        ).returncode
    has_vllm = importlib.util.find_spec("vllm") is not None
    rows = HF_ROWS + (VLLM_ROWS if has_vllm else ())
    print(f"\nvLLM {'installed' if has_vllm else 'missing: hf rows only'}", flush=True)
    throughput = [sys.executable, str(ROOT / "benchmarks" / "throughput.py")]
    subprocess.run(
        [*throughput, "--model", args.model, "--shapes", args.shapes, "--configs", ",".join(rows)],
        cwd=ROOT,
        check=True,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
