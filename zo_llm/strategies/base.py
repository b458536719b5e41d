"""The strategy protocol: ask for candidates, tell their rewards, update.

Like pycma, evotorch and evosax, a strategy is driven by ``ask``/``tell``. The
public methods here do the shared bookkeeping (generation counter, checks,
non-finite rewards) and call ``_ask``/``_tell``, which a strategy implements.
An iteration may be several ask/tell rounds (ESSAM has two); ``tell`` says
when one is complete.

Candidates are seeds, not tensors: a strategy bound to a ``"seeded"``
parametrization proposes ``(seed, scale)`` pairs, possibly around an offset
point (ESSAM's neighbour of theta), and moves the space by updates written as
``((seed, coeff), ...)``. Strategies over small ``"vector"`` spaces (CMA-ES,
evotorch's searchers) propose explicit vectors instead. Either kind of
candidate knows how to apply itself to a space (:meth:`Candidate.applied_to`),
so evaluators never ask which strategy made it.

Neither ``ask`` nor ``_tell`` touches the weights: a candidate is applied by
the evaluator, and ``_tell`` returns its move as a value
(:class:`~zo_llm.candidates.SeededStep` or ``VectorStep``) that the
public :meth:`Strategy.tell` applies, so the same step can be replayed on
other copies of the model.

The options ``population``, ``sigma`` and ``lr`` (:data:`GENERIC_OPTIONS`)
mean the same for every strategy: :meth:`Strategy.translate_options` maps them
onto a strategy's own names where its config spells them otherwise.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..candidates import SEEDED, VECTOR, AnyCandidate
from ..fitness import FITNESS, as_members_by_prompts, member_means
from ..lazy import torch
from ..options import same_value
from ..parametrizations.base import PARAMETRIZATIONS, Parametrization
from ..parametrizations.noise import fold_in
from ..registry import Registry

#: Options that mean the same for every strategy (the CLI's ``--population``,
#: ``--sigma``, ``--lr``): members evaluated per iteration, perturbation scale,
#: learning rate. See :meth:`Strategy.translate_options`.
GENERIC_OPTIONS = ("population", "sigma", "lr")


class IncompatibleSpaceError(ValueError):
    """A strategy was paired with a parametrization it cannot search."""


@dataclass(frozen=True)
class StrategyConfig:
    """Options every strategy has; a strategy's config subclasses it (and may change defaults)."""

    shaping: str = field(
        default="raw",
        metadata={
            "help": "how the rewards become fitness (zo-llm list): raw (mean reward), zscore, "
            "centered_rank or prompt_zscore (each prompt z-scored over the members first)"
        },
    )

    def __post_init__(self) -> None:
        FITNESS.get(self.shaping)  # an unknown name lists the known ones


