"""Deferred imports of heavy modules.

Importing torch takes about 1.7 s, yet ``zo-llm list`` and ``zo-llm --help`` only read
the registries' docstrings and options. Modules that the registries import therefore
bind ``torch`` to a proxy that imports the real module on first attribute access, and
decorate methods with :func:`no_grad` rather than ``@torch.no_grad()``, which would
run (and import torch) when the class body executes.
"""

from __future__ import annotations
import __future__

import functools
import importlib
import importlib.util
import types
from collections.abc import Callable, Iterator, Sequence
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


def public_names(namespace: dict[str, Any]) -> list[str]:
    """A package facade's ``__all__``: the names its ``__init__`` imported (not submodules).

    Why derived: a public class is then typed where it is defined and once in its
    package's imports, never again in a list that can fall behind.
    """
    return sorted(
        name
        for name, value in namespace.items()
        if not name.startswith("_")
        and not isinstance(value, (types.ModuleType, __future__._Feature))
    )


def lazy_sources(
    package: str, sources: Sequence[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A package's module ``__getattr__`` and ``__dir__`` serving the public names of its
    submodules ``sources`` (each one's ``__all__``), each imported on first use.

    ``sources`` go from light to heavy: a name is looked up in each in turn, so
    ``zo_llm.RunConfig`` imports no torch while ``zo_llm.train`` does. ``__all__``
    itself is computed on first use (it imports every source).
    """
    namespace = importlib.import_module(package).__dict__

    def modules() -> Iterator[types.ModuleType]:
        for source in sources:
            yield importlib.import_module(f".{source}", package)

    def __dir__() -> list[str]:
        return sorted({name for module in modules() for name in module.__all__})

    def __getattr__(name: str) -> Any:
        if name == "__all__":
            value: Any = __dir__()
        elif name.startswith("_") or importlib.util.find_spec(f"{package}.{name}"):
            # a submodule (``from zo_llm import config``): the import system loads it
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        else:
            found = (module for module in modules() if name in module.__all__)
            module = next(found, None)
            if module is None:
                raise AttributeError(f"module {package!r} has no attribute {name!r}")
            value = getattr(module, name)
        namespace[name] = value  # later lookups skip this function
        return value

    return __getattr__, __dir__
