"""Deferred imports of heavy modules.

Importing torch takes about 1.7 s, yet ``zo-llm list`` and ``zo-llm --help`` only read
the registries' docstrings and options. Modules that the registries import therefore
bind ``torch`` to a proxy that imports the real module on first attribute access, and
decorate methods with :func:`no_grad` rather than ``@torch.no_grad()``, which would
run (and import torch) when the class body executes.
"""

from __future__ import annotations

import functools
import importlib
import types
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class LazyModule(types.ModuleType):
    """A stand-in for the module ``name`` that imports it when an attribute is read.

    Unlike :class:`importlib.util.LazyLoader`, nothing is put in ``sys.modules`` until
    the first attribute access, so other code keeps seeing the module as not imported.
    """

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._load(), attr)

    def __dir__(self) -> list[str]:
        return dir(self._load())

    def _load(self) -> types.ModuleType:
        module = self.__dict__.get("_module")
        if module is None:
            module = self.__dict__["_module"] = importlib.import_module(self.__name__)
        return module


def lazy_module(name: str) -> Any:
    """The module ``name``, imported on first attribute access."""
    return LazyModule(name)


torch = lazy_module("torch")


def no_grad(function: F) -> F:
    """``@torch.no_grad()`` that imports torch when ``function`` runs, not when decorated."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with torch.no_grad():
            return function(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """A package's module ``__getattr__`` that imports each public name on first use.

    Args:
      package: the package's ``__name__``.
      exports: public name -> the submodule (relative to ``package``) that defines it.
    """
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{exports[name]}", package), name)
        namespace[name] = value  # later lookups skip this function
        return value

    return __getattr__