def _unchanged(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class Equivalent:
    """A strategy's own option for a generic one, and how a generic value becomes its value."""

    option: str
    convert: Callable[[Any], Any] = _unchanged


class Strategy(ABC):
    """Base class of all strategies.

    Subclasses set ``config_class`` (a :class:`StrategyConfig`) and ``supported_kinds`` (and
    :attr:`equivalents` where their config names a generic option otherwise)
    and implement :meth:`evaluations_per_iteration`, :meth:`_ask` and
    :meth:`_tell`. Rewards are "higher is better".
    """

    config_class: ClassVar[type]
    supported_kinds: ClassVar[frozenset[str]] = frozenset()
    name: ClassVar[str] = "strategy"
    #: The strategy's own options for generic ones (:data:`GENERIC_OPTIONS`) that its
    #: config has no field of, e.g. MeZO's ``sigma`` is its ``eps``.
    equivalents: ClassVar[Mapping[str, Equivalent]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A strategy's options include ``shaping``: its config class must be a
        :class:`StrategyConfig`, refused when the class is defined, not mid-run."""
        super().__init_subclass__(**kwargs)
        config_class = cls.__dict__.get("config_class")
        if config_class is not None and not issubclass(config_class, StrategyConfig):
            raise TypeError(
                f"{cls.__name__}.config_class {config_class.__name__} must subclass "
                "zo_llm.strategies.StrategyConfig (it brings the shaping option)"
            )

    def __init__(self, space: Parametrization, config: Any = None, seed: int = 0) -> None:
        self.check_pairing(space, config)
        self.space = space
        self.config = config if config is not None else self.config_class()
        self.seed = int(seed)
        self.generation = 0
        self.check_dim()

    def max_dim(self) -> int | None:
        """The largest space this strategy (as configured) can search; None: any size."""
        return self.dim_limit(self.config)

    @classmethod
    def dim_limit(cls, config: Any) -> int | None:
        """The largest space the strategy with ``config`` can search; None: any size.

        A class method, so a run can check a space's size before the model loads.
        """
        del config
        return None

    def check_dim(self) -> None:
        """Refuses a space too large for this strategy, naming what would fit.

        Called at construction and again by strategies that start on their
        first ask, since a space learns its ``dim`` only when bound to a model.
        """
        self.check_size(self.config, self.space, self.space.dim)

    @classmethod
    def check_size(cls, config: Any, space: Parametrization, dim: int) -> None:
        """Refuses ``space`` of ``dim`` dimensions if too large for ``config``, naming fixes."""
        limit = cls.dim_limit(config)
        if limit is None or dim <= limit:
            return
        spaces = spaces_searched_by(cls.supported_kinds)
        any_size = strategies_searching({SEEDED})
        fixes = [cls._too_large_hint(config), space.size_hint()]
        fixes = [fix for fix in fixes if fix]
        fixes.append(
            f"search another space (spaces that work with {cls.name!r}: {', '.join(spaces)})"
        )
        fixes.append(f"search seeded spaces of any size with: {', '.join(any_size)}")
        raise IncompatibleSpaceError(
            f"strategy {cls.name!r} searches at most {limit} dimensions as configured, but "
            f"{_space_label(space)} has dim={dim}. To fit: {'; or '.join(fixes)}"
        )

    @classmethod
    def _too_large_hint(cls, config: Any) -> str:
        """What to change in ``config`` for a larger space ("" if nothing)."""
        del config
        return ""

    @classmethod
    def check_pairing(
        cls, space: Parametrization | type[Parametrization], config: Any = None
    ) -> None:
        """Refuses a space (or space class) of no kind this strategy searches, naming both sides'
        pairings, or one without a method the strategy calls (:meth:`space_methods`, as
        configured by ``config``); a class is enough, so a run checks before any model loads."""
        shared = cls.supported_kinds & space.kinds
        if not shared:
            raise IncompatibleSpaceError(cls._pairing_message(space))
        needed = [m for kind in sorted(shared) for m in KIND_METHODS.get(kind, ())]
        needed += cls.space_methods(config if config is not None else cls.config_class())
        space_class = space if isinstance(space, type) else type(space)
        missing = [name for name in dict.fromkeys(needed) if _lacks(space_class, name)]
        if missing:
            raise IncompatibleSpaceError(
                f"strategy {cls.name!r} calls {', '.join(missing)} of its space, which "
                f"{_space_label(space)} does not implement; add "
                f"{'it' if len(missing) == 1 else 'them'} (docs/extending.md lists what each "
                "strategy calls) or choose another strategy"
            )

    @classmethod
    def space_methods(cls, config: Any) -> tuple[str, ...]:
        """Methods of the space that this strategy (as ``config`` sets it) calls beyond those
        of the kinds it searches (:data:`KIND_METHODS`); ESSAM's shift, say."""
        del config
        return ()

    @classmethod
    def test_config(cls) -> Any:
        """A config small enough for unit tests."""
        return cls.config_class()

    @classmethod
    def translate_options(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """``options`` with the generic ones (:data:`GENERIC_OPTIONS`) under this strategy's names.

        A generic name that is a field of the config stays as it is; one that
        is not becomes its :attr:`equivalents` entry. Other values are left
        as given (strings from the command line are coerced later, with the
        config's types).

        Raises:
          ValueError: a generic option without an equivalent here, or given
            together with its equivalent at another value.
        """
        fields = sorted(field.name for field in dataclasses.fields(cls.config_class))
        translated = dict(options)
        for generic in GENERIC_OPTIONS:
            if generic not in options or generic in fields:
                continue
            equivalent = cls.equivalents.get(generic)
            if equivalent is None:
                raise ValueError(
                    f"strategy {cls.name!r} has no equivalent of {generic} (the generic "
                    f"--{generic}); its options: {', '.join(fields)}"
                )
            value = equivalent.convert(translated.pop(generic))
            own = equivalent.option
            if own in options and not same_value(options[own], value):
                raise ValueError(
                    f"strategy {cls.name!r} got {generic}={options[generic]!r} (its "
                    f"{own}={value!r}) and {own}={options[own]!r}; give one of them"
                )
            translated[own] = value
        return translated

    @classmethod
    def _pairing_message(cls, space: Parametrization | type[Parametrization]) -> str:
        """Names both sides: the spaces this strategy searches, and the strategies for ``space``."""
        fitting = spaces_searched_by(cls.supported_kinds)
        searchers = strategies_searching(space.kinds)
        label = _space_label(space)
        return (
            f"strategy {cls.name!r} searches {'/'.join(sorted(cls.supported_kinds))} spaces, "
            f"but {label} is {'/'.join(sorted(space.kinds)) or 'of no kind'}; "
            f"spaces that work with {cls.name!r}: {', '.join(fitting) or '(none registered)'}; "
            f"strategies that work with {label}: {', '.join(searchers) or '(none registered)'}"
        )

    def member_seed(self, member: int, stage: int = 0) -> int:
        """Noise seed of ``member``: a hash of (run seed, generation, stage, member)."""
        return fold_in(self.seed, self.generation, stage, member)

    @abstractmethod
    def evaluations_per_iteration(self) -> int:
        """Candidates evaluated by one whole iteration (all its ask/tell rounds), known upfront."""

    def ask(self) -> list[AnyCandidate]:
        """The candidates of the current round; asking never moves the space."""
        return self._ask()

    def tell(self, candidates: Sequence[AnyCandidate], rewards: Any) -> dict[str, Any]:
        """Takes the rewards of :meth:`ask`'s candidates and updates the search point.

        ``rewards`` holds one reward per candidate, or candidates x prompts
        (NaN: a reward that failed). They are shaped by the config's
        ``shaping`` (:data:`~zo_llm.fitness.FITNESS`) before :meth:`_tell`
        sees them. A candidate without a finite reward (a failed or NaN
        reward on every prompt) counts as the population's worst mean reward,
        so a broken member never pulls the update towards itself; if no
        candidate has one the round is skipped and nothing moves. Returns an
        info dict with ``complete`` (the iteration ended), ``invalid`` (how many
        candidates had no finite reward) and ``step``, the move :meth:`_tell`
        returned and this method applied to the space (None if nothing moved),
        to replay on other copies.
        """
        per_prompt = as_members_by_prompts(rewards, len(candidates))
        means = member_means(per_prompt)
        finite = np.isfinite(means)
        invalid = int((~finite).sum())
        if not finite.any():
            skipped = {"complete": True, "invalid": invalid, "skipped": True, "step": None}
            return skipped | self._skip()
        per_prompt = np.where(finite[:, None], per_prompt, means[finite].min())
        info = {"invalid": invalid, "complete": True, "step": None}
        info |= self._tell(list(candidates), FITNESS.get(self.config.shaping)(per_prompt))
        if info["step"] is not None:
            info["step"].apply_to(self.space)
        if info["complete"]:
            self.generation += 1
        return info

    def _skip(self) -> dict[str, Any]:
        """Called when a round has no usable reward; the generation still advances."""
        self.generation += 1
        return {}

    @abstractmethod
    def _ask(self) -> list[AnyCandidate]: ...

    @abstractmethod
    def _tell(self, candidates: list[AnyCandidate], fitness: np.ndarray) -> dict[str, Any]:
        """Updates the strategy's state from one shaped, finite fitness per candidate; returns
        info with ``step`` (its move, not yet applied)."""

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-identically (the point itself lives in the space)."""
        return {"generation": self.generation, "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any], snapshot: Any = None) -> None:
        """Continues from ``state`` (and from ``snapshot``, for a strategy that makes them)."""
        del snapshot
        self.generation = int(state["generation"])
        self.seed = int(state["seed"])

    def snapshot(self) -> dict[str, torch.Tensor] | None:
        """The strategy's state as tensors, for one whose :meth:`state_dict` grows with the run.

        As :meth:`Parametrization.snapshot`: the runner writes one every few
        checkpoints and loading replays only what came after it. None (the
        default): the state does not grow.
        """
        return None


#: The space methods that candidates and steps of each kind call (:mod:`zo_llm.candidates`).
KIND_METHODS = {
    SEEDED: ("perturb", "unperturb", "apply_update"),
    VECTOR: ("get_vector", "set_vector"),
}


def _lacks(space_class: type, name: str) -> bool:
    """Whether ``space_class`` leaves method ``name`` to the base class (which refuses it)."""
    own = getattr(space_class, name, None)
    return own is None or own is getattr(Parametrization, name, None)


def spaces_searched_by(kinds: Iterable[str]) -> list[str]:
    """Registered spaces a strategy supporting ``kinds`` can search (sharing a kind)."""
    kinds = set(kinds)
    return [name for name in PARAMETRIZATIONS.names() if PARAMETRIZATIONS.get(name).kinds & kinds]


def strategies_searching(kinds: Iterable[str]) -> list[str]:
    """Registered strategies that can search a space of ``kinds``."""
    kinds = set(kinds)
    return [name for name in STRATEGIES.names() if STRATEGIES.get(name).supported_kinds & kinds]


def _space_label(space: Parametrization | type[Parametrization]) -> str:
    """``'lora'`` for a registered space, else its class name (a user's own space)."""
    cls = space if isinstance(space, type) else type(space)
    name = PARAMETRIZATIONS.name_of(cls)
    return repr(name) if name else cls.__name__


STRATEGIES: Registry[type[Strategy]] = Registry("strategy")
