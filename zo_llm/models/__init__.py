"""Model loading: hub ids, local folders, GGUF files and the bundled models, and quantisation.

The names below are imported on first use, as in :mod:`zo_llm`: ``loading`` imports
torch and transformers (several seconds), while ``zo-llm list`` only needs
:mod:`zo_llm.models.aliases`.
"""

from __future__ import annotations

from ..lazy import lazy_exports

#: Public name -> the submodule that defines it.
_EXPORTS = {
    "load_model": "loading",
    "prepare_tokenizer": "loading",
    "resolve_device": "loading",
    "resolve_dtype": "loading",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)


def __dir__() -> list[str]:
    return __all__
