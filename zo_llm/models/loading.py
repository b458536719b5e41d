"""Loading any Hugging Face causal LM with its tokenizer, ready for batched inference.

Gradient-free training only ever runs the model forward, so models are put in
eval mode with gradients switched off: no autograd buffers, inference memory.

A local folder is checked before anything is read from it
(:func:`~zo_llm.models.source.check_model_folder`): a folder without ``config.json``, weights or a
tokenizer fails with one message naming the folder, the missing files and
how to add them, not with the error transformers gives half-way through.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from .aliases import resolve_alias
from .quantize import check_quantization, quantize_base
from .source import check_model_source

__all__ = ["load_model", "prepare_tokenizer", "resolve_device", "resolve_dtype"]

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


def resolve_dtype(name: str) -> torch.dtype:
    try:
        return DTYPES[name]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; use one of: {', '.join(DTYPES)}") from None


def resolve_device(name: str) -> torch.device:
    """``"auto"`` picks CUDA when available, else the CPU; other names go to torch."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for but CUDA is not available; use --device cpu")
    return device


def load_model(
    name_or_path: str | Path,
    dtype: str = "float32",
    device: str = "auto",
    quantize: str | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Loads a causal LM and its tokenizer from an alias, a hub id, a folder or a GGUF file.

    The tokenizer pads on the left (decoder-only models continue from the
    right edge) and falls back to EOS as its padding token. ``quantize="int8"``
    stores the linear layers in int8 on the device (:mod:`.quantize`): a frozen
    base for the adapter spaces.
    """
    source = check_model_source(str(name_or_path))
    torch_dtype, target = resolve_dtype(dtype), resolve_device(device)  # before any loading
    check_quantization(quantize)
    path = Path(source).expanduser()
    local = path.exists()  # a folder or a .gguf file, not a hub id
    try:
        if source.endswith(".gguf"):
            model, tokenizer = _load_gguf(path, torch_dtype)
        else:
            tokenizer = AutoTokenizer.from_pretrained(source)
            model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype)
    except OSError as error:
        if local:
            raise OSError(f"could not load the model in {source}: {_one_line(error)}") from None
        raise OSError(
            f"could not load model {source!r}: it is not a local model folder and the hub "
            f"could not provide it (offline? HF_HUB_OFFLINE is set to "
            f"{_offline_setting()}). Pass a local folder or a reachable hub id. "
            f"({_one_line(error)})"
        ) from error
    except Exception as error:
        if not local or not _is_file_error(error):
            raise
        raise ValueError(
            f"could not read the model in {source}: {type(error).__name__}: {_one_line(error)}; "
            "a file there is damaged or incomplete: save the model again "
            "(model.save_pretrained(folder))"
        ) from None
    prepare_tokenizer(tokenizer)
    model.to(target)
    model.eval()
    model.requires_grad_(False)
    if quantize:
        quantize_base(model, quantize)
    return model, tokenizer


def _is_file_error(error: BaseException) -> bool:
    """Whether ``error`` is a library's complaint about a damaged file it read.

    safetensors' ``SafetensorError`` (a truncated header), torch's unpickling
    errors (a truncated ``pytorch_model.bin``) and JSON errors in its files.
    """
    import json
    import pickle

    from safetensors import SafetensorError

    damaged = (json.JSONDecodeError, EOFError, pickle.UnpicklingError, SafetensorError)
    if isinstance(error, damaged):
        return True
    return isinstance(error, RuntimeError) and "PytorchStreamReader" in str(error)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


def _load_gguf(path: Path, dtype: torch.dtype) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A GGUF file, dequantised, as a plain transformers model.

    transformers loads GGUF weights dequantised but marks the model as
    quantised, and such a model refuses ``save_pretrained``; so the weights
    are moved into a fresh model built from the same config without the
    quantisation entry, which saves like any other. The fresh model is built
    on the meta device and takes the loaded tensors themselves (tied ones
    stay tied), so the weights are never held twice: a copy into a fresh
    model of real tensors was the ~500 MB of extra peak memory of a run
    started from SmolLM2-135M's GGUF.
    """
    folder, name = str(path.parent), path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(loaded.state_dict(keep_vars=True), assign=True)
    for buffer_name, buffer in loaded.named_buffers():  # those not in the state dict
        owner_name, _, attribute = buffer_name.rpartition(".")
        owner = model.get_submodule(owner_name)
        if getattr(owner, attribute).is_meta:
            setattr(owner, attribute, buffer)
    model.generation_config = loaded.generation_config
    return model.to(dtype), tokenizer


def prepare_tokenizer(tokenizer: PreTrainedTokenizerBase) -> None:
    """Left padding, and a padding token (EOS) when the tokenizer has none."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token


def _offline_setting() -> str:
    import os

    return repr(os.environ.get("HF_HUB_OFFLINE", "unset"))


def meta_model(name_or_path: str | Path) -> PreTrainedModel | None:
    """The model's architecture on the meta device: shapes and module types, no weights.

    Built from the model's config alone (a small file), so sizes can be
    checked before minutes of loading. None when the config cannot be read
    here (the full load then reports why).
    """
    from transformers import AutoConfig

    source = resolve_alias(str(name_or_path))
    try:
        if source.endswith(".gguf"):
            path = Path(source).expanduser()
            config = AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name)
        else:
            config = AutoConfig.from_pretrained(source)
        with torch.device("meta"):
            return AutoModelForCausalLM.from_config(config)
    except (OSError, ValueError, KeyError):
        return None
