"""The evaluator seam: score a population of candidates on one prompt minibatch.

Reward policy (documented in docs/): a reward function that raises, times
out, returns no real number or returns NaN/inf, for one completion does not
stop the run (see :mod:`zo_llm.evaluation.rewards`). That completion's reward
is recorded as NaN and counted in ``reward_failures``; a member's reward is
the mean of its finite completion rewards (NaN if none is finite), and the
strategy replaces a NaN member by the population's worst finite reward.
The first failure of each kind is logged with its example.

An :class:`Evaluator` is registered by name in :data:`EVALUATORS` and says
which spaces it can run (:meth:`Evaluator.supports`); the run config picks one
by name or ``auto`` (the first registered, by :attr:`Evaluator.preference`,
that supports the space), checked when the config is built. The sequential
evaluator works for every space; batched and distributed ones plug in here
without touching the runner.
"""

from __future__ import annotations

import contextlib
import itertools
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np

from ..candidates import SEEDED
from ..registry import Registry
from .rewards import RewardScorer
from .scores import Scores

if TYPE_CHECKING:
    from ..candidates import AnyCandidate
    from ..generation import Generator
    from ..parametrizations.base import Parametrization
    from ..tasks.base import Example, Task

T = TypeVar("T")
AUTO = "auto"


class Evaluator(ABC):
    """Scores candidates on prompts: one fitness per candidate, in order.

    Built with the run's bound space, its text generator and its task; it
    returns every reward (candidates x prompts), which the strategy shapes.
    """

    #: Lower is tried first by ``evaluator = "auto"``.
    preference: ClassVar[int] = 100
    name: ClassVar[str] = "evaluator"  # set by the registry
    #: A wrapper spreads another evaluator's work (over Ray workers, say): it is chosen by
    #: :meth:`wanted` from the run config, never by ``evaluator = NAME`` nor by ``auto``,
    #: and built as ``cls(inner, config, driver_state, replica)``: ``driver_state()`` is the
    #: search's state to start from, ``replica(config, purpose="replica")`` builds a copy of
    #: the run elsewhere.
    #: (Configs are typed ``Any`` here: the run config imports this module to check itself.)
    wrapper: ClassVar[bool] = False
    #: Whether members run as terms added to the forward pass (the batched evaluator's way),
    #: which needs a backend that runs it here (:attr:`Generator.runs_forward_hooks`).
    needs_forward_hooks: ClassVar[bool] = False

    def __init__(
        self,
        space: Parametrization,
        generator: Generator,
        task: Task,
        scorer: RewardScorer | None = None,
    ) -> None:
        if not self.supports(type(space)):
            raise ValueError(
                f"evaluator {self.name!r} cannot run space {type(space).__name__}; evaluators "
                f"that can: {', '.join(_able(type(space)))}"
            )
        self.space = space
        self.generator = generator
        self.task = task
        #: How rewards are called (the run's time limit); default: in this process.
        self.scorer = scorer if scorer is not None else RewardScorer(task)

    @classmethod
    def supports(cls, space: type[Parametrization]) -> bool:
        """Whether this evaluator can score candidates of ``space`` (a class: no model needed)."""
        del space
        return True

    @classmethod
    def default_rows(cls, device: Any) -> int:
        """Rows per forward batch when the run does not set ``generation_batch_size``.

        One member's prompts at a time: 32 rows (prompts) per batch, on any device.
        """
        del device
        return 32

    @abstractmethod
    def evaluate(self, candidates: Sequence[AnyCandidate], examples: Sequence[Example]) -> Scores:
        """Rewards of ``candidates`` on ``examples``: candidates x prompts, and the failures."""

    def prepare(self, examples: Sequence[Example]) -> Any:
        """The examples' prompts, prepared once for every member of the round."""
        return self.generator.prepare([self.task.prompt(example) for example in examples])

    def describe(self) -> str:
        """How a population is scored, for the run's banner (``batched evaluation``, say)."""
        return f"{self.name} evaluation"

    def take_counters(self) -> dict[str, float]:
        """Counts since the last call that the iteration's record shows (none here)."""
        return {}

    @classmethod
    def wanted(cls, config: Any) -> bool:
        """Whether a wrapper wraps the run's evaluator (``--workers 2``, say)."""
        del config
        return False

    @classmethod
    def check_config(cls, config: Any) -> None:
        """Refuses a run config that a wanted wrapper cannot run, before the model loads."""
        del config

    def member_groups(self, members: int, prompts: int) -> list[range]:
        """Members that must be scored together to get this evaluator's numbers (each alone)."""
        del prompts
        return [range(m, m + 1) for m in range(members)]

    def close(self) -> None:
        """Releases what the evaluator started: the reward process (a later call restarts it)."""
        self.scorer.close()


EVALUATORS: Registry[type[Evaluator]] = Registry("evaluator")


def _wrappers(config: Any) -> list[type[Evaluator]]:
    """The registered wrappers that ``config`` asks for, in name order."""
    found = (EVALUATORS.get(name) for name in EVALUATORS.names())
    return [cls for cls in found if cls.wrapper and cls.wanted(config)]


