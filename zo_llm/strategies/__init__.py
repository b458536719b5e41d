"""Strategies: how candidates are proposed and how their rewards move the search point."""

from .base import STRATEGIES, Candidate, IncompatibleSpaceError, Strategy, VectorCandidate
from .cma_es import CMAES, CMAESConfig
from .es import ESConfig, OpenAIES
from .essam import ESSAM, ESSAMConfig
from .evotorch_searchers import (
    CEM,
    PGPE,
    SNES,
    XNES,
    CEMConfig,
    PGPEConfig,
    SNESConfig,
    XNESConfig,
)
from .mezo import MeZO, MeZOConfig
from .shaping import SHAPINGS
from .vector import VectorStrategy

__all__ = [
    "CEM",
    "CMAES",
    "ESSAM",
    "PGPE",
    "SHAPINGS",
    "SNES",
    "STRATEGIES",
    "XNES",
    "CEMConfig",
    "CMAESConfig",
    "Candidate",
    "ESConfig",
    "ESSAMConfig",
    "IncompatibleSpaceError",
    "MeZO",
    "MeZOConfig",
    "OpenAIES",
    "PGPEConfig",
    "SNESConfig",
    "Strategy",
    "VectorCandidate",
    "VectorStrategy",
    "XNESConfig",
]
