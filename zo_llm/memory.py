"""Peak memory of a run, measured the way each device allows."""

from __future__ import annotations

import resource
import sys

import torch


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory in MiB so far: allocated tensor memory on CUDA, process peak RSS on CPU.

    On the CPU the weights live in host memory, so the process's resident
    peak is what a user must provision; on CUDA, torch's allocator peak is.
    """
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes vs KiB