def check_distribution(config: Any) -> None:
    """Refuses, before any model loads, what the wrappers the config asks for cannot run."""
    for cls in _wrappers(config):
        cls.check_config(config)


def build_evaluator(
    evaluator: Evaluator,
    config: Any,
    driver_state: Callable[[], dict[str, Any]],
    replica: Callable[..., Any] | None,
) -> Evaluator:
    """``evaluator`` inside the wrappers ``config`` asks for (none for a ``replica``-less run:
    a replica is never spread further)."""
    if replica is None:
        return evaluator
    for cls in _wrappers(config):
        evaluator = cls(evaluator, config, driver_state, replica)
    return evaluator


def choose_evaluator(
    name: str, space: type[Parametrization], hooks: bool = True
) -> type[Evaluator]:
    """The evaluator class named ``name`` (or the preferred one for ``auto``) for ``space``.

    ``hooks``: whether the generation backend runs the forward pass where a
    space's hooks see it (:attr:`Generator.runs_forward_hooks`).

    Raises:
      ValueError: for an unknown name, a wrapper, or one that cannot run ``space``.
    """
    if name == AUTO:
        fitting = [EVALUATORS.get(n) for n in _able(space, hooks)]
        if not fitting:
            raise ValueError(f"no registered evaluator can run space {space.__name__}")
        return min(fitting, key=lambda cls: cls.preference)
    cls = EVALUATORS.get(name)
    if cls.wrapper:
        raise ValueError(
            f"evaluator {name!r} spreads another evaluator and is chosen by the run's settings "
            f"(e.g. --workers 2), not by name; evaluators to name: {', '.join(_able(space, hooks))}"
        )
    if cls.needs_forward_hooks and not hooks:
        raise ValueError(
            f"evaluator {name!r} adds each member's terms to the forward pass, which the "
            f"generation backend runs elsewhere; evaluators that can: "
            f'{", ".join(_able(space, hooks))} (or evaluator = "auto")'
        )
    if not cls.supports(space):
        raise ValueError(
            f"evaluator {name!r} cannot run space {space.__name__}; evaluators that can: "
            f'{", ".join(_able(space, hooks))} (or evaluator = "auto")'
        )
    return cls


def _able(space: type[Parametrization], hooks: bool = True) -> list[str]:
    """The registered evaluators (not wrappers) that can run ``space`` (with ``hooks``)."""
    found = [(n, EVALUATORS.get(n)) for n in EVALUATORS.names()]
    return [
        n
        for n, cls in found
        if not cls.wrapper and cls.supports(space) and (hooks or not cls.needs_forward_hooks)
    ]


def score(
    task: Task,
    examples: Sequence[Example],
    completions: Sequence[str],
    scorer: RewardScorer | None = None,
) -> list[float]:
    """Rewards of ``completions``; failures become NaN (see the module's reward policy).

    Through ``scorer`` where given (the run's, with its time limit), else in
    this process.
    """
    return (scorer or RewardScorer(task))(examples, completions)


def around_offsets(
    space: Parametrization, candidates: Sequence[AnyCandidate]
) -> Iterator[list[AnyCandidate]]:
    """Runs of consecutive candidates sharing an offset, the space shifted to it meanwhile.

    Each run is yielded with the space at its offset (restored exactly when
    the caller asks for the next run); an empty offset moves nothing.
    """
    for offset, group in itertools.groupby(candidates, key=lambda candidate: candidate.offset):
        with space.shifted(offset) if offset else contextlib.nullcontext():
            yield list(group)


def score_members(
    scorer: RewardScorer, examples: Sequence[Example], completions: Sequence[Sequence[str]]
) -> Scores:
    """Each member's rewards on ``examples`` from its completions, and the failures.

    The whole population is scored in one call of ``scorer`` (one message to
    its process).
    """
    flat = [completion for member in completions for completion in member]
    values = scorer(list(examples) * len(completions), flat)
    per_prompt = np.asarray(values, dtype=np.float64).reshape(len(completions), len(examples))
    return Scores(per_prompt, int(np.isnan(per_prompt).sum()))


def evaluate_candidates(
    space: Parametrization, candidates: Sequence[AnyCandidate], score_one: Callable[[], T]
) -> list[T]:
    """``score_one()`` with ``space`` at each candidate in turn, restored exactly after each.

    A candidate's point is its ``offset`` plus its own move (a seeded
    perturbation, or an explicit vector). Consecutive candidates with the same
    offset (ESSAM's second round, all around the neighbour point) are
    evaluated inside one :meth:`Parametrization.shifted`, so the shift is paid
    once per round, not per member; an empty offset moves nothing. Consecutive
    seeded members move from one to the next by :meth:`Parametrization.reperturb`
    (one pass over the weights instead of two). Every evaluation loop goes
    through here, so none forgets the offset.
    """
    results: list[T] = []
    for group in around_offsets(space, candidates):
        if group[0].kind != SEEDED:
            for candidate in group:
                with candidate.applied_to(space):
                    results.append(score_one())
            continue
        space.perturb(group[0].seed, group[0].scale)
        try:
            results.append(score_one())
            for candidate in group[1:]:
                space.reperturb(candidate.seed, candidate.scale)
                results.append(score_one())
        finally:
            space.unperturb()
    return results
