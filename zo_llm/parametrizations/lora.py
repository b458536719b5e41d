"""LoRA adapters through peft, searched by seeds or as one vector (name: ``lora``).

Each target linear layer ``W`` gains a low-rank update ``(alpha / r) * B @ A``
(Hu et al., *LoRA*, arXiv 2106.09685) and only the factors ``A`` (r x in) and
``B`` (out x r) are searched. The seeded kind perturbs them exactly as the
``full`` space perturbs weights (a :class:`FullWeights` over the ``lora_``
parameters: per-tensor noise streams, exact restore, fp32 accumulation); the
vector kind exchanges all factors as one flat vector, for the vector
strategies when the adapters are small enough for them.

Initialisation. peft's default (``A`` Kaiming-uniform, ``B = 0``) keeps the
adapted model equal to the base model at step 0, which we want, but with
``B = 0`` a perturbation of ``A`` changes nothing (``B @ (A + eps)`` is 0).
Perturbations of ``B`` do: ``(B + sigma * eps) @ A`` moves ``W`` at once, so
ES learns ``B`` first and ``A`` starts to matter as ``B`` grows. We keep
``B = 0`` and draw ``A ~ N(0, 1/r)`` (peft's ``"gaussian"`` scale) from a
generator seeded by ``(seed, parameter name)``: then a perturbation of ``B``
of size ``sigma`` moves each entry of ``W`` by about ``(alpha / r) * sigma``,
the same order as a full-weight perturbation, so ES's full-weight settings
carry over, and a resumed run rebuilds the same ``A``.

Files. :meth:`LoraSpace.save_pretrained` writes the merged model (plain
``AutoModelForCausalLM.from_pretrained`` loads it) with the peft adapter in
``adapter/`` below it (``PeftModel.from_pretrained(base, path / "adapter")``);
:meth:`LoraSpace.save_adapter` writes the adapter alone.
"""

from __future__ import annotations

import contextlib
import copy
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..candidates import SEEDED, VECTOR
from ..lazy import no_grad, torch
from ..models.quantize import dequantize_model, holds_quantized
from .base import PARAMETRIZATIONS
from .delegate import DelegatingSpace
from .full import FullConfig, FullWeights
from .noise import fold_in, name_key
from .rows import add_block_products, forward_hooks

#: The attention and MLP projections of Llama-like models (Llama, Mistral, Qwen, SmolLM).
LLAMA_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
ADAPTER_DIR = "adapter"
_ADAPTER_PARAMS = r"\.lora_[AB]\."


@dataclass(frozen=True)
class LoraSpaceConfig:
    """Which layers get adapters, their rank and scale, and the seed of ``A``."""

    target_modules: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "names of linear modules to adapt (empty: the attention/MLP projections "
            f"{', '.join(LLAMA_PROJECTIONS)} that the model has)"
        },
    )
    rank: int = field(default=8, metadata={"help": "LoRA rank r"})
    alpha: float = field(default=16.0, metadata={"help": "LoRA alpha; updates are scaled alpha/r"})
    seed: int = field(default=0, metadata={"help": "seeds the random init of A (B starts at 0)"})

    def __post_init__(self) -> None:
        if self.rank < 1:
            raise ValueError(f"rank={self.rank} must be >= 1")
        if not self.alpha > 0:
            raise ValueError(f"alpha={self.alpha} must be positive")


@dataclass
class _LayerMembers:
    """The members' factors of one adapted layer, transposed for ``bmm``."""

    layer: torch.nn.Module
    a_t: torch.Tensor  # (members, in, r)
    b_t: torch.Tensor  # (members, r, out)
    scaling: float


def _block_adapter(a_t: torch.Tensor, b_t: torch.Tensor, scaling: float):
    """A forward hook adding each member block's ``((x A_n^T) B_n^T) * scaling``, as peft does."""

    def hook(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor):
        del module
        return add_block_products(output, inputs[0], a_t, b_t, scaling)

    return hook


