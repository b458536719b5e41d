"""evotorch's Gaussian searchers for vector spaces (names: ``snes``, ``xnes``, ``pgpe``, ``cem``).

Wraps EvoTorch (Toklu et al., *EvoTorch: Scalable Evolutionary Computation in
Python*, arXiv 2302.12600, https://arxiv.org/abs/2302.12600):

- ``snes``: separable natural ES (Schaul et al., GECCO 2011), a diagonal
  Gaussian with multiplicative stdev updates;
- ``xnes``: exponential natural ES (Glasmachers et al., GECCO 2010), a full
  covariance (so limited to a few thousand dimensions, like full CMA-ES);
- ``pgpe``: policy gradients with parameter-based exploration (Sehnke et al.
  2010), symmetric samples, mean moved by ClipUp (Toklu et al., PPSN 2020);
- ``cem``: the cross-entropy method (Rubinstein 1999): mean and stdevs of the
  best ``parenthood_ratio`` of the samples.

evotorch's searcher classes run their own loop (sample, evaluate through a
``Problem``, update); zo-llm needs ask/tell. So the adapters use the public
pieces those classes are made of, evotorch's distributions
(``sample(generator=...)``, ``compute_gradients``, ``update_parameters``),
``evotorch.tools.modify_tensor`` for stdev limits and the functional ClipUp,
and repeat the classes' update step (``GaussianSearchAlgorithm``'s
``_update_distribution``), with their defaults. A test checks that each
adapter reproduces evotorch's own searcher on the same objective and seed.
Tensors stay torch tensors on the space's device: float64 for float64
spaces, else float32. Rewards are maximised (``objective_sense="max"``).
The state (distribution parameters, generator state, ClipUp's velocity) is
all tensors, so checkpoints load with ``weights_only=True``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from .base import STRATEGIES
from .vector import VectorStrategy

RANKINGS = ("nes", "centered", "linear", "normalized", "raw")


def _validate(config: Any) -> None:
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


@dataclass(frozen=True)
class SNESConfig:
    """SNES settings; defaults are evotorch's."""

    population: int | None = field(
        default=None, metadata={"help": "samples per generation (None: 4 + floor(3 ln dim))"}
    )
    sigma: float = field(default=0.1, metadata={"help": "initial stdev of every coordinate"})
    center_lr: float = field(default=1.0, metadata={"help": "learning rate of the mean"})
    stdev_lr: float | None = field(
        default=None, metadata={"help": "learning rate of the stdevs (None: 0.2(3+ln d)/sqrt d)"}
    )
    ranking: str = field(
        default="nes", metadata={"help": f"fitness ranking: {', '.join(RANKINGS)}"}
    )

    def __post_init__(self) -> None:
        _validate(self)


@dataclass(frozen=True)
class XNESConfig(SNESConfig):
    """XNES settings; defaults are evotorch's."""

    stdev_lr: float | None = field(
        default=None, metadata={"help": "learning rate of the covariance (None: 0.6(3+ln d)/d^1.5)"}
    )


@dataclass(frozen=True)
class PGPEConfig:
    """PGPE settings; ClipUp and stdev defaults are evotorch's, the rest a common starting point."""

    population: int = field(default=20, metadata={"help": "samples per generation (even)"})
    sigma: float = field(default=0.1, metadata={"help": "initial stdev of every coordinate"})
    center_lr: float = field(default=0.05, metadata={"help": "ClipUp step size of the mean"})
    stdev_lr: float = field(default=0.1, metadata={"help": "learning rate of the stdevs"})
    momentum: float = field(default=0.9, metadata={"help": "ClipUp momentum"})
    max_speed: float | None = field(
        default=None, metadata={"help": "ClipUp's largest step (None: 2 * center_lr)"}
    )
    stdev_max_change: float | None = field(
        default=0.2, metadata={"help": "largest relative change of a stdev per step"}
    )
    ranking: str = field(
        default="centered", metadata={"help": f"fitness ranking: {', '.join(RANKINGS)}"}
    )

    def __post_init__(self) -> None:
        _validate(self)
        if self.population % 2:
            raise ValueError(
                f"population={self.population} must be even (samples come in +/- pairs); "
                f"use {self.population + 1}"
            )
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum={self.momentum} must be in [0, 1)")
        if self.max_speed is not None and not self.max_speed > 0:
            raise ValueError(f"max_speed={self.max_speed} must be positive (or None)")


