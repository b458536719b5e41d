"""First-order baselines that zo-llm's methods are judged against (``zo_llm.baselines``)."""

from __future__ import annotations

from ..lazy import lazy_sources

__getattr__, __dir__ = lazy_sources(__name__, ("grpo",))
