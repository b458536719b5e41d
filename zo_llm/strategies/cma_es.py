"""CMA-ES through pycma, for vector spaces (name: ``cma-es``).

Implements CMA-ES (Hansen & Ostermeier 2001; Hansen, *The CMA Evolution
Strategy: A Tutorial*, arXiv 1604.00772, https://arxiv.org/abs/1604.00772) by
delegating to pycma (https://github.com/CMA-ES/pycma). ESSA (arXiv
2507.04453) runs it on the singular values of LoRA adapters: a few thousand
dimensions, where a full covariance is affordable. ``diagonal=True`` is
sep-CMA (Ros & Hansen 2008), linear in the dimension.

The adapter is thin:

- pycma minimises, so it is told ``-reward``;
- pycma's own options pass through as one ``options`` dict, except the ones
  zo-llm sets (population, diagonal and the random stream);
- randomness: pycma draws from numpy's *global* generator, seeded by its
  ``seed`` option. The adapter instead hands pycma the ``randn`` of a private
  ``numpy.random.RandomState(library_seed)`` and ``seed=nan`` (pycma then
  leaves the global generator alone). These are the very numbers pycma draws
  with ``{"seed": library_seed}``, so the trajectory is pycma's own (a test
  checks it bit for bit), and no other code in the process can shift it;
- state: checkpoints are read with ``torch.load(weights_only=True)``, which
  takes tensors, numbers, strings, lists and dicts, not pycma's object. pycma
  is deterministic given its seed and the values it is told, so the state is
  the start point and the values told per generation, and loading replays
  them into a fresh ``CMAEvolutionStrategy`` (a test checks the replayed run
  continues bit-identically). Replay costs one ``tell`` per past generation,
  so the runner's periodic snapshot holds pycma's object pickled (its own
  random stream included) and loading replays only the tells after it.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..lazy import torch
from ..parametrizations.base import Parametrization
from .base import STRATEGIES, StrategyConfig
from .vector import VectorStrategy

#: pycma options that zo-llm sets itself, and where the user sets them instead.
_RESERVED = {
    "popsize": "the population option",
    "CMA_diagonal": "the diagonal option",
    "seed": "the run seed",
    "randn": "the run seed",
}


@dataclass(frozen=True)
class CMAESConfig(StrategyConfig):
    """CMA-ES settings; anything else pycma knows goes in ``options``."""

    population: int | None = field(
        default=None, metadata={"help": "pycma's popsize (None: 4 + floor(3 ln dim))"}
    )
    sigma: float = field(
        default=0.1, metadata={"help": "pycma's sigma0: initial step, ~1/4 of the search range"}
    )
    diagonal: bool = field(
        default=False, metadata={"help": "sep-CMA: diagonal covariance, for larger dimensions"}
    )
    options: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "further pycma options (cma.CMAOptions())"}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.population is not None and self.population < 3:
            # pycma 4.x fails at popsize 2 on large spaces ("unused injected direction")
            raise ValueError(f"population={self.population} is too small; use 3 or more (or None)")
        if not self.sigma > 0:
            raise ValueError(f"sigma={self.sigma} must be positive")
        for key in self.options:
            if key in _RESERVED:
                raise ValueError(f"options[{key!r}] is set by zo-llm; use {_RESERVED[key]}")
        import cma

        unknown = sorted(set(self.options) - set(cma.CMAOptions()))
        if unknown:
            raise ValueError(
                f"pycma has no option {', '.join(map(repr, unknown))}; see cma.CMAOptions()"
            )


@STRATEGIES.register("cma-es")
class CMAES(VectorStrategy):
    """CMA-ES through pycma for vector spaces (Hansen & Ostermeier 2001)."""

    config_class = CMAESConfig
    #: Largest dim for a full covariance: dim^2 numbers and eigendecompositions.
    full_max_dim = 5_000

    def __init__(
        self, space: Parametrization, config: CMAESConfig | None = None, seed: int = 0
    ) -> None:
        super().__init__(space, config, seed)
        self._es: Any = None
        self._x0: torch.Tensor | None = None
        self._told: list[list[float]] = []  # -rewards told per generation, for replay
        self._asked: list[np.ndarray] = []
        self._device = torch.device("cpu")
        self.replayed_tells = 0  # by the last load_state_dict: what a snapshot saves

    @classmethod
    def test_config(cls) -> CMAESConfig:
        return CMAESConfig(population=6, sigma=0.1)

    @classmethod
    def dim_limit(cls, config: CMAESConfig) -> int:
        return cls.separable_max_dim if config.diagonal else cls.full_max_dim

    @classmethod
    def _too_large_hint(cls, config: CMAESConfig) -> str:
        if config.diagonal:
            return ""
        return f"use diagonal=True (sep-CMA, up to {cls.separable_max_dim} dimensions)"

    def pycma_options(self) -> dict[str, Any]:
        """The options the adapter gives pycma (quiet, no files, private random stream)."""
        options = {"verbose": -9, "verb_disp": 0, "verb_log": 0, **self.config.options}
        options |= {
            "CMA_diagonal": self.config.diagonal,
            "seed": np.nan,
            "randn": np.random.RandomState(self.library_seed).randn,
        }
        if self.config.population is not None:
            options["popsize"] = self.config.population
        return options

    def evaluations_per_iteration(self) -> int:
        """pycma's popsize for the space's dim and these options, by pycma's own code."""
        import cma

        dim = self.space.dim
        options = cma.CMAOptions(self.pycma_options()).complement().evalall({"N": dim})
        return cma.options_parameters.CMAParameters(dim, options, verbose=False).popsize

    def _start(self, x0: torch.Tensor) -> None:
        import cma

        self._device = x0.device
        self._x0 = x0.detach().to("cpu", torch.float64)
        self._es = cma.CMAEvolutionStrategy(
            self._x0.numpy(), self.config.sigma, self.pycma_options()
        )
        self._told = []

    def _sample(self) -> torch.Tensor:
        self._asked = self._es.ask()
        return self._to_space(np.stack(self._asked))

    def _update(self, population: torch.Tensor, rewards: np.ndarray) -> dict[str, Any]:
        values = [-float(r) for r in rewards]
        self._es.tell(self._asked, values)
        self._told.append(values)
        return {"sigma": float(self._es.sigma)}

    @property
    def mean(self) -> torch.Tensor:
        return self._to_space(self._es.mean)

    def _to_space(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.array(array, dtype=np.float64)).to(self._device)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "x0": self._x0, "told": [list(v) for v in self._told]}

    def snapshot(self) -> dict[str, torch.Tensor] | None:
        """pycma's object pickled (its private random stream included), and the tells before it."""
        if not self.started:
            return None
        pickled = torch.frombuffer(bytearray(pickle.dumps(self._es)), dtype=torch.uint8)
        return {"pycma": pickled, "told": torch.tensor(len(self._told))}

    def load_state_dict(self, state: dict[str, Any], snapshot: Any = None) -> None:
        super().load_state_dict(state)
        if not self.started:
            return
        pending = self._pending
        self._start(state["x0"].to(self.space.get_vector().device))
        told = [list(v) for v in state["told"]]
        done = 0
        if snapshot is not None:
            # the run's own snapshot file, written by this class: unpickling it is trusted
            self._es = pickle.loads(snapshot["pycma"].numpy().tobytes())  # noqa: S301
            done = int(snapshot["told"])
        for values in told[done:]:
            self._es.tell(self._es.ask(), list(values))
        self._told = told
        self.replayed_tells = len(told) - done
        if pending is not None:
            self._asked = self._es.ask()
            if not np.array_equal(np.stack(self._asked), pending.cpu().numpy()):
                raise RuntimeError("replaying the CMA-ES history did not reproduce its population")