@dataclass(frozen=True)
class CEMConfig:
    """Cross-entropy method settings."""

    population: int = field(default=20, metadata={"help": "samples per generation"})
    sigma: float = field(default=0.1, metadata={"help": "initial stdev of every coordinate"})
    parenthood_ratio: float = field(
        default=0.5, metadata={"help": "share of the best samples that set the new mean/stdevs"}
    )
    stdev_max_change: float | None = field(
        default=None, metadata={"help": "largest relative change of a stdev per step (None: any)"}
    )

    def __post_init__(self) -> None:
        _validate(self)
        if not self.parenthood_ratio * self.population >= 1 or self.parenthood_ratio > 1:
            raise ValueError(
                f"parenthood_ratio={self.parenthood_ratio} must be in (0, 1] and select at least "
                f"one of the {self.population} samples"
            )


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

    def __init__(self, space, config: Any = None, seed: int = 0) -> None:
        super().__init__(space, config, seed)
        self._dist: Any = None
        self._generator: torch.Generator | None = None
        self._clipup: _ClipUp | None = None

    def max_dim(self) -> int:
        return self.separable_max_dim

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
        new = self._dist.update_parameters(gradients, learning_rates=rates, optimizers=optimizers)
        change = getattr(self.config, "stdev_max_change", None)
        if change is not None:
            new = new.modified_copy(sigma=modify_tensor(old_sigma, new.sigma, max_change=change))
        tensors = [value for value in new.parameters.values() if torch.is_tensor(value)]
        finite = all(torch.isfinite(value).all() for value in tensors)
        if not finite:  # stdevs underflow once converged to machine precision; keep the last
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


@STRATEGIES.register("snes")
class SNES(EvotorchSearcher):
    """Separable natural evolution strategies, through evotorch (Schaul et al. 2011)."""

    config_class = SNESConfig
    name = "snes"
    distribution = "ExpSeparableGaussian"

    @classmethod
    def test_config(cls) -> SNESConfig:
        return SNESConfig(population=6)

    def _stdev_lr(self, dim: int) -> float:
        return self.config.stdev_lr or 0.2 * (3 + math.log(dim)) / math.sqrt(dim)


@STRATEGIES.register("xnes")
class XNES(EvotorchSearcher):
    """Exponential natural evolution strategies, through evotorch (Glasmachers et al. 2010)."""

    config_class = XNESConfig
    name = "xnes"
    distribution = "ExpGaussian"
    #: A full covariance, like full CMA-ES: dim^2 numbers and matrix exponentials.
    full_max_dim = 5_000

    @classmethod
    def test_config(cls) -> XNESConfig:
        return XNESConfig(population=6)

    def max_dim(self) -> int:
        return self.full_max_dim

    def _stdev_lr(self, dim: int) -> float:
        return self.config.stdev_lr or 0.6 * (3 + math.log(dim)) / (dim * math.sqrt(dim))


@STRATEGIES.register("pgpe")
class PGPE(EvotorchSearcher):
    """PGPE with ClipUp, through evotorch (Sehnke et al. 2010; Toklu et al. 2020)."""

    config_class = PGPEConfig
    name = "pgpe"
    distribution = "SymmetricSeparableGaussian"

    @classmethod
    def test_config(cls) -> PGPEConfig:
        return PGPEConfig(population=6)

    def _distribution_options(self) -> dict[str, Any]:
        return {"divide_mu_grad_by": "num_directions", "divide_sigma_grad_by": "num_directions"}

    def _clipup_state(self, x0: torch.Tensor) -> Any:
        from evotorch.algorithms.functional import clipup

        config = self.config
        return clipup(
            center_init=x0,
            momentum=config.momentum,
            center_learning_rate=config.center_lr,
            max_speed=config.max_speed,
        )


@STRATEGIES.register("cem")
class CEM(EvotorchSearcher):
    """The cross-entropy method, through evotorch (Rubinstein 1999)."""

    config_class = CEMConfig
    name = "cem"
    distribution = "SeparableGaussian"

    @classmethod
    def test_config(cls) -> CEMConfig:
        return CEMConfig(population=6)

    def _distribution_options(self) -> dict[str, Any]:
        return {"parenthood_ratio": self.config.parenthood_ratio}
