"""Strategies: how candidates are proposed and how their rewards move the search point."""

from ..candidates import Candidate, VectorCandidate
from ..fitness import FITNESS
from ..lazy import public_names as _public_names
from .base import STRATEGIES, IncompatibleSpaceError, Strategy, StrategyConfig
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
from .vector import VectorStrategy

__all__ = _public_names(globals())
