"""Seeded Gaussian noise that any tensor, and any chunk of a tensor, regenerates alone.

Why not one generator per member: a perturbation of a billion weights cannot
be stored, so it is regenerated from its seed whenever it is needed (to
perturb, to restore, to apply the update). Each chunk of each tensor gets its
own generator, seeded by a hash of ``(member seed, tensor key, chunk index)``
(EGGROLL's fold-in), so no two tensors or members share a stream, any chunk
can be rebuilt without the others, and the temporaries stay chunk-sized.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from ..lazy import torch

T = TypeVar("T")
R = TypeVar("R")

#: Elements per noise chunk. Part of the definition of the noise: changing it
#: changes every perturbation, so it is a constant, not an option.
CHUNK_ELEMENTS = 1 << 22

_MASK64 = (1 << 64) - 1


def splitmix64(value: int) -> int:
    """One step of the SplitMix64 mixer: a cheap, well-spread 64-bit hash of an integer."""
    value = (value + 0x9E3779B97F4A7C15) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


def fold_in(*parts: int) -> int:
    """Combines integers into one 63-bit seed; order matters, collisions are negligible."""
    state = 0
    for part in parts:
        state = splitmix64(state ^ (part & _MASK64))
    return state >> 1


def name_key(name: str) -> int:
    """A stable 64-bit key for a tensor name (Python's ``hash`` is salted per process)."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little")


def chunk_bounds(numel: int) -> list[tuple[int, int]]:
    """The ``[start, end)`` element ranges that a flat tensor of ``numel`` is noised in."""
    return [(s, min(s + CHUNK_ELEMENTS, numel)) for s in range(0, numel, CHUNK_ELEMENTS)]


def chunk_noise(
    seed: int,
    key: int,
    chunk: int,
    numel: int,
    device: torch.device | str,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Standard normal fp32 noise of one chunk of the tensor ``key``, for member ``seed``.

    Written into ``out`` (fp32, ``numel`` elements) when given: the same numbers.
    """
    generator = torch.Generator(device=device)
    generator.manual_seed(fold_in(seed, key, chunk))
    if out is not None:
        return torch.randn(numel, generator=generator, out=out)
    return torch.randn(numel, generator=generator, device=device, dtype=torch.float32)


def correlated_noise(seed: int, shape: torch.Size, device: torch.device | str) -> torch.Tensor:
    """The paper script's noise: every tensor re-seeded with the member seed alone.

    Equal-shaped tensors then get equal noise. Kept only to reproduce
    Qiu et al.'s released script; generated whole, as the script does.
    """
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return torch.randn(shape, generator=generator, device=device, dtype=torch.float32).flatten()


_pool: ThreadPoolExecutor | None = None


def map_chunks(work: Callable[[T], R], chunks: Sequence[T], device: torch.device) -> list[R]:
    """``work`` over ``chunks``, on torch's CPU thread count of threads, results in order.

    Why threads: torch draws CPU normal noise on one core, and noise is most
    of the cost of perturbing a model. Each chunk has its own generator and
    touches only its own elements, so the numbers do not depend on how many
    threads run or in which order. On an accelerator the work is queued in
    order from this thread (the device runs it in parallel already).
    """
    global _pool
    threads = torch.get_num_threads() if torch.device(device).type == "cpu" else 1
    if threads <= 1 or len(chunks) <= 1:
        return [work(chunk) for chunk in chunks]
    if _pool is None or _pool._max_workers != threads:
        if _pool is not None:
            _pool.shutdown(wait=False)
        _pool = ThreadPoolExecutor(threads, thread_name_prefix="zo-llm-noise")
    return list(_pool.map(work, chunks))


_thread_buffers = threading.local()


def scratch(role: str, numel: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """This thread's reusable flat buffer for ``role``, ``numel`` elements long.

    Why: chunk-sized temporaries allocated afresh for every chunk are freed
    into each thread's allocator arena, which keeps them (measured: peak RSS
    of an ES step on SmolLM2-135M 1.64x plain generation, with 2 threads),
    and every pass faults in fresh pages. A few buffers per thread, each as
    large as the largest chunk, are reused instead; their contents are
    garbage between uses.
    """
    buffers = _thread_buffers.__dict__.setdefault("buffers", {})
    key = (role, dtype, torch.device(device))
    buffer = buffers.get(key)
    if buffer is None or buffer.numel() < numel:
        buffer = buffers[key] = torch.empty(numel, dtype=dtype, device=device)
    return buffer[:numel]
