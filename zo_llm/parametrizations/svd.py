"""Singular values of weight matrices or of a LoRA adapter's updates (name: ``svd``).

ESSA (*Evolutionary Strategies for Scalable Alignment*, arXiv 2507.04453)
decomposes each adapted matrix's update ``delta = U diag(s) V^T`` by SVD,
keeps the singular vectors fixed and searches only the singular values: a few
thousand numbers instead of billions, small enough for CMA-ES, and every
member is an inference-only forward pass.

Two starting points:

- ``adapter=PATH``, a peft LoRA folder (the usual supervised warm start): its
  update ``(alpha / r) * B @ A`` is merged into each target weight, and the
  largest singular values of that update are searched;
- no adapter: the largest singular values of each target weight itself are
  searched, so no warm start is needed.

The searched vector ``v`` holds relative offsets, ``s = s0 * (1 + v)``, so one
step size suits matrices of any scale and ``v = 0`` is the starting model.
The change ``U_r diag(s0 * v) V_r^T`` is held apart from the weights and added
to each target layer's output by a forward hook,
``y = W x + U_r ((s0 * v) * (V_r^T x))``: applying a vector is writing ``v``
(no weight is touched, so restoring is exact), at ``v = 0`` the hook adds
zeros (the model is reproduced bit for bit), and memory grows by
``r * (in + out)`` per matrix. Seeded and vector candidates both act on ``v``
through a :class:`TensorSpace`, so they share its noise and exact restore.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..candidates import SEEDED, VECTOR
from ..lazy import no_grad, torch
from ..models.quantize import dense, holds_quantized
from .base import PARAMETRIZATIONS
from .delegate import DelegatingSpace
from .lora import ADAPTER_DIR, LLAMA_PROJECTIONS
from .rows import as_blocks
from .tensor import TensorSpace

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
_PEFT_PREFIX = "base_model.model."


@dataclass(frozen=True)
class SVDConfig:
    """Where the singular vectors come from and how many singular values are searched."""

    adapter: str | None = field(
        default=None,
        metadata={"help": "peft LoRA adapter folder to start from (None: the base weights)"},
    )
    target_modules: tuple[str, ...] = field(
        default=(),
        metadata={"help": "linear modules searched without an adapter (empty: Llama projections)"},
    )
    rank: int = field(
        default=16,
        metadata={"help": "largest singular values searched per matrix (capped at its rank)"},
    )
    fraction: float = field(
        default=0.0,
        metadata={"help": "if > 0: this fraction of each matrix's singular values, not rank"},
    )

    def __post_init__(self) -> None:
        if self.rank < 1:
            raise ValueError(f"rank={self.rank} must be >= 1")
        if not 0.0 <= self.fraction <= 1.0:
            raise ValueError(f"fraction={self.fraction} must be in [0, 1] (0: use rank)")


@dataclass
class _Matrix:
    """One searched matrix: the fixed factors of its top singular values, and its v slice."""

    name: str
    module: torch.nn.Linear
    u: torch.Tensor  # out x r, model dtype
    s0: torch.Tensor  # r, fp32
    vt: torch.Tensor  # r x in, model dtype
    v: torch.Tensor  # r, a view into the searched vector
    span: slice  # where v sits in the searched vector
    lora: tuple[torch.Tensor, torch.Tensor, float] | None = None  # (A, B, scaling) of the adapter
    #: While members run as row blocks: each block's ``s0 * v_n`` (members, r), else None.
    block_offsets: torch.Tensor | None = None

    def offsets(self) -> torch.Tensor:
        """``s - s0 = s0 * v``, the singular-value change, fp32."""
        return self.s0 * self.v.float()

    def delta(self) -> torch.Tensor:
        """``U_r diag(s0 * v) V_r^T`` in fp32: what the hook adds to the weight."""
        return (self.u.float() * self.offsets()) @ self.vt.float()

    def hook(self, module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        x = inputs[0]
        if self.block_offsets is None:
            scaled = (x @ self.vt.T) * self.offsets().to(output.dtype)
        else:  # each member block scales by its own offsets, in the same order of operations
            offsets = self.block_offsets.to(output.dtype)
            blocks = as_blocks(x, len(offsets)) @ self.vt.T
            scaled = (blocks * offsets[:, None, :]).view(*x.shape[:-1], -1)
        # accumulated into the layer's own output: no activation-sized temporary
        output.view(-1, output.shape[-1]).addmm_(scaled.reshape(-1, scaled.shape[-1]), self.u.T)
        return output


@PARAMETRIZATIONS.register("svd")
class SVDSpace(DelegatingSpace):
    """Relative offsets of the top singular values per matrix, ESSA-style (name: ``svd``)."""

    config_class = SVDConfig
    kinds = frozenset({SEEDED, VECTOR})
    has_weight_deltas = True

    def __init__(self, config: SVDConfig | None = None) -> None:
        super().__init__(config)
        self._matrices: list[_Matrix] = []
        self._handles: list[Any] = []

    @classmethod
    def test_config(cls) -> SVDConfig:
        return SVDConfig(rank=2)

    @classmethod
    def quantized_base_problem(cls, config: SVDConfig) -> str | None:
        if getattr(config, "adapter", None):  # merged into the weights when bound
            return (
                f"adapter={config.adapter!r} is merged into the base weights; search the "
                "base's own singular values (no adapter), or keep the base in float"
            )
        return None  # the change is added by forward hooks: the weights are only read

    @no_grad
    def bind(self, model: torch.nn.Module) -> None:
        for handle in self._handles:
            handle.remove()
        self.model = model
        updates = self._adapter_updates(model) if self.config.adapter else self._weights(model)
        factors = []
        for name, module, matrix, lora in updates:
            u, s, vt = torch.linalg.svd(dense(matrix).float(), full_matrices=False)
            rank = int((s > s[0] * 1e-6).sum()) if s[0] > 0 else 0
            if rank:  # a zero update (an untrained adapter's B = 0) has nothing to scale
                keep = self._keep(rank)
                # copies: slices would keep every matrix's whole U and V^T alive (2x its size)
                kept = (u[:, :keep].clone(), s[:keep].clone(), vt[:keep].clone())
                factors.append((name, module, *kept, lora))
        if not factors:
            if self.config.adapter:
                raise ValueError(
                    f"every update of adapter={self.config.adapter!r} is zero (an untrained "
                    "LoRA adapter has B = 0), so it has no singular values to search; start "
                    "from a trained adapter, or drop adapter= to search the singular values "
                    "of the base weights"
                )
            targets = self.config.target_modules or LLAMA_PROJECTIONS
            raise ValueError(
                f"every target matrix ({', '.join(targets)}) is zero, so there are no "
                "singular values to search; pick other target_modules"
            )
        self._inner = TensorSpace(x0=torch.zeros(sum(f[3].numel() for f in factors)))
        self._matrices, start = [], 0
        vector = self._inner._x  # the hooks read views of the searched vector itself
        for name, module, u, s, vt, lora in factors:
            dtype = module.weight.dtype
            span = slice(start, start + s.numel())
            start += s.numel()
            matrix = _Matrix(name, module, u.to(dtype), s, vt.to(dtype), vector[span], span, lora)
            self._matrices.append(matrix)
            self._handles.append(module.register_forward_hook(matrix.hook))

    def planned_dim(self, model: torch.nn.Module) -> int | None:
        """At most the kept singular values of each target matrix (of full rank); None from
        an adapter, whose rank the model's shapes do not tell."""
        if self.config.adapter:
            return None
        return sum(self._keep(min(weight.shape)) for _, _, weight, _ in self._weights(model))

    def _keep(self, rank: int) -> int:
        wanted = (
            math.ceil(self.config.fraction * rank) if self.config.fraction else self.config.rank
        )
        return max(1, min(rank, wanted))

    def _weights(self, model: torch.nn.Module):
        targets = self.config.target_modules or LLAMA_PROJECTIONS
        found = [
            (name, module, module.weight, None)
            for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and name.rsplit(".", 1)[-1] in targets
        ]
        if not found:
            linear = {
                n.rsplit(".", 1)[-1]
                for n, m in model.named_modules()
                if isinstance(m, torch.nn.Linear)
            }
            raise ValueError(
                f"no linear module named {', '.join(targets)}; set target_modules to some of: "
                f"{', '.join(sorted(linear))}"
            )
        return found

    def _adapter_updates(self, model: torch.nn.Module):
        """Merges the adapter's ``(alpha/r) B @ A`` into each weight; yields the updates."""
        from safetensors.torch import load_file

        folder = Path(self.config.adapter)
        if not (folder / ADAPTER_WEIGHTS).exists():
            raise ValueError(
                f"adapter={str(folder)!r} has no {ADAPTER_WEIGHTS}; give a peft LoRA folder "
                "(PeftModel.save_pretrained, or a lora run's final/adapter)"
            )
        settings = json.loads((folder / ADAPTER_CONFIG).read_text())
        patterns = settings.get("rank_pattern") or settings.get("alpha_pattern")
        if settings.get("peft_type", "LORA") != "LORA" or patterns:
            raise ValueError(f"adapter {folder} must be a plain LoRA adapter (one rank and alpha)")
        tensors = load_file(str(folder / ADAPTER_WEIGHTS))
        modules = dict(model.named_modules())
        updates = []
        for key in sorted(k for k in tensors if k.endswith(".lora_A.weight")):
            name = key.removeprefix(_PEFT_PREFIX).removesuffix(".lora_A.weight")
            if name not in modules:
                raise ValueError(f"the adapter adapts {name}, which this model does not have")
            a, b = tensors[key], tensors[key.replace(".lora_A.", ".lora_B.")]
            rank = a.shape[0]
            divisor = math.sqrt(rank) if settings.get("use_rslora") else rank
            scaling = settings["lora_alpha"] / divisor
            delta = scaling * (b.float() @ a.float())
            weight = modules[name].weight
            weight.copy_(weight.float() + delta.to(weight.device))
            updates.append((name, modules[name], delta, (a, b, scaling)))
        return updates

    @property
    def dim(self) -> int:
        return 0 if self._inner is None else self.inner.dim

    def size_hint(self) -> str:
        if self.config.fraction:
            fewer = f"lower fraction (now {self.config.fraction}), or set fraction=0 and a rank"
        else:
            fewer = f"lower rank (now {self.config.rank}), or a small fraction (e.g. 0.1)"
        matrices = "" if self.config.adapter else ", or fewer target_modules"
        return (
            f"shrink svd ({len(self._matrices)} matrices, the kept singular values of each): "
            f"{fewer}{matrices}"
        )

    def singular_values(self) -> dict[str, torch.Tensor]:
        """The current searched singular values ``s0 * (1 + v)`` of each matrix."""
        return {m.name: m.s0 * (1 + m.v.float()) for m in self._matrices}

    def weight_deltas(self) -> list[tuple[torch.nn.Module, torch.Tensor]]:
        return [(m.module, m.delta()) for m in self._matrices]

    # batched evaluation: each member block's offsets in the hooks already in place

    supports_batched = True

    def member_batch(self, candidates: Sequence[Any]) -> torch.Tensor:
        """The members' searched vectors ``v_n`` stacked (N, dim), from the inner vector space."""
        return self.inner.member_batch(candidates)

    @contextlib.contextmanager
    def rows_as_members(self, batch: torch.Tensor, members: range) -> Iterator[None]:
        """Each matrix's hook scales each member block by ``s0 * v_n`` instead of ``s0 * v``."""
        vectors = batch[members.start : members.stop].float()
        try:
            for m in self._matrices:
                m.block_offsets = m.s0 * vectors[:, m.span]
            yield
        finally:
            for m in self._matrices:
                m.block_offsets = None

    # persistence

    def state_dict(self) -> dict[str, Any]:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(state)

    @no_grad
    def merged_state_dict(self) -> dict[str, torch.Tensor]:
        """The model's state dict with each searched change merged into its weight."""
        state = {name: dense(tensor) for name, tensor in self.model.state_dict().items()}
        for m in self._matrices:
            weight = state[f"{m.name}.weight"]
            state[f"{m.name}.weight"] = (weight.float() + m.delta()).to(weight.dtype)
        return state

    def save_pretrained(self, path: str | Path) -> None:
        """The merged model in ``path``; the searched change as a peft adapter in
        ``path/adapter`` when started from an adapter or over an int8 base (where the
        float base plus that adapter is the model without the quantisation error)."""
        path = Path(path)
        self.model.save_pretrained(str(path), state_dict=self.merged_state_dict())
        if self.config.adapter or holds_quantized(self.model):
            self.save_adapter(path / ADAPTER_DIR)

    @no_grad
    def save_adapter(self, path: str | Path) -> None:
        """The searched change as a peft LoRA folder (``PeftModel.from_pretrained`` loads it).

        From an adapter, one of the same rank and config as the one loaded: each
        new update ``(alpha/r) B @ A + U_r diag(s0 v) V_r^T`` has rank <= r, so
        its SVD, split as ``B' = U diag(s) / scaling`` and ``A' = V^T``, is exact.
        From the base weights, the change itself: ``U_r diag(s0 v) V_r^T`` is
        ``B A`` with ``B = U_r diag(s0 v)`` and ``A = V_r^T`` at ``alpha = r``
        (scaling 1), matrices with fewer kept values padded with zero rows.
        """
        if not self.config.adapter:
            self._save_change_as_adapter(Path(path))
            return
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        tensors = {}
        for m in self._matrices:
            a, b, scaling = m.lora
            update = scaling * (b.float() @ a.float()) + m.delta()
            u, s, vt = torch.linalg.svd(update, full_matrices=False)
            rank = a.shape[0]
            key = f"{_PEFT_PREFIX}{m.name}"
            tensors[f"{key}.lora_A.weight"] = vt[:rank].to(a.dtype).contiguous()
            new_b = u[:, :rank] * s[:rank] / scaling
            tensors[f"{key}.lora_B.weight"] = new_b.to(b.dtype).contiguous()
        save_file(tensors, str(path / ADAPTER_WEIGHTS))
        source = Path(self.config.adapter) / ADAPTER_CONFIG
        (path / ADAPTER_CONFIG).write_text(source.read_text())

    def _save_change_as_adapter(self, path: Path) -> None:
        from peft import LoraConfig
        from safetensors.torch import save_file

        rank = max(m.s0.numel() for m in self._matrices)
        tensors = {}
        for m in self._matrices:
            kept = m.s0.numel()
            a = m.vt.new_zeros(rank, m.vt.shape[1])
            a[:kept] = m.vt
            b = m.u.new_zeros(m.u.shape[0], rank)
            b[:, :kept] = (m.u.float() * m.offsets()).to(m.u.dtype)
            key = f"{_PEFT_PREFIX}{m.name}"
            tensors[f"{key}.lora_A.weight"], tensors[f"{key}.lora_B.weight"] = a, b
        path.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(path / ADAPTER_WEIGHTS))
        targets = sorted({m.name.rsplit(".", 1)[-1] for m in self._matrices})
        config = LoraConfig(r=rank, lora_alpha=rank, target_modules=targets, task_type="CAUSAL_LM")
        config.save_pretrained(str(path))
