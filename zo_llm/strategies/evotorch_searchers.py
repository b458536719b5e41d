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

The adapters repeat evotorch's searcher classes' update step over evotorch's
distributions, with the classes' defaults (see :mod:`.evotorch_base`); a
test checks each against evotorch's own class on the same objective and seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..lazy import torch
from .base import STRATEGIES, Equivalent, StrategyConfig
from .evotorch_base import RANKINGS, EvotorchSearcher, validate

#: The generic lr of searchers whose mean follows a gradient: the mean's learning rate.
CENTER_LR = {"lr": Equivalent("center_lr")}


@dataclass(frozen=True)
class SNESConfig(StrategyConfig):
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
        super().__post_init__()
        validate(self)


@dataclass(frozen=True)
class XNESConfig(SNESConfig):
    """XNES settings; defaults are evotorch's."""

    stdev_lr: float | None = field(
        default=None, metadata={"help": "learning rate of the covariance (None: 0.6(3+ln d)/d^1.5)"}
    )


@dataclass(frozen=True)
class PGPEConfig(StrategyConfig):
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
        super().__post_init__()
        validate(self)
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
class CEMConfig(StrategyConfig):
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
        super().__post_init__()
        validate(self)
        if not self.parenthood_ratio * self.population >= 1 or self.parenthood_ratio > 1:
            raise ValueError(
                f"parenthood_ratio={self.parenthood_ratio} must be in (0, 1] and select at least "
                f"one of the {self.population} samples"
            )


@STRATEGIES.register("snes")
class SNES(EvotorchSearcher):
    """Separable natural evolution strategies, through evotorch (Schaul et al. 2011)."""

    config_class = SNESConfig
    equivalents = CENTER_LR
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
    equivalents = CENTER_LR
    distribution = "ExpGaussian"
    #: A full covariance, like full CMA-ES: dim^2 numbers and matrix exponentials.
    full_max_dim = 5_000

    @classmethod
    def test_config(cls) -> XNESConfig:
        return XNESConfig(population=6)

    @classmethod
    def dim_limit(cls, config: XNESConfig) -> int:
        del config
        return cls.full_max_dim

    def _stdev_lr(self, dim: int) -> float:
        return self.config.stdev_lr or 0.6 * (3 + math.log(dim)) / (dim * math.sqrt(dim))


@STRATEGIES.register("pgpe")
class PGPE(EvotorchSearcher):
    """PGPE with ClipUp, through evotorch (Sehnke et al. 2010; Toklu et al. 2020)."""

    config_class = PGPEConfig
    equivalents = CENTER_LR
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
    distribution = "SeparableGaussian"

    @classmethod
    def test_config(cls) -> CEMConfig:
        return CEMConfig(population=6)

    def _distribution_options(self) -> dict[str, Any]:
        return {"parenthood_ratio": self.config.parenthood_ratio}
