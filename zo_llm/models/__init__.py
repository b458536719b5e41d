"""Model loading: hub ids, local folders, GGUF files and the bundled models, and quantisation.

The names below are imported on first use, as in :mod:`zo_llm`: ``loading`` imports
torch and transformers (several seconds), while ``zo-llm list`` only needs
:mod:`zo_llm.models.aliases`.
"""

from __future__ import annotations

from ..lazy import lazy_sources

__getattr__, __dir__ = lazy_sources(__name__, ("loading",))
