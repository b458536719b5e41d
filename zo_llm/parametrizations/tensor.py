"""A plain torch vector as a search space (name: ``tensor``).

Every strategy runs on it: seeded strategies perturb it with the same seeded
noise as the ``full`` space, vector strategies (CMA-ES, evotorch's searchers)
set it to explicit candidates. Two uses:

- black-box objectives: :func:`zo_llm.maximize` searches a vector that a
  Python function scores (the convergence tests and
  ``benchmarks/strategies.py`` run every strategy this way);
- one named parameter of a model, searched in place
  (``--space tensor --space-opt parameter=model.norm.weight``), so vector
  strategies can already be run on a model.

While the vector is perturbed or shifted the space keeps a copy and restores
by copying it back, which is exact and simple: this space is for vectors that
fit in memory twice (a whole model is the ``full`` space's job).
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..candidates import SEEDED, VECTOR, SeededUpdate
from ..lazy import no_grad, torch
from .base import PARAMETRIZATIONS, Parametrization
from .noise import chunk_bounds, chunk_noise, name_key

VECTOR_FILE = "vector.safetensors"
CONFIG_FILE = "vector_config.json"


@dataclass(frozen=True)
class TensorConfig:
    """Where the vector comes from when no ``x0`` is passed to :class:`TensorSpace`."""

    dim: int = field(default=0, metadata={"help": "length of the space's own vector"})
    init: float = field(default=0.0, metadata={"help": "initial value of every element"})
    parameter: str | None = field(
        default=None,
        metadata={"help": "name of a model parameter searched in place (flattened) instead"},
    )

    def __post_init__(self) -> None:
        if self.dim < 0:
            raise ValueError(f"dim={self.dim} must be >= 0")
        if not math.isfinite(self.init):
            raise ValueError(f"init={self.init} must be finite")


@PARAMETRIZATIONS.register("tensor")
class TensorSpace(Parametrization):
    """A flat torch vector, searched by seeded or explicit-vector strategies (name: ``tensor``).

    Args:
      config: ``dim``/``init`` for a vector of its own, or ``parameter`` to
        search one parameter of the model passed to :meth:`bind`.
      x0: the starting vector (1-D, copied), overriding ``dim``/``init``. A
        float tensor keeps its dtype; anything else becomes float64, which is
        what pycma and numpy objectives compute in.
    """

    config_class = TensorConfig
    kinds = frozenset({SEEDED, VECTOR})
    moves_weights_in_place = True  # a named parameter, in place

    def __init__(self, config: TensorConfig | None = None, x0: Any = None) -> None:
        super().__init__(config)
        self._vector: torch.Tensor | None = None
        self._saved: torch.Tensor | None = None  # the point before the active perturbation
        self._before_shift: torch.Tensor | None = None
        if x0 is not None:
            if self.config.parameter is not None:
                raise ValueError("give x0 or config.parameter, not both")
            vector = (
                x0.detach() if torch.is_tensor(x0) else torch.as_tensor(x0, dtype=torch.float64)
            )
            if vector.ndim != 1 or vector.numel() == 0:
                raise ValueError(
                    f"x0 must be a non-empty 1-D vector; got shape {tuple(vector.shape)}"
                )
            dtype = vector.dtype if vector.is_floating_point() else torch.float64
            self._vector = vector.to(dtype=dtype, copy=True)
        elif self.config.parameter is None:
            if self.config.dim < 1:
                raise ValueError(
                    "the tensor space needs a vector: pass x0=, or set dim (>= 1) or parameter"
                )
            self._vector = torch.full((self.config.dim,), self.config.init, dtype=torch.float64)

    @classmethod
    def test_config(cls) -> TensorConfig:
        """The final norm weight of the tiny Llama models the tests build."""
        return TensorConfig(parameter="model.norm.weight")

    def bind(self, model: torch.nn.Module | None) -> None:
        name = self.config.parameter
        if name is None:
            if model is not None:
                raise ValueError(
                    "this tensor space searches its own vector, which the model never reads; "
                    "name a model parameter to search (parameter=NAME, e.g. model.norm.weight) "
                    "or use zo_llm.maximize for a Python objective"
                )
            return
        if model is None:
            raise ValueError(f"parameter={name!r} needs a model to bind to")
        params = dict(model.named_parameters())
        if name not in params:
            raise ValueError(
                f"the model has no parameter {name!r}; its parameters look like: "
                f"{', '.join(list(params)[:4])}"
            )
        param = params[name]
        if not param.is_floating_point() or not param.data.is_contiguous():
            raise ValueError(f"parameter {name!r} must be a contiguous floating-point tensor")
        self.model = model
        self._vector = param.data.view(-1)

    @property
    def dim(self) -> int:
        return 0 if self._vector is None else self._vector.numel()

    def planned_dim(self, model: torch.nn.Module) -> int | None:
        """The named parameter's size, or the own vector's."""
        if self.config.parameter is None:
            return self.dim
        param = dict(model.named_parameters()).get(self.config.parameter)
        return None if param is None else param.numel()

    def size_hint(self) -> str:
        if self.config.parameter is None:
            return "shrink the tensor space: a shorter vector (x0 or dim)"
        return (
            f"shrink the tensor space: name a smaller parameter (parameter=NAME; now "
            f"{self.config.parameter!r})"
        )

    @property
    def _x(self) -> torch.Tensor:
        if self._vector is None:
            raise RuntimeError(
                f"bind() the space to a model holding {self.config.parameter!r} first"
            )
        return self._vector

    @property
    def _exact_dtype(self) -> torch.dtype:
        """Updates accumulate in float64 for float64 vectors, else in float32 (as ``full``)."""
        return torch.float64 if self._x.dtype == torch.float64 else torch.float32

    def _combination(self, update: SeededUpdate) -> torch.Tensor:
        """``sum(coeff * eps(seed))`` over the whole vector, in :attr:`_exact_dtype`."""
        x = self._x
        key = name_key(self.config.parameter or "tensor")
        total = torch.zeros(x.numel(), dtype=self._exact_dtype, device=x.device)
        for chunk, (start, end) in enumerate(chunk_bounds(x.numel())):
            part = total[start:end]
            for seed, coeff in update:
                noise = chunk_noise(int(seed), key, chunk, end - start, x.device)
                part.add_(noise.to(part.dtype), alpha=float(coeff))
        return total

    def _idle(self, action: str) -> None:
        if self._saved is not None:
            raise RuntimeError(f"{action} during a perturbation; unperturb() first")

    # seeded kind ---------------------------------------------------------

    @no_grad
    def perturb(self, seed: int, scale: float) -> None:
        if self._saved is not None:
            raise RuntimeError("perturb() called twice without unperturb(); restore first")
        self._saved = self._x.clone()
        self._x.add_(self._combination([(seed, scale)]))

    @no_grad
    def unperturb(self) -> None:
        if self._saved is None:
            raise RuntimeError("unperturb() called with no active perturbation")
        self._x.copy_(self._saved)
        self._saved = None

    @no_grad
    def shift(self, update: SeededUpdate) -> None:
        self._idle("shift()")
        if self._before_shift is not None:
            raise RuntimeError("shift() called twice without unshift(); restore first")
        self._before_shift = self._x.clone()
        self._x.add_(self._combination(update))

    @no_grad
    def unshift(self) -> None:
        self._idle("unshift()")
        if self._before_shift is None:
            raise RuntimeError("unshift() called with no active shift")
        self._x.copy_(self._before_shift)
        self._before_shift = None

    @no_grad
    def update_norm(self, update: SeededUpdate) -> float:
        return float(torch.linalg.vector_norm(self._combination(update), dtype=torch.float64))

    @no_grad
    def apply_update(self, update: SeededUpdate, decay: float = 0.0) -> None:
        self._idle("apply_update()")
        if self._before_shift is not None:
            raise RuntimeError("apply_update() while shifted; unshift() first")
        new = self._x.to(self._exact_dtype, copy=True)
        if decay:
            new.mul_(1.0 - decay)
        self._x.copy_(new.add_(self._combination(update)))

    # vector kind ---------------------------------------------------------

    def get_vector(self) -> torch.Tensor:
        return self._x.detach().clone()

    @no_grad
    def set_vector(self, vector: torch.Tensor) -> None:
        self._idle("set_vector()")
        vector = torch.as_tensor(vector)
        if vector.shape != (self.dim,):
            raise ValueError(f"expected a vector of shape ({self.dim},), got {tuple(vector.shape)}")
        self._x.copy_(vector)

    # batched evaluation --------------------------------------------------

    supports_batched = True

    @no_grad
    def member_batch(self, candidates: Sequence[Any]) -> torch.Tensor:
        """The members' vectors stacked (N, dim), each the point its candidate would set."""
        x = self._x
        rows = []
        for candidate in candidates:
            if candidate.kind == SEEDED:  # what perturb() makes of the current point
                rows.append(x + self._combination([(candidate.seed, candidate.scale)]).to(x.dtype))
            else:
                rows.append(torch.as_tensor(candidate.vector).to(device=x.device, dtype=x.dtype))
        return torch.stack(rows)

    def rows_as_members(
        self, batch: torch.Tensor, members: range
    ) -> contextlib.AbstractContextManager:
        """Every module holding the searched parameter runs each member block with its vector.

        Generic, because the parameter may play any role (a norm's scale, a
        bias, a projection): the module's forward is called once per member
        block, with the member's values copied into the parameter, and the
        parameter's own values are copied back after each forward.
        """
        if self.model is None:
            raise RuntimeError("rows_as_members() needs a space bound to a model parameter")
        return _per_member_forwards(self.model, self._x, batch[members.start : members.stop])

    # persistence ---------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {"vector": self.get_vector()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.set_vector(state["vector"])

    def save_pretrained(self, path: str | Path) -> None:
        """The model's ``save_pretrained`` folder, else ``vector.safetensors`` and its config."""
        if self.model is not None:
            self.model.save_pretrained(str(path))
            return
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        save_file({"vector": self.get_vector().contiguous()}, str(path / VECTOR_FILE))
        meta = {"space": "tensor", "dim": self.dim, "dtype": str(self._x.dtype)}
        (path / CONFIG_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))

    @classmethod
    def from_pretrained(cls, path: str | Path) -> TensorSpace:
        """A space holding the vector that :meth:`save_pretrained` wrote to ``path``."""
        from safetensors.torch import load_file

        return cls(x0=load_file(str(Path(path) / VECTOR_FILE))["vector"])


