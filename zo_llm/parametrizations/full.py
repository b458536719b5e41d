"""All (or a chosen subset of) a model's weights, perturbed by seed replay.

This is the search space of Qiu et al., *Evolution Strategies at Scale*
(arXiv 2509.24372): every searched tensor is perturbed in place, one chunk at a
time, by Gaussian noise regenerated from a seed, so memory stays at inference
level whatever the model size.

Exact restore. ``w + n - n`` does not give back ``w`` in floating point (in
bf16 with sigma=1e-3 about 5% of weights change per round trip). Keeping a
master copy would double memory, so instead, while a chunk is perturbed and its
original is still in hand, we note the elements whose add-then-subtract does
not round-trip and their original values, and patch them after the
subtraction. The patch list is a small fraction of the weights' size. The
same trick makes :meth:`FullWeights.shift` (a temporary move by a seeded
combination, e.g. ESSAM's neighbour point) exact to undo, with member
perturbations on top of it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from ..candidates import SEEDED, SeededUpdate, update_pairs
from ..lazy import no_grad, torch
from .base import PARAMETRIZATIONS, Parametrization
from .noise import (
    chunk_bounds,
    chunk_noise,
    correlated_noise,
    map_chunks,
    name_key,
    scratch,
)

NOISE_MODES = ("independent", "correlated")

# integer dtypes of each element size, by name so that importing this module does not import torch
_BIT_VIEW = {1: "int8", 2: "int16", 4: "int32", 8: "int64"}


@dataclass(frozen=True)
class FullConfig:
    """Which weights are searched and how their noise is drawn."""

    include: tuple[str, ...] = field(
        default=(),
        metadata={"help": "regexes; a parameter is searched if its name matches one (empty: all)"},
    )
    exclude: tuple[str, ...] = field(
        default=(), metadata={"help": "regexes; a parameter whose name matches one is not searched"}
    )
    noise: str = field(
        default="independent",
        metadata={
            "help": "'independent': own stream per (seed, tensor, chunk); 'correlated': every "
            "tensor re-seeded with the member seed, as the paper's script does"
        },
    )

    def __post_init__(self) -> None:
        if self.noise not in NOISE_MODES:
            raise ValueError(
                f"noise={self.noise!r} is not valid; use one of: {', '.join(NOISE_MODES)}"
            )
        check_patterns((*self.include, *self.exclude))


def check_patterns(patterns: tuple[str, ...]) -> None:
    """Refuses an ``include``/``exclude`` entry that is not a regex, naming it."""
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as error:
            raise ValueError(
                f"include/exclude pattern {pattern!r} is not a regex: {error}"
            ) from None


#: What makes removing a perturbation from a chunk exact: the indices of the elements whose
#: add-then-subtract does not round-trip, and their original values.
Patch = tuple["torch.Tensor", "torch.Tensor"]


@dataclass
class _Target:
    """One searched tensor and the element ranges its noise is generated in."""

    name: str
    param: torch.nn.Parameter
    key: int
    chunks: list[tuple[int, int]]

    def flat(self) -> torch.Tensor:
        return self.param.data.view(-1)


class _Chunk(NamedTuple):
    """One chunk of a searched tensor: its noise index and a view of its elements."""

    target: _Target
    index: int
    view: torch.Tensor


@PARAMETRIZATIONS.register("full")
class FullWeights(Parametrization):
    """Seeded perturbations of full weight tensors (name: ``full``)."""

    config_class = FullConfig
    kinds = frozenset({SEEDED})
    moves_weights_in_place = True

    def __init__(self, config: FullConfig | None = None) -> None:
        super().__init__(config)
        self._targets: list[_Target] = []
        self._history: list[dict[str, Any]] = []
        self.replayed_updates = 0  # by the last load_state_dict: what a snapshot saves
        # (seed, scale, patches) of the member perturbation; (update, patches) of the shift
        self._active: tuple[int, float, list[Patch]] | None = None
        self._shift: tuple[SeededUpdate, list[Patch]] | None = None

    def bind(self, model: torch.nn.Module) -> None:
        self.model = model
        names = [name for name, _ in model.named_parameters()]
        self._targets = [
            self._target(name, param)
            for name, param in model.named_parameters()
            if param.is_floating_point() and self._selected(name)
        ]
        if not self._targets:
            raise ValueError(
                f"no parameter matches include={list(self.config.include)} "
                f"exclude={list(self.config.exclude)}; parameter names look like: "
                f"{', '.join(names[:4])}"
            )
        self._history = []

    def _selected(self, name: str) -> bool:
        included = not self.config.include or any(re.search(p, name) for p in self.config.include)
        return included and not any(re.search(p, name) for p in self.config.exclude)

    def _target(self, name: str, param: torch.nn.Parameter) -> _Target:
        if not param.data.is_contiguous():
            raise ValueError(f"parameter {name} is not contiguous; cannot perturb it in place")
        numel = param.numel()
        chunks = [(0, numel)] if self.config.noise == "correlated" else chunk_bounds(numel)
        return _Target(name, param, name_key(name), chunks)

    @property
    def dim(self) -> int:
        return sum(t.param.numel() for t in self._targets)

    def size_hint(self) -> str:
        return (
            "full is not a vector space (seeded only, any size; include/exclude choose the "
            "weights): for a vector strategy, search lora or svd"
        )

    @property
    def parameter_names(self) -> list[str]:
        return [t.name for t in self._targets]

    def named_tensors(self) -> list[tuple[str, torch.nn.Parameter]]:
        """The searched ``(name, parameter)`` pairs, in noise order."""
        return [(t.name, t.param) for t in self._targets]

    def _noise(
        self, seed: int, target: _Target, chunk: int, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``eps(seed)`` on one chunk, fp32; written into ``out`` (fp32) where given."""
        start, end = target.chunks[chunk]
        device = target.param.device
        if self.config.noise == "correlated":
            return correlated_noise(seed, target.param.shape, device)
        return chunk_noise(seed, target.key, chunk, end - start, device, out)

    def _buffer(self, role: str, chunk: _Chunk, dtype: torch.dtype | None = None) -> torch.Tensor:
        """This thread's scratch buffer for ``role``, the size of ``chunk`` (fp32 by default)."""
        view = chunk.view
        return scratch(role, view.numel(), dtype or torch.float32, view.device)

    def _chunks(self) -> list[_Chunk]:
        return [
            _Chunk(target, index, target.flat()[start:end])
            for target in self._targets
            for index, (start, end) in enumerate(target.chunks)
        ]

    def _map(self, work: Callable[..., Any], patches: list[Patch] | None = None) -> list[Any]:
        """``work(chunk)``, or ``work(chunk, patch)``, over every searched chunk, in order.

        On several threads (see :func:`~zo_llm.parametrizations.noise.map_chunks`).
        """
        chunks = self._chunks()
        device = self._targets[0].param.device
        if patches is None:
            return map_chunks(work, chunks, device)
        pairs = list(zip(chunks, patches, strict=True))
        return map_chunks(lambda pair: work(*pair), pairs, device)

    def _combination(self, update: SeededUpdate, chunk: _Chunk) -> torch.Tensor:
        """``sum(coeff * eps(seed))`` on one chunk, in fp32 (a single pair is ``scale * eps``).

        In this thread's ``"noise"`` buffer: use it before the next combination.
        """
        target, index = chunk.target, chunk.index
        (seed, coeff), *rest = update
        step = self._noise(seed, target, index, self._buffer("noise", chunk)).mul_(coeff)
        for seed, coeff in rest:
            step.add_(self._noise(seed, target, index, self._buffer("term", chunk)), alpha=coeff)
        return step

    def _move_chunk(
        self, chunk: _Chunk, remove: tuple[SeededUpdate, Patch] | None, add: SeededUpdate | None
    ) -> Patch | None:
        """Takes ``remove`` off one chunk exactly, then adds ``add``; returns the new patch.

        One pass over the chunk for both moves; when both are single pairs of
        the same seed (an antithetic pair) the noise is drawn once for both.
        """
        view = chunk.view
        new = None
        if remove is not None:
            update, (wrong, values) = remove
            if add is not None and len(update) == len(add) == 1 and update[0][0] == add[0][0]:
                seed = update[0][0]
                raw = self._noise(seed, chunk.target, chunk.index, self._buffer("noise", chunk))
                old = torch.mul(raw, update[0][1], out=self._buffer("term", chunk, raw.dtype))
                new = raw.mul_(add[0][1])
            else:
                old = self._combination(update, chunk)
            view.sub_(old)
            view[wrong] = values
        if add is None:
            return None
        if new is None:
            new = self._combination(add, chunk)
        original = self._buffer("original", chunk, view.dtype).copy_(view)
        view.add_(new)
        # exactly what a later removal will compute (in the common dtype, rounded once)
        restored = torch.sub(view, new, out=self._buffer("restored", chunk, view.dtype))
        bits = getattr(torch, _BIT_VIEW[view.element_size()])
        differs = self._buffer("differs", chunk, torch.bool)
        wrong = torch.ne(restored.view(bits), original.view(bits), out=differs).nonzero().squeeze(1)
        # chunks are < 2**31 elements, so int32 indices halve the patch memory
        return wrong.to(torch.int32), original[wrong]

    def _add_exactly(self, update: SeededUpdate) -> list[Patch]:
        """Adds the combination in place; returns the patches that make removing it exact."""
        return self._map(lambda chunk: self._move_chunk(chunk, None, update))

    def _remove_exactly(self, update: SeededUpdate, patches: list[Patch]) -> None:
        self._map(lambda chunk, patch: self._move_chunk(chunk, (update, patch), None), patches)

    @no_grad
    def perturb(self, seed: int, scale: float) -> None:
        if self._active is not None:
            raise RuntimeError("perturb() called twice without unperturb(); restore first")
        self._active = (seed, scale, self._add_exactly([(seed, scale)]))

    @no_grad
    def unperturb(self) -> None:
        if self._active is None:
            raise RuntimeError("unperturb() called with no active perturbation")
        seed, scale, patches = self._active
        self._remove_exactly([(seed, scale)], patches)
        self._active = None

    @no_grad
    def reperturb(self, seed: int, scale: float) -> None:
        """``unperturb(); perturb(seed, scale)`` in one pass over the weights (see base class)."""
        if self._active is None:
            raise RuntimeError("reperturb() called with no active perturbation; perturb() first")
        old, patches = self._active[:2], self._active[2]
        self._active = None  # a chunk that fails leaves no defined point to restore anyway
        new_patches = self._map(
            lambda chunk, patch: self._move_chunk(chunk, ([old], patch), [(seed, scale)]), patches
        )
        self._active = (seed, scale, new_patches)

    @no_grad
    def shift(self, update: SeededUpdate) -> None:
        if self._active is not None:
            raise RuntimeError("shift() during a perturbation; unperturb() first")
        if self._shift is not None:
            raise RuntimeError("shift() called twice without unshift(); restore first")
        update = update_pairs(update)
        self._shift = (update, self._add_exactly(update) if update else [])

    @no_grad
    def unshift(self) -> None:
        if self._active is not None:
            raise RuntimeError("unshift() during a perturbation; unperturb() first")
        if self._shift is None:
            raise RuntimeError("unshift() called with no active shift")
        update, patches = self._shift
        if update:
            self._remove_exactly(update, patches)
        self._shift = None

    @no_grad
    def update_norm(self, update: SeededUpdate) -> float:
        update = update_pairs(update)
        if not update:
            return 0.0

        def squares(chunk: _Chunk) -> float:
            step = self._combination(update, chunk)
            return float(torch.linalg.vector_norm(step, dtype=torch.float64)) ** 2

        return sum(self._map(squares)) ** 0.5

    @no_grad
    def apply_update(self, update: SeededUpdate, decay: float = 0.0) -> None:
        if self._active is not None or self._shift is not None:
            raise RuntimeError("apply_update() during a perturbation; unperturb()/unshift() first")
        update = update_pairs(update)

        def step(chunk: _Chunk) -> None:
            target, index, view = chunk
            total, noise = self._buffer("term", chunk).zero_(), self._buffer("noise", chunk)
            for seed, coeff in update:
                total.add_(self._noise(seed, target, index, noise), alpha=coeff)
            new = self._buffer("restored", chunk).copy_(view)
            if decay:
                new.mul_(1.0 - decay)
            view.copy_(new.add_(total))

        self._map(step)
        self._history.append({"update": [list(pair) for pair in update], "decay": float(decay)})

    @no_grad
    def member_tensors(self, candidates: Sequence[Any]) -> list[torch.Tensor]:
        """Per searched tensor, the seeded members' values stacked (N, *shape).

        Each value is what :meth:`perturb` would make the tensor, around the
        current point; nothing is moved. For spaces of small tensors (LoRA
        factors) whose members run as rows of a batch.
        """
        stacked = []
        all_chunks = self._chunks()  # built once: rebuilding it per tensor is quadratic
        for target in self._targets:
            flat = target.flat()
            members = []
            chunks = [c for c in all_chunks if c.target is target]
            for candidate in candidates:
                value = flat.clone()
                pair = [(candidate.seed, candidate.scale)]
                for chunk, (start, end) in zip(chunks, target.chunks, strict=True):
                    value[start:end].add_(self._combination(pair, chunk))
                members.append(value.view(target.param.shape))
            stacked.append(torch.stack(members))
        return stacked

    def noise_tensors(self, seed: int) -> dict[str, torch.Tensor]:
        """The full fp32 noise ``eps(seed)`` per searched tensor (for tests and analysis)."""
        return {
            target.name: torch.cat(
                [self._noise(seed, target, i) for i in range(len(target.chunks))]
            ).view(target.param.shape)
            for target in self._targets
        }

    def state_dict(self) -> dict[str, Any]:
        return {"history": [dict(entry) for entry in self._history]}

    def snapshot(self) -> dict[str, torch.Tensor]:
        """The searched tensors as they are (not copied), and how many updates made them."""
        tensors = {f"tensor.{t.name}": t.param.detach() for t in self._targets}
        return {**tensors, "updates": torch.tensor(len(self._history))}

    @no_grad
    def load_state_dict(self, state: dict[str, Any], snapshot: Any = None) -> None:
        """Replays ``state``'s updates onto the base model, or onto ``snapshot`` those after it."""
        if self._history:
            raise RuntimeError("load_state_dict() replays onto the base model; bind a fresh one")
        history = [dict(entry) for entry in state["history"]]
        done = 0
        if snapshot is not None:
            done = int(snapshot["updates"])
            for target in self._targets:
                target.param.copy_(snapshot[f"tensor.{target.name}"])
        self._history = history[:done]
        for entry in history[done:]:
            self.apply_update(entry["update"], entry["decay"])
        self.replayed_updates = len(history) - done

    def nonfinite(self) -> list[str]:
        return [t.name for t in self._targets if not bool(torch.isfinite(t.param).all())]

    def save_pretrained(self, path: str | Path) -> None:
        self.model.save_pretrained(str(path))
