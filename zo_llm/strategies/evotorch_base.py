"""The adapter beneath evotorch's searchers: ask/tell over an evotorch distribution.

evotorch's searcher classes (``evotorch.algorithms.SNES`` and the others) run
their own loop: sample, evaluate through a ``Problem``, update. zo-llm needs
ask/tell, so :class:`EvotorchSearcher` uses the public pieces those classes
are made of, evotorch's distributions (``sample(generator=...)``,
``compute_gradients``, ``update_parameters``), ``evotorch.tools.modify_tensor``
for stdev limits and the functional ClipUp, and repeats the classes' update
step (``GaussianSearchAlgorithm._update_distribution``). Tests check that each
registered searcher reproduces evotorch's own class on the same objective
and seed.

Tensors stay torch tensors on the space's device: float64 for float64
spaces, else float32. Rewards are maximised (``objective_sense="max"``). The
state (distribution parameters, generator state, ClipUp's velocity) is all
tensors, numbers and strings, so checkpoints load with ``weights_only=True``.
evotorch is imported when a searcher starts: importing it takes seconds.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from ..lazy import torch
from ..parametrizations.base import Parametrization
from .vector import VectorStrategy

RANKINGS = ("nes", "centered", "linear", "normalized", "raw")


def validate(config: Any) -> None:
    """Checks shared by all searcher configs; messages name the value and the fix."""
    if config.population is not None and config.population < 2:
        raise ValueError(f"population={config.population} is too small; use 2 or more")
    for name in ("sigma", "center_lr", "stdev_lr", "parenthood_ratio", "stdev_max_change"):
        value = getattr(config, name, None)
        if value is not None and not value > 0:
            raise ValueError(f"{name}={value} must be positive")
    ranking = getattr(config, "ranking", "raw")
    if ranking not in RANKINGS:
        raise ValueError(f"ranking={ranking!r} is not valid; use one of: {', '.join(RANKINGS)}")


class _ClipUp:
    """evotorch's functional ClipUp behind the ``ascent`` method that distributions call."""

    def __init__(self, state: Any) -> None:
        self.state = state

    def ascent(self, grad: torch.Tensor) -> torch.Tensor:
        from evotorch.algorithms.functional import clipup_tell

        self.state = clipup_tell(self.state, follow_grad=grad)
        return self.state.velocity


class EvotorchSearcher(VectorStrategy):
    """Base of the evotorch adapters: sample, rank, follow the distribution's gradient."""

    #: Class name in ``evotorch.distributions``.
    distribution: ClassVar[str]

    def __init__(self, space: Parametrization, config: Any = None, seed: int = 0) -> None:
        super().__init__(space, config, seed)
        self._dist: Any = None
        self._generator: torch.Generator | None = None
        self._clipup: _ClipUp | None = None

    @classmethod
    def dim_limit(cls, config: Any) -> int:
        del config
        return cls.separable_max_dim

    def evaluations_per_iteration(self) -> int:
        return self._popsize(self.space.dim)

    # hyperparameters that depend on the dimension, as evotorch derives them
    def _popsize(self, dim: int) -> int:
        return self.config.population or int(4 + math.floor(3 * math.log(dim)))

    def _center_lr(self) -> float:
        return getattr(self.config, "center_lr", 1.0)  # CEM: the mean *is* the elites' mean

    def _stdev_lr(self, dim: int) -> float:
        return getattr(self.config, "stdev_lr", None) or 1.0

    def _distribution_options(self) -> dict[str, Any]:
        """Fixed parameters of the distribution besides its mean and stdevs."""
        return {}

    def _clipup_state(self, x0: torch.Tensor) -> Any:
        """The center optimizer's initial state, or None to follow the gradient with center_lr."""
        return None

    def _start(self, x0: torch.Tensor) -> None:
        from evotorch import distributions

        dtype = torch.float64 if x0.dtype == torch.float64 else torch.float32
        x0 = x0.to(dtype)
        parameters = {
            "mu": x0,
            "sigma": torch.full_like(x0, self.config.sigma),
            **self._distribution_options(),
        }
        self._dist = getattr(distributions, self.distribution)(
            parameters, dtype=dtype, device=x0.device
        )
        self._generator = torch.Generator(device=x0.device)
        self._generator.manual_seed(self.library_seed)
        state = self._clipup_state(x0)
        self._clipup = None if state is None else _ClipUp(state)

    def _sample(self) -> torch.Tensor:
        dim = self._dist.solution_length
        return self._dist.sample(self._popsize(dim), generator=self._generator)

    def _update(self, population: torch.Tensor, rewards: np.ndarray) -> dict[str, Any]:
        from evotorch.tools import modify_tensor

        fitness = torch.as_tensor(rewards, dtype=population.dtype, device=population.device)
        gradients = self._dist.compute_gradients(
            population,
            fitness,
            objective_sense="max",
            ranking_method=getattr(self.config, "ranking", None),
        )
        rates = {"sigma": self._stdev_lr(self._dist.solution_length)}
        optimizers = {}
        if self._clipup is not None:
            optimizers["mu"] = self._clipup
        else:
            rates["mu"] = self._center_lr()
        old_sigma = self._dist.sigma
        old_clipup = None if self._clipup is None else self._clipup.state
        new = self._dist.update_parameters(gradients, learning_rates=rates, optimizers=optimizers)
        change = getattr(self.config, "stdev_max_change", None)
        if change is not None:
            new = new.modified_copy(sigma=modify_tensor(old_sigma, new.sigma, max_change=change))
        tensors = [value for value in new.parameters.values() if torch.is_tensor(value)]
        finite = all(torch.isfinite(value).all() for value in tensors)
        if not finite:  # stdevs underflow once converged to machine precision: keep the last
            if self._clipup is not None:
                self._clipup.state = old_clipup
            return {"stalled": True}
        self._dist = new
        return {}

    @property
    def mean(self) -> torch.Tensor:
        return self._dist.mu

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        if self.started:
            state["distribution"] = dict(self._dist.parameters)
            state["generator"] = self._generator.get_state()
            state["clipup"] = None if self._clipup is None else self._clipup.state._asdict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if not self.started:
            return
        from evotorch import distributions
        from evotorch.algorithms.functional.funcclipup import ClipUpState

        parameters = dict(state["distribution"])
        mu = parameters["mu"]
        self._dist = getattr(distributions, self.distribution)(
            parameters, dtype=mu.dtype, device=mu.device
        )
        self._generator = torch.Generator(device=mu.device)
        self._generator.set_state(state["generator"])
        clipup = state["clipup"]
        self._clipup = None if clipup is None else _ClipUp(ClipUpState(**clipup))
