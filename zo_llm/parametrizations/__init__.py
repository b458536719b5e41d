"""Parametrizations: which numbers of a model are searched, and how they are perturbed."""

from ..candidates import SEEDED, VECTOR
from ..lazy import public_names as _public_names
from .base import PARAMETRIZATIONS, Parametrization
from .full import FullConfig, FullWeights
from .lora import LoraSpace, LoraSpaceConfig
from .lowrank import LowRankConfig, LowRankWeights
from .svd import SVDConfig, SVDSpace
from .tensor import TensorConfig, TensorSpace

__all__ = _public_names(globals())
