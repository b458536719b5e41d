"""Low-rank perturbations of every weight matrix, as in EGGROLL (name: ``lowrank``).

Implements the search space of Sarkar et al., *Evolution Strategies at the
Hyperscale* (EGGROLL, arXiv 2511.16652, https://arxiv.org/abs/2511.16652):
member n's perturbation of a matrix W (out x in) is

.. math::

    E_n = \\frac{1}{\\sqrt{r}} A_n B_n^\\top, \\qquad
    A_n \\in \\mathbb{R}^{out \\times r},\\ B_n \\in \\mathbb{R}^{in \\times r}
    \\text{ standard normal from that (seed, matrix)'s own generators,}

so a member's ``W + s E_n`` applied to an input is ``x W^T + (s / sqrt r)(x B_n) A_n^T``:
the whole population can run as rows of one batch over the shared base
weights, each row adding its own member's two thin matmuls
(:meth:`LowRankWeights.rows_as_members`), and no member's weights are ever
materialised. The update ``sum_n c_n E_n`` is formed per matrix as one fp32
matmul ``[c_n A_n] [B_n]^T / sqrt r`` and added once: it has rank up to N r,
full rank in practice, although every member is low rank.

What is searched: the weight matrices of the model's linear layers
(``include``/``exclude`` regexes on their names), as EGGROLL does. Left out:
norms and biases (vectors, a ~0.1% of the weights that a low-rank factor
cannot describe) and embeddings, whose lookup is not a matmul (a linear layer
whose weight is tied to an embedding, such as a tied ``lm_head``, is left out
too, since perturbing it would move the embedding lookup that the batched
rows cannot reproduce). Use ``full`` to search those.

Sequential evaluation, exact restore, shifts (ESSAM), antithetic pairs and
checkpoints (the ``(seed, coeff)`` history) work as in ``full``, whose
machinery this space reuses with ``E_n`` as the noise of a matrix.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..candidates import SeededUpdate, update_pairs
from ..lazy import no_grad, torch
from .base import PARAMETRIZATIONS
from .full import FullWeights, _Target, check_patterns
from .noise import chunk_noise, name_key
from .rows import add_block_products, forward_hooks

#: Noise streams of a matrix's factors: chunk index 0 draws A, 1 draws B.
_A, _B = 0, 1


@dataclass(frozen=True)
class LowRankConfig:
    """Which matrices are searched and the rank of each member's perturbation."""

    include: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "regexes; a linear weight is searched if its name matches one (empty: all)"
        },
    )
    exclude: tuple[str, ...] = field(
        default=(), metadata={"help": "regexes; a linear weight whose name matches one is not"}
    )
    rank: int = field(
        default=1, metadata={"help": "rank r of each member's perturbation A B^T/sqrt(r)"}
    )

    def __post_init__(self) -> None:
        if self.rank < 1:
            raise ValueError(f"rank={self.rank} must be >= 1")
        check_patterns((*self.include, *self.exclude))


