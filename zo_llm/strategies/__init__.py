"""Strategies: how candidates are proposed and how their rewards move the search point."""

from . import es as _es  # noqa: F401  (registers "es")
from .base import STRATEGIES, Candidate, IncompatibleSpaceError, Strategy
from .es import ESConfig, OpenAIES
from .shaping import SHAPINGS

__all__ = [
    "STRATEGIES",
    "SHAPINGS",
    "Candidate",
    "ESConfig",
    "IncompatibleSpaceError",
    "OpenAIES",
    "Strategy",
]
