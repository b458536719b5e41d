"""One small name -> class registry, instantiated once per kind of component.

The runner, the CLI and the benchmarks look components up by name and never
branch on a name; differences in behaviour are class attributes of the entries.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

__all__ = ["Registry", "UnknownNameError"]

T = TypeVar("T")

_NAME = re.compile(r"^[a-z][a-z0-9_\-]*$")


class UnknownNameError(KeyError, ValueError):
    """Raised for a name that is not registered; the message lists the known names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Registry(Generic[T]):
    """A name -> entry mapping for one kind of component ("strategy", "task", ...).

    Entries register themselves where they are defined::

        @STRATEGIES.register("es")
        class OpenAIES(Strategy): ...

    Registering a taken name raises, so two entries never shadow each other.
    A registered class gets its registry name as the class attribute ``name``,
    so the name is typed once, in the decorator.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Returns a decorator that registers its argument under ``name``."""
        if not _NAME.match(name):
            raise ValueError(
                f"{self.kind} name {name!r} is not valid: use lowercase letters, digits, '_' or '-'"
            )

        def decorator(entry: T) -> T:
            if name in self._entries:
                raise ValueError(
                    f"{self.kind} {name!r} is already registered ({self._entries[name]!r}); "
                    "pick another name"
                )
            self._entries[name] = entry
            if isinstance(entry, type):
                with contextlib.suppress(TypeError):  # built-in types take no attributes
                    entry.name = name
            return entry

        return decorator

    def get(self, name: str) -> T:
        """Returns the entry registered as ``name``; unknown names list the known ones."""
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "(none)"
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; known {self.kind} names: {known}"
            ) from None

    def name_of(self, entry: object) -> str | None:
        """The name ``entry`` is registered under, or None."""
        return next((name for name, known in self._entries.items() if known is entry), None)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"