@PARAMETRIZATIONS.register("lowrank")
class LowRankWeights(FullWeights):
    """Low-rank (EGGROLL) seeded perturbations of every linear layer's weight matrix."""

    config_class = LowRankConfig
    #: The batched evaluator runs members as rows of one batch (see :meth:`rows_as_members`).
    supports_batched = True

    def __init__(self, config: LowRankConfig | None = None) -> None:
        super().__init__(config)
        self._modules: dict[str, torch.nn.Linear] = {}

    def bind(self, model: torch.nn.Module) -> None:
        self.model = model
        tied = {
            module.weight.data_ptr()
            for module in model.modules()
            if isinstance(module, torch.nn.Embedding)
        }
        linear = {
            f"{name}.weight": module
            for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and module.weight.data_ptr() not in tied
        }
        self._modules = {name: m for name, m in linear.items() if self._selected(name)}
        if not self._modules:
            raise ValueError(
                f"no untied linear weight matches include={list(self.config.include)} "
                f"exclude={list(self.config.exclude)}; linear weights look like: "
                f"{', '.join(list(linear)[:4]) or '(none)'}"
            )
        self._targets = [self._target(name, m.weight) for name, m in self._modules.items()]
        self._history = []

    def _target(self, name: str, param: torch.nn.Parameter) -> _Target:
        if not param.data.is_contiguous():
            raise ValueError(f"parameter {name} is not contiguous; cannot perturb it in place")
        return _Target(name, param, name_key(name), [(0, param.numel())])

    def planned_dim(self, model: torch.nn.Module) -> int:
        """The searched weights' count, from the model's shapes."""
        shadow = LowRankWeights(self.config)
        shadow.bind(model)
        return shadow.dim

    def size_hint(self) -> str:
        return (
            "lowrank is not a vector space (seeded only, any size; include/exclude choose the "
            "matrices): for a vector strategy, search lora or svd"
        )

    # --- the noise: E = A B^T / sqrt(r) -------------------------------------

    def factors(self, seed: int, target: _Target) -> tuple[torch.Tensor, torch.Tensor]:
        """``(A, B)`` of member ``seed`` on ``target``: (out, r) and (in, r), fp32."""
        out_features, in_features = target.param.shape
        rank, device = self.config.rank, target.param.device
        a = chunk_noise(seed, target.key, _A, out_features * rank, device).view(out_features, rank)
        b = chunk_noise(seed, target.key, _B, in_features * rank, device).view(in_features, rank)
        return a, b

    def _noise(
        self, seed: int, target: _Target, chunk: int, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``A B^T / sqrt(r)`` flattened, in fp32 (fp64 for fp64 weights: exact tests).

        Written into ``out`` where given and of that dtype.
        """
        del chunk  # a matrix is one chunk: its noise is two thin factors
        a, b = self.factors(seed, target)
        dtype = torch.float64 if target.param.dtype == torch.float64 else torch.float32
        if out is None or out.dtype != dtype:
            out = torch.empty(a.shape[0] * b.shape[0], dtype=dtype, device=a.device)
        torch.matmul(a.to(dtype), b.to(dtype).T, out=out.view(a.shape[0], b.shape[0]))
        return out.div_(math.sqrt(self.config.rank))

    @no_grad
    def apply_update(self, update: SeededUpdate, decay: float = 0.0) -> None:
        """``W <- (1 - decay) W + [c_n A_n] [B_n]^T / sqrt(r)``: one fp32 matmul per matrix."""
        if self._active is not None or self._shift is not None:
            raise RuntimeError("apply_update() during a perturbation; unperturb()/unshift() first")
        update = update_pairs(update)
        for target in self._targets:
            dtype = torch.float64 if target.param.dtype == torch.float64 else torch.float32
            new = target.param.data.to(dtype, copy=True)
            if decay:
                new.mul_(1.0 - decay)
            if update:
                factors = [(self.factors(seed, target), coeff) for seed, coeff in update]
                a = torch.cat([a.to(dtype) * coeff for (a, _), coeff in factors], 1)
                b = torch.cat([b.to(dtype) for (_, b), _ in factors], 1)
                new.addmm_(a, b.T, alpha=1.0 / math.sqrt(self.config.rank))
            target.param.data.copy_(new)
        self._history.append({"update": [list(pair) for pair in update], "decay": float(decay)})

    # --- members as rows ----------------------------------------------------

    @no_grad
    def member_batch(self, candidates: Sequence[Any]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per searched matrix, the members' ``B_n`` and ``(scale / sqrt r) A_n^T``, stacked.

        Shapes (N, in, r) and (N, r, out), in the weights' dtype, generated
        once per population and shared by all its batches of rows.
        ``candidates`` are seeded (seed, scale) members.
        """
        factors = []
        for target in self._targets:
            dtype, device = target.param.dtype, target.param.device
            pairs = [self.factors(c.seed, target) for c in candidates]
            scales = torch.tensor(
                [c.scale / math.sqrt(self.config.rank) for c in candidates],
                device=device,
                dtype=dtype,
            )
            b = torch.stack([b for _, b in pairs]).to(dtype)
            a = torch.stack([a.T for a, _ in pairs]).to(dtype) * scales[:, None, None]
            factors.append((b, a))
        return factors

    def rows_as_members(
        self, batch: list[tuple[torch.Tensor, torch.Tensor]], members: range
    ) -> contextlib.AbstractContextManager:
        """Each searched linear layer adds its block's ``(scale / sqrt r) (x B_n) A_n^T``."""
        chosen = slice(members.start, members.stop)
        return forward_hooks(
            (self._modules[target.name], _block_delta(b[chosen], a[chosen]))
            for target, (b, a) in zip(self._targets, batch, strict=True)
        )


def _block_delta(b: torch.Tensor, a_t: torch.Tensor):
    """A forward hook adding each member block's ``(x B_n) A_n^T`` to the layer's output."""

    def hook(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor):
        del module
        return add_block_products(output, inputs[0], b, a_t)

    return hook
