"""A space whose candidates are those of an inner space over some of its numbers.

The ``lora`` space perturbs its adapter tensors exactly as the ``full`` space
perturbs weights (a :class:`~zo_llm.parametrizations.full.FullWeights` bound to
the ``lora_`` parameters), and the ``svd`` space searches a vector of
singular-value offsets exactly as the ``tensor`` space searches a vector (a
:class:`~zo_llm.parametrizations.tensor.TensorSpace` holding it). Forwarding to
that inner space, instead of copying its code, keeps one implementation of
seeded noise, exact restore and fp32 accumulation.
"""

from __future__ import annotations

from ..candidates import SeededUpdate
from ..lazy import torch
from .base import Parametrization


class DelegatingSpace(Parametrization):
    """Forwards the seeded and vector methods to ``self._inner`` (set by :meth:`bind`)."""

    _inner: Parametrization | None = None

    @property
    def inner(self) -> Parametrization:
        if self._inner is None:
            raise RuntimeError(f"bind() the {type(self).__name__} space to a model first")
        return self._inner

    def perturb(self, seed: int, scale: float) -> None:
        self.inner.perturb(seed, scale)

    def unperturb(self) -> None:
        self.inner.unperturb()

    def reperturb(self, seed: int, scale: float) -> None:
        self.inner.reperturb(seed, scale)

    def apply_update(self, update: SeededUpdate, decay: float = 0.0) -> None:
        self.inner.apply_update(update, decay)

    def shift(self, update: SeededUpdate) -> None:
        self.inner.shift(update)

    def unshift(self) -> None:
        self.inner.unshift()

    def update_norm(self, update: SeededUpdate) -> float:
        return self.inner.update_norm(update)

    def get_vector(self) -> torch.Tensor:
        return self.inner.get_vector()

    def set_vector(self, vector: torch.Tensor) -> None:
        self.inner.set_vector(vector)

    def nonfinite(self) -> list[str]:
        return self.inner.nonfinite()
