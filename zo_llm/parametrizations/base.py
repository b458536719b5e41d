"""The parametrization protocol: which numbers a strategy searches, and how they move.

A parametrization binds to a model and owns its trainable view. Strategies
never touch tensors: they name perturbations by seeds (the ``"seeded"`` kind,
any size) or, for small spaces, exchange explicit vectors (the ``"vector"``
kind). Only the parametrization turns a seed into a change of weights, and it
can replay that change later, which is what makes checkpoints small and
distributed workers cheap to keep in sync.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ..candidates import VECTOR, SeededUpdate
from ..lazy import torch
from ..registry import Registry


@dataclass(frozen=True)
class ParametrizationConfig:
    """Options shared by every parametrization (none yet)."""


class Parametrization(ABC):
    """Base class of search spaces over a model's parameters.

    Life cycle: construct with a config, :meth:`bind` to a model, then let a
    strategy perturb, restore and update it. ``kinds`` says which candidate
    forms it supports (``"seeded"`` and/or ``"vector"``).
    """

    config_class: ClassVar[type] = ParametrizationConfig
    kinds: ClassVar[frozenset[str]] = frozenset()
    #: Whether members and steps are written into the model's own weights (not adapters or
    #: hooks): then a backend holding its own copy of the weights can move them too.
    moves_weights_in_place: ClassVar[bool] = False
    #: Whether :meth:`weight_deltas` says what the space does as dense weight changes: then a
    #: backend that cannot run its hooks or adapters writes ``base + delta`` instead.
    has_weight_deltas: ClassVar[bool] = False

    def __init__(self, config: Any = None) -> None:
        self.config = config if config is not None else self.config_class()
        self.model: torch.nn.Module | None = None

    @classmethod
    def test_config(cls) -> Any:
        """A config small enough for unit tests."""
        return cls.config_class()

    @classmethod
    def quantized_base_problem(cls, config: Any) -> str | None:
        """Why this space cannot search over an int8 base (``quantize``), or None if it can.

        A quantised base is only sound where the base weights are never written:
        the adapter spaces override this.
        """
        return "it changes the base weights themselves"

    @abstractmethod
    def bind(self, model: torch.nn.Module) -> None:
        """Attaches to ``model``; after this, :attr:`dim` and the perturbation methods work."""

    @property
    @abstractmethod
    def dim(self) -> int:
        """Number of searched scalars."""

    def planned_dim(self, model: torch.nn.Module) -> int | None:
        """The :attr:`dim` this space would have bound to ``model``, from its shapes alone.

        ``model`` may live on the meta device (no weights), so a run can refuse
        a space too large for its strategy before the model loads. None: not
        known without binding.
        """
        del model
        return None

    def size_hint(self) -> str:
        """Which of this space's options make :attr:`dim` smaller ("" if none).

        A strategy that refuses the space as too large quotes it, so the
        message says what to change in the space as well as in the strategy.
        """
        return ""

    # seeded kind ---------------------------------------------------------

    def perturb(self, seed: int, scale: float) -> None:
        """Adds ``scale * eps(seed)`` in place; :meth:`unperturb` undoes it exactly."""
        raise NotImplementedError(f"{type(self).__name__} does not support seeded candidates")

    def unperturb(self) -> None:
        """Restores the parameters as they were before the active :meth:`perturb`, bit for bit."""
        raise NotImplementedError(f"{type(self).__name__} does not support seeded candidates")

    def reperturb(self, seed: int, scale: float) -> None:
        """Moves from the active perturbation straight to ``scale * eps(seed)``.

        The same as :meth:`unperturb` then :meth:`perturb`, which is what this
        default does; a space may do both in one pass over its weights
        (``full`` does, drawing an antithetic pair's noise once for both).
        """
        self.unperturb()
        self.perturb(seed, scale)

    @contextlib.contextmanager
    def perturbed(self, seed: int, scale: float) -> Iterator[None]:
        """Context manager: perturbed inside, exactly restored on exit (even on error)."""
        self.perturb(seed, scale)
        try:
            yield
        finally:
            self.unperturb()

    def apply_update(self, update: SeededUpdate, decay: float = 0.0) -> None:
        """``theta <- (1 - decay) * theta + sum(coeff * eps(seed))``, accumulated in fp32."""
        raise NotImplementedError(f"{type(self).__name__} does not support seeded candidates")

    def shift(self, update: SeededUpdate) -> None:
        """Moves to ``theta + sum(coeff * eps(seed))`` until :meth:`unshift` restores it exactly.

        A temporary move that members are perturbed around (ESSAM evaluates
        its second population at a neighbour of theta, then returns): while
        shifted, :meth:`perturb`/:meth:`unperturb` work as usual and restore
        the shifted point; :meth:`apply_update` is refused.
        """
        raise NotImplementedError(f"{type(self).__name__} does not support seeded candidates")

    def unshift(self) -> None:
        """Restores the parameters as they were before :meth:`shift`, bit for bit."""
        raise NotImplementedError(f"{type(self).__name__} does not support seeded candidates")

    @contextlib.contextmanager
    def shifted(self, update: SeededUpdate) -> Iterator[None]:
        """Context manager: :meth:`shift`-ed inside, exactly restored on exit (even on error)."""
        self.shift(update)
        try:
            yield
        finally:
            self.unshift()

    def update_norm(self, update: SeededUpdate) -> float:
        """The Euclidean norm of ``sum(coeff * eps(seed))``, computed exactly from the noise."""
        raise NotImplementedError(f"{type(self).__name__} does not support seeded candidates")

    # vector kind ---------------------------------------------------------

    def get_vector(self) -> torch.Tensor:
        """A copy of the searched values as one flat tensor."""
        raise NotImplementedError(f"{type(self).__name__} does not support vector candidates")

    def set_vector(self, vector: torch.Tensor) -> None:
        """Sets the searched values from one flat tensor (exactly, in the space's dtype)."""
        raise NotImplementedError(f"{type(self).__name__} does not support vector candidates")

    @contextlib.contextmanager
    def at_vector(self, vector: torch.Tensor) -> Iterator[None]:
        """Context manager: the space holds ``vector`` inside and its previous values on exit."""
        saved = self.get_vector()
        self.set_vector(vector)
        try:
            yield
        finally:
            self.set_vector(saved)

    # batched evaluation --------------------------------------------------

    #: Whether members can run as rows of one batch over the shared weights
    #: (:meth:`member_batch`, :meth:`rows_as_members`): the batched evaluator's need.
    supports_batched: ClassVar[bool] = False

    def member_batch(self, candidates: Sequence[Any]) -> Any:
        """What :meth:`rows_as_members` needs of ``candidates``, prepared once per population.

        Each member is taken around the space's current point (shifted, if
        the caller shifted it), as :meth:`perturb` or :meth:`set_vector`
        would place it; nothing is moved.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot run members as rows of a batch")

    def rows_as_members(self, batch: Any, members: range) -> contextlib.AbstractContextManager:
        """Inside the block, every forward pass runs ``members`` of ``batch`` side by side.

        The rows of each forward are ``len(members)`` equal blocks of
        consecutive rows, block i belonging to member ``members[i]``; each
        block sees its member's weights while the model's own are not
        touched (a member's terms are added next to the shared weights).
        """
        raise NotImplementedError(f"{type(self).__name__} cannot run members as rows of a batch")

    # persistence ---------------------------------------------------------

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint needs to rebuild the current point from the bound base model."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any], snapshot: Any = None) -> None:
        """Moves the bound (base) model to the point described by ``state``.

        ``snapshot`` is what :meth:`snapshot` returned at some earlier point of
        the same run (a mapping of tensors, read lazily), given only to a space
        whose :meth:`snapshot` returns one: the space starts from it and
        replays only what ``state`` records after it.
        """

    def snapshot(self) -> dict[str, torch.Tensor] | None:
        """The current point as tensors, for a space whose :meth:`state_dict` grows.

        Why: a seeded space's state is its update history, replayed from the
        base model on load, so loading a long run would take as long as the run
        did. The runner writes a snapshot every few checkpoints, and loading
        replays only the updates after it. None (the default): the state does
        not grow (explicit factors or a vector), no snapshot is needed.
        """
        return None

    def weight_deltas(self) -> list[tuple[torch.nn.Module, torch.Tensor]]:
        """Each linear layer this space changes and its weight's change, fp32, as ``W``'s shape.

        Why: a space that acts through forward hooks or adapters (``svd``,
        ``lora``) cannot move the weights of an engine that runs its own forward
        pass (vLLM); writing ``base + delta`` into each weight gives the same
        model, up to round-off. Spaces with :attr:`has_weight_deltas` define it.
        """
        raise NotImplementedError(f"{type(self).__name__} does not express itself as weights")

    def nonfinite(self) -> list[str]:
        """Names of the searched tensors holding an inf or NaN (the run stops on any).

        The default checks the vector of a vector space; a seeded space
        checks the tensors it moves.
        """
        if VECTOR in self.kinds and self.dim:
            return [] if bool(torch.isfinite(self.get_vector()).all()) else ["vector"]
        return []

    @abstractmethod
    def save_pretrained(self, path: str | Path) -> None:
        """Writes a folder that plain transformers (or peft) loads."""


PARAMETRIZATIONS: Registry[type[Parametrization]] = Registry("parametrization")
