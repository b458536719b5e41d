"""Inside vLLM's workers: a zo-llm space bound to the engine's own weights, moved in place.

vLLM imports this module into each of its workers (``worker_extension_cls``)
and the ``vllm`` backend calls the methods of :class:`ZoWorker` through
``collective_rpc``. Why a space in the engine: a population member is a seed
(``perturb(seed, scale)``), so the driver sends integers, never weights, and
the worker draws exactly the noise the ``hf`` backend draws.

How, without a second copy of the weights: the worker builds the model's
Hugging Face skeleton on the meta device and gives each HF parameter a *view*
of the engine's tensor that holds it (a row slice of the fused ``qkv_proj``
or ``gate_up_proj``, the first ``vocab_size`` rows of a padded embedding), then
binds a space of the driver's class and options to that skeleton. The space
perturbs, restores (exactly) and updates the views, so it moves the engine's
weights; noise is drawn per HF tensor name and shape, as the ``hf`` backend
draws it.

What only vLLM's CPU build needs is kept apart below (:func:`keep_cpu_weights`,
:func:`repack_cpu_weights`): it packs each linear layer's weight into a
oneDNN or SGL handle and drops the weight, so the weights are kept at load
and packed again after every change.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

#: Fused vLLM modules and the HF modules they hold, in order (as vLLM's Llama declares).
PACKED = {"qkv_proj": ("q_proj", "k_proj", "v_proj"), "gate_up_proj": ("gate_proj", "up_proj")}


def keep_cpu_weights() -> None:
    """vLLM's CPU build: keep each linear layer's weight when it is packed (CPU only).

    Installed in the worker before the model loads; on other platforms nothing
    is packed and nothing needs keeping.
    """
    from vllm.model_executor.layers import utils
    from vllm.platforms import current_platform

    if not current_platform.is_cpu() or getattr(utils, "_zo_llm_keeps_weights", False):
        return
    dispatch = utils.dispatch_cpu_unquantized_gemm

    def keeping(layer: torch.nn.Module, remove_weight: bool) -> None:
        del remove_weight
        dispatch(layer, remove_weight=False)

    utils.dispatch_cpu_unquantized_gemm = keeping
    utils._zo_llm_keeps_weights = True


def repack_cpu_weights(model: torch.nn.Module) -> None:
    """vLLM's CPU build: pack every linear layer's (changed) weight again (CPU only)."""
    from vllm.model_executor.layers.utils import dispatch_cpu_unquantized_gemm
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return
    for module in model.modules():
        if hasattr(module, "cpu_linear") and module.weight.numel():
            dispatch_cpu_unquantized_gemm(module, remove_weight=False)


def hf_views(engine_model: torch.nn.Module, hf_config: Any) -> dict[str, torch.Tensor]:
    """Each HF parameter name of the model -> a view of the engine tensor that holds it.

    Raises:
      ValueError: for an engine parameter this mapping does not know (another
        fused layout, or a model sharded over several GPUs).
    """
    views: dict[str, torch.Tensor] = {}
    vocab = hf_config.vocab_size
    for name, tensor in engine_model.named_parameters():
        data = tensor.data
        module_name, _, leaf = name.rpartition(".")
        parent, _, kind = module_name.rpartition(".")
        if kind in PACKED:
            module = engine_model.get_submodule(module_name)
            start = 0
            for part, size in zip(PACKED[kind], module.output_sizes, strict=True):
                views[f"{parent}.{part}.{leaf}"] = data[start : start + size]
                start += size
            if start != data.shape[0]:
                raise ValueError(f"{name}: {data.shape[0]} rows, its parts {start} (sharded?)")
        elif kind in ("embed_tokens", "lm_head"):
            views[name] = data[:vocab]
        else:
            views[name] = data
    return views


def shadow_model(hf_config: Any, views: dict[str, torch.Tensor]) -> torch.nn.Module:
    """The HF model of ``hf_config`` whose parameters are ``views`` (no weights of its own)."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        shadow = AutoModelForCausalLM.from_config(hf_config)
    made: dict[int, torch.nn.Parameter] = {}  # a tied weight is one parameter, as in HF
    for name, meta in list(shadow.named_parameters(remove_duplicate=False)):
        if id(meta) not in made:
            source = views.get(name)
            if source is None and getattr(hf_config, "tie_word_embeddings", False):
                source = views.get("model.embed_tokens.weight")  # the tied lm_head
            if source is None:
                raise ValueError(f"the engine holds no tensor for the model's parameter {name}")
            made[id(meta)] = torch.nn.Parameter(source, requires_grad=False)
        module_name, _, leaf = name.rpartition(".")
        shadow.get_submodule(module_name)._parameters[leaf] = made[id(meta)]
    shadow.tie_weights()  # a tied lm_head is the embedding's parameter itself
    shadow.eval()
    return shadow


class WeightDeltas:
    """A hook or adapter space (``svd``, ``lora``) written into the engine's weights.

    The engine runs its own forward pass, so a space's hooks never fire there;
    instead each changed weight is set to ``base + delta``
    (:meth:`~zo_llm.parametrizations.base.Parametrization.weight_deltas`) after
    every move. The base weights are kept (a copy of each changed matrix), so a
    zero change writes the base back bit for bit and a member's weights are the
    same whatever came before it.
    """

    def __init__(self, space: Any) -> None:
        self.space = space
        self.base = {id(m): m.weight.detach().clone() for m, _ in space.weight_deltas()}

    @torch.no_grad()
    def write(self) -> None:
        for module, delta in self.space.weight_deltas():
            base = self.base[id(module)]
            # out of place: base.float() is base itself when the weights are fp32
            module.weight.copy_((base.float() + delta.to(base.device)).to(base.dtype))


class ZoWorker:
    """Methods vLLM adds to its worker class (names prefixed: they must not clash with its own)."""

    def zo_bind(self, space_class: type, config: Any) -> int:
        """Binds a ``space_class(config)`` to the engine's weights; returns its ``dim``."""
        model = self.model_runner.get_model()
        hf_config = self.model_config.hf_config
        self.zo_model = model
        self.zo_space = space_class(config)
        self.zo_space.bind(shadow_model(hf_config, hf_views(model, hf_config)))
        in_place = self.zo_space.moves_weights_in_place
        self.zo_deltas = None if in_place else WeightDeltas(self.zo_space)
        return self.zo_space.dim

    def zo_call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Calls ``method`` of the bound space, then packs the changed weights (CPU build)."""
        with torch.no_grad():
            result = getattr(self.zo_space, method)(*args, **kwargs)
            if self.zo_deltas is not None:
                self.zo_deltas.write()
        repack_cpu_weights(self.zo_model)
        return result

    def zo_weights(self) -> dict[str, torch.Tensor]:
        """The bound space's model parameters, by HF name (copies): what a test compares."""
        shadow = self.zo_space.model
        return {name: p.detach().clone() for name, p in shadow.named_parameters()}


with contextlib.suppress(ImportError):  # imported into a worker: vllm is there
    keep_cpu_weights()
