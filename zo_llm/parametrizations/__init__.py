"""Parametrizations: which numbers of a model are searched, and how they are perturbed."""

from .base import PARAMETRIZATIONS, SEEDED, VECTOR, Parametrization
from .full import FullConfig, FullWeights
from .tensor import TensorConfig, TensorSpace

__all__ = [
    "PARAMETRIZATIONS",
    "SEEDED",
    "VECTOR",
    "FullConfig",
    "FullWeights",
    "Parametrization",
    "TensorConfig",
    "TensorSpace",
]
