"""An int8 frozen base for the adapter spaces, through torchao (``quantize = "int8"``).

ESSA (arXiv 2507.04453) searches its singular values over an INT8 or INT4
base: the adapter is all that changes, so the base can be stored in a quarter
of the memory. zo-llm does the same for ``lora`` and ``svd``, whose base
weights are never written. Each decoder linear layer's weight becomes torchao's
``Int8Tensor`` (per output channel, symmetric: ``Int8WeightOnlyConfig``); the
activations, the searched adapter and its hooks stay in the model's dtype.

Why torchao: it is PyTorch's maintained quantisation library (``torch.ao``'s
dynamic quantisation is deprecated), its tensors keep each layer an
``nn.Linear`` (so peft wraps them, and forward hooks see the same module), it
runs on the CPU and on CUDA, and ``dequantize()`` gives back the float weight
that an exported model is written from. Measured on SmolLM2-135M on a 2-core
CPU (docs/results.md): the weights take 2.4x less memory (the tied embedding
stays in float), generation is no faster, and the process is no smaller,
because the float checkpoint stays memory-mapped (file pages) beside the
int8 copy. The saving is real where the weights live in device memory.

The language-model head is left in float: SmolLM2 (like most small models)
ties it to the input embeddings, which are not a linear layer.
"""

from __future__ import annotations

import importlib.util
import logging

from ..lazy import torch

#: The quantisations a frozen base can be given.
QUANTIZATIONS = ("int8",)
INSTALL_HINT = "pip install 'zo-llm[quant]' (torchao)"


def check_quantization(name: str | None) -> None:
    """Refuses an unknown quantisation, or one whose library is not installed (no import)."""
    if name is None:
        return
    if name not in QUANTIZATIONS:
        raise ValueError(f"unknown quantize={name!r}; use one of: {', '.join(QUANTIZATIONS)}")
    if importlib.util.find_spec("torchao") is None:
        raise ValueError(f"quantize={name!r} needs torchao, which is not installed: {INSTALL_HINT}")


def quiet_torchao() -> None:
    """Silences torchao's import-time notes, which concern none of what zo-llm runs.

    peft and transformers import torchao whenever it is installed. It logs a
    warning per CUDA kernel library it cannot load on a CPU machine, and torch
    one per enum torchao registers for torch.compile.
    """
    logging.getLogger("torchao").setLevel(logging.ERROR)
    pytree = logging.getLogger("torch.utils._pytree")
    if not any(isinstance(f, _EnumNotes) for f in pytree.filters):
        pytree.addFilter(_EnumNotes())


class _EnumNotes(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "is an Enum subclass" not in record.getMessage()


def quantize_base(model: torch.nn.Module, name: str) -> int:
    """Turns every linear layer of ``model`` but the output head into ``name``; the count."""
    check_quantization(name)
    quiet_torchao()
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    chosen = [
        module
        for module in model.modules()
        if isinstance(module, torch.nn.Linear) and module is not head
    ]
    ids = {id(module) for module in chosen}
    quantize_(model, Int8WeightOnlyConfig(), filter_fn=lambda module, _: id(module) in ids)
    _return_freed_memory()
    return len(chosen)


def _return_freed_memory() -> None:
    """Hands the float copies freed by quantisation back to the OS (glibc keeps them otherwise).

    Measured on SmolLM2-135M on the CPU: 330 MiB of anonymous memory that the
    process would hold for the rest of the run.
    """
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, Windows, musl): nothing to hand back
        pass


def is_quantized(tensor: torch.Tensor) -> bool:
    """Whether ``tensor`` is a quantised weight (a tensor subclass that dequantises)."""
    return type(tensor) not in (torch.Tensor, torch.nn.Parameter) and hasattr(tensor, "dequantize")


def holds_quantized(module: torch.nn.Module) -> bool:
    """Whether any parameter of ``module`` is a quantised weight (an int8 base)."""
    return any(is_quantized(p) for p in module.parameters())


def dense(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` as a plain tensor: a quantised weight dequantised, anything else as it is."""
    return tensor.dequantize() if is_quantized(tensor) else tensor


def dequantize_model(model: torch.nn.Module) -> int:
    """Replaces each quantised parameter of ``model`` by its float value, in place; the count."""
    count = 0
    for module in model.modules():
        for name, parameter in list(module.named_parameters(recurse=False)):
            if is_quantized(parameter):
                plain = torch.nn.Parameter(dense(parameter).detach(), requires_grad=False)
                delattr(module, name)
                setattr(module, name, plain)
                count += 1
    return count