@contextlib.contextmanager
def _per_member_forwards(
    model: torch.nn.Module, flat: torch.Tensor, vectors: torch.Tensor
) -> Iterator[None]:
    """Inside, the modules holding ``flat``'s parameter run each block with its own vector."""
    owners = [
        module
        for module in model.modules()
        if any(p.data_ptr() == flat.data_ptr() for p in module.parameters(recurse=False))
    ]
    saved = flat.clone()
    own_forwards = [module.__dict__.get("forward") for module in owners]
    try:
        for module in owners:
            module.forward = _forward_per_member(module.forward, flat, saved, vectors)
        yield
    finally:
        for module, own in zip(owners, own_forwards, strict=True):
            if own is None:
                del module.forward  # back to the class's forward
            else:
                module.forward = own
        flat.copy_(saved)


def _forward_per_member(forward, flat: torch.Tensor, saved: torch.Tensor, vectors: torch.Tensor):
    """``forward`` run on each member block with that member's values in ``flat``."""

    @no_grad
    def forward_per_member(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        rows, members = x.shape[0], len(vectors)
        outputs = []
        try:
            for index, vector in enumerate(vectors):
                flat.copy_(vector)
                output = forward(*_block(index, members, rows, (x, *args)),
                                 **_block(index, members, rows, kwargs))  # fmt: skip
                if not torch.is_tensor(output):
                    raise TypeError(
                        f"batched evaluation of the tensor space needs a module returning one "
                        f"tensor, got {type(output).__name__}; use --evaluator sequential"
                    )
                outputs.append(output)
        finally:
            flat.copy_(saved)
        return torch.cat(outputs)

    return forward_per_member


def _block(index: int, members: int, rows: int, values: Any) -> Any:
    """Member ``index``'s block of each tensor with ``rows`` leading rows in ``values``."""

    def block(value: Any) -> Any:
        if torch.is_tensor(value) and value.ndim and value.shape[0] == rows:
            return value.chunk(members)[index]
        return value

    if isinstance(values, dict):
        return {key: block(value) for key, value in values.items()}
    return tuple(block(value) for value in values)