@PARAMETRIZATIONS.register("lora")
class LoraSpace(DelegatingSpace):
    """LoRA adapter factors A and B via peft, seeded or as a vector (name: ``lora``)."""

    config_class = LoraSpaceConfig
    kinds = frozenset({SEEDED, VECTOR})
    has_weight_deltas = True

    def __init__(self, config: LoraSpaceConfig | None = None) -> None:
        super().__init__(config)
        self.peft_model = None
        self.target_modules: tuple[str, ...] = self.config.target_modules  # resolved at bind

    @classmethod
    def quantized_base_problem(cls, config: LoraSpaceConfig) -> str | None:
        return None  # the adapters are separate modules: the base weights are only read

    @classmethod
    def test_config(cls) -> LoraSpaceConfig:
        return LoraSpaceConfig(target_modules=("q_proj", "v_proj"), rank=2, alpha=4.0)

    def bind(self, model: torch.nn.Module) -> None:
        from peft import LoraConfig, get_peft_model

        self.model = model
        targets = self.target_modules = self._targets(model)
        peft_config = LoraConfig(
            r=self.config.rank,
            lora_alpha=self.config.alpha,
            lora_dropout=0.0,
            target_modules=list(targets),
            task_type="CAUSAL_LM",
        )
        with warnings.catch_warnings():  # over an int8 base: zo-llm merges itself (merged_model)
            warnings.filterwarnings("ignore", message=".*without `get_apply_tensor_subclass`")
            self.peft_model = get_peft_model(model, peft_config)  # injects the layers in place
        self._inner = FullWeights(FullConfig(include=(_ADAPTER_PARAMS,)))
        self._inner.bind(model)
        self._initialise()

    def _targets(self, model: torch.nn.Module) -> tuple[str, ...]:
        present = {
            name.rsplit(".", 1)[-1]
            for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear)
        }
        if self.config.target_modules:
            missing = [t for t in self.config.target_modules if t not in present]
            if missing:
                raise ValueError(
                    f"target_modules {missing} are not linear modules of this model; "
                    f"its linear modules are: {', '.join(sorted(present))}"
                )
            return self.config.target_modules
        targets = tuple(t for t in LLAMA_PROJECTIONS if t in present)
        if not targets:
            raise ValueError(
                f"the model has none of {', '.join(LLAMA_PROJECTIONS)}; set target_modules to "
                f"some of its linear modules: {', '.join(sorted(present))}"
            )
        return targets

    @no_grad
    def _initialise(self) -> None:
        """``B = 0``, ``A ~ N(0, 1/r)`` from a generator per (seed, parameter name)."""
        for name, param in self.adapter_parameters():
            if ".lora_B." in name:
                param.zero_()
                continue
            generator = torch.Generator(device=param.device)
            generator.manual_seed(fold_in(self.config.seed, name_key(name)))
            noise = torch.randn(
                param.shape, generator=generator, device=param.device, dtype=torch.float32
            )
            param.copy_(noise.mul_(1.0 / math.sqrt(self.config.rank)))

    def adapter_parameters(self) -> list[tuple[str, torch.nn.Parameter]]:
        """The searched ``(name, tensor)`` pairs, ``lora_A``/``lora_B`` of every adapted layer."""
        return self.inner.named_tensors()

    @property
    def dim(self) -> int:
        return 0 if self._inner is None else self.inner.dim

    def planned_dim(self, model: torch.nn.Module) -> int:
        """rank x (in + out) per adapted linear layer, read from the model's shapes."""
        targets = self._targets(model)
        return sum(
            self.config.rank * (module.in_features + module.out_features)
            for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and name.rsplit(".", 1)[-1] in targets
        )

    def size_hint(self) -> str:
        targets = ",".join(self.target_modules) or "the default projections"
        return (
            f"shrink lora (rank x (in + out) numbers per adapted layer): lower rank (now "
            f"{self.config.rank}) or adapt fewer target_modules (now {targets}), "
            "e.g. rank=1 target_modules=q_proj,v_proj"
        )

    # vector kind: the factors, flattened and concatenated in parameter order

    def get_vector(self) -> torch.Tensor:
        return torch.cat([param.detach().reshape(-1) for _, param in self.adapter_parameters()])

    @no_grad
    def set_vector(self, vector: torch.Tensor) -> None:
        vector = torch.as_tensor(vector)
        if vector.shape != (self.dim,):
            raise ValueError(f"expected a vector of shape ({self.dim},), got {tuple(vector.shape)}")
        start = 0
        for _, param in self.adapter_parameters():
            param.view(-1).copy_(vector[start : start + param.numel()])
            start += param.numel()

    # batched evaluation: each member block through its own factors, next to W

    supports_batched = True

    @no_grad
    def member_batch(self, candidates: Sequence[Any]) -> list[_LayerMembers]:
        """Per adapted layer, the members' ``A_n^T`` (N, in, r) and ``B_n^T`` (N, r, out).

        Seeded members are what :meth:`perturb` would make the factors; vector
        members are cut from their vectors in parameter order.
        """
        names = [name for name, _ in self.adapter_parameters()]
        if candidates[0].kind == SEEDED:
            values = self.inner.member_tensors(candidates)
        else:
            vectors = torch.stack([torch.as_tensor(c.vector) for c in candidates])
            sizes = [param.numel() for _, param in self.adapter_parameters()]
            values = [
                part.reshape(len(candidates), *param.shape).to(param.dtype)
                for part, (_, param) in zip(
                    vectors.split(sizes, dim=1), self.adapter_parameters(), strict=True
                )
            ]
        by_name = dict(zip(names, values, strict=True))
        return [
            _LayerMembers(
                layer,
                by_name[f"{prefix}.lora_A.{adapter}.weight"].transpose(1, 2).contiguous(),
                by_name[f"{prefix}.lora_B.{adapter}.weight"].transpose(1, 2).contiguous(),
                float(layer.scaling[adapter]),
            )
            for prefix, layer, adapter in self._adapted_layers()
        ]

    def rows_as_members(
        self, batch: list[_LayerMembers], members: range
    ) -> contextlib.AbstractContextManager:
        """peft's own adapter term is switched off; each layer adds its blocks' terms instead."""
        chosen = slice(members.start, members.stop)
        stack = contextlib.ExitStack()
        stack.enter_context(self.peft_model.disable_adapter())
        stack.enter_context(
            forward_hooks(
                (m.layer, _block_adapter(m.a_t[chosen], m.b_t[chosen], m.scaling)) for m in batch
            )
        )
        return stack

    @no_grad
    def weight_deltas(self) -> list[tuple[torch.nn.Module, torch.Tensor]]:
        """``scaling * B @ A`` of every adapted layer, next to its base layer (fp32)."""
        return [
            (
                layer.get_base_layer(),
                layer.scaling[adapter]
                * (layer.lora_B[adapter].weight.float() @ layer.lora_A[adapter].weight.float()),
            )
            for _, layer, adapter in self._adapted_layers()
        ]

    def _adapted_layers(self) -> list[tuple[str, torch.nn.Module, str]]:
        """``(name, peft LoRA layer, adapter name)`` of every adapted layer, in model order."""
        return [
            (name, module, adapter)
            for name, module in self.model.named_modules()
            if hasattr(module, "lora_A") and hasattr(module, "base_layer")
            for adapter in module.lora_A
        ]

    # persistence

    def state_dict(self) -> dict[str, Any]:
        """The factors themselves (small): exact whichever kind of strategy moved them."""
        return {
            "adapter": {name: param.detach().clone() for name, param in self.adapter_parameters()}
        }

    @no_grad
    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state["adapter"]
        for name, param in self.adapter_parameters():
            param.copy_(saved[name])

    def save_adapter(self, path: str | Path) -> None:
        """A peft adapter folder: ``PeftModel.from_pretrained(base_model, path)`` loads it."""
        self.peft_model.save_pretrained(str(path))

    @no_grad
    def merged_model(self) -> torch.nn.Module:
        """A plain transformers model with the adapters merged in (a copy; this space is kept).

        Over an int8 base (``quantize``) the copy is written in float: each adapted
        weight is dequantised and its update added (peft would quantise the sum
        again), so the saved model is an ordinary float model folder.
        """
        from peft.tuners.lora import LoraLayer

        model = copy.deepcopy(self.peft_model)
        if not holds_quantized(model):
            return model.merge_and_unload()
        for layer in model.modules():
            if isinstance(layer, LoraLayer):
                base = layer.get_base_layer()
                delta = sum(layer.get_delta_weight(name) for name in layer.active_adapters)
                dequantize_model(base)
                base.weight.add_(delta.to(base.weight.dtype))
        model = model.unload()
        dequantize_model(model)
        return model

    def save_pretrained(self, path: str | Path) -> None:
        """The merged model in ``path`` and the peft adapter in ``path/adapter``."""
        path = Path(path)
        self.merged_model().save_pretrained(str(path))
        self.save_adapter(path / ADAPTER_DIR)
