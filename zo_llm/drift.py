"""How far a run moved the weights: ``||theta - theta_0|| / ||theta_0||``, at every evaluation.

Why: two methods that reach the same reward can move a model by very
different amounts (the ES-vs-GRPO studies report ES moving weights further),
and a larger move tends to forget more. The number is over every parameter of
the model, in fp32, accumulated one tensor at a time (no second model in
memory unless one is loaded already):

- a space that says its change as weight deltas (``svd``, ``lora``: hooks and
  adapters over unchanged base weights) gives it exactly, ``||delta||`` per
  changed matrix, against the model's own (base) weights;
- a space that writes the weights (``full``, ``lowrank``, ``tensor``) is
  compared with the base weights read back: the KL reference where one is
  loaded, else the safetensors files of the model's folder (or of its hub
  cache) one tensor at a time. Where neither exists (a GGUF file, a model
  object) it is not measured (None): loading the base again at every
  evaluation would double the run's peak memory.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .lazy import no_grad, torch
from .models.quantize import dense

__all__ = ["relative_weight_change"]

#: Base tensors by the model's parameter names.
BaseTensors = Callable[[], Iterator[tuple[str, Any]]]


@no_grad
def relative_weight_change(model: Any, space: Any, base: BaseTensors | None) -> float | None:
    """``||theta - theta_0|| / ||theta_0||`` of ``model`` moved by ``space``; 0 at the start.

    None where the base weights cannot be read again (a model passed as an object).
    """
    if not space.moves_weights_in_place:
        changed = sum(float(delta.float().square().sum()) for _, delta in space.weight_deltas())
        norm = sum(
            float(dense(p).float().square().sum())
            for name, p in model.named_parameters()
            if ".lora_" not in name  # an adapter's factors are not the model's weights
        )
        return math.sqrt(changed / norm) if norm else 0.0
    if base is None:
        return None
    parameters = dict(model.named_parameters())
    changed = norm = 0.0
    for name, tensor in base():
        current = parameters.get(name)
        if current is None:  # a tied weight stored once, or a buffer
            continue
        reference = tensor.to(current.device, torch.float32)
        changed += float((current.float() - reference).square().sum())
        norm += float(reference.square().sum())
    return math.sqrt(changed / norm) if norm else 0.0


def base_tensors(source: str | None, reference: Any = None) -> BaseTensors | None:
    """Where the base weights are read from: ``reference`` (a loaded base model), else the
    safetensors files of the folder ``source`` or of its hub cache; None if there are none."""
    if reference is not None:
        return lambda: iter(reference.named_parameters())
    folder = _folder_of(source) if source else None
    files = sorted(folder.glob("*.safetensors")) if folder is not None else []
    return (lambda: _read(files)) if files else None


def _folder_of(source: str) -> Path | None:
    """The local folder of ``source``: itself, or the hub cache's snapshot of a hub id."""
    if Path(source).is_dir():
        return Path(source)
    if source.endswith(".gguf") or Path(source).exists():
        return None
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(source, local_files_only=True))
    except Exception:  # noqa: BLE001 -- not cached, or not a hub id: nothing to read
        return None


def _read(files: list[Path]) -> Iterator[tuple[str, Any]]:
    from safetensors import safe_open

    for file in files:
        with safe_open(str(file), framework="pt") as opened:
            for name in opened.keys():  # noqa: SIM118 -- safe_open is not a mapping
                yield name, opened.get_tensor(name)
