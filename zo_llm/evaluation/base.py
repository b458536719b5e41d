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
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np

from ..iteration import Scores
from ..parametrizations.base import candidate_vector
from ..registry import Registry
from ..tasks.base import mean_finite
from .rewards import RewardScorer

if TYPE_CHECKING:
    from ..models.generation import TextGenerator
    from ..parametrizations.base import Parametrization
    from ..strategies.base import AnyCandidate
    from ..tasks.base import Example, Task

T = TypeVar("T")
AUTO = "auto"


class Evaluator(ABC):
    """Scores candidates on prompts: one fitness per candidate, in order.

    Built with the run's bound space, its text generator and its task; the
    fitness is the mean reward unless ``fitness`` says otherwise.
    """

    #: Lower is tried first by ``evaluator = "auto"``.
    preference: ClassVar[int] = 100
    name: ClassVar[str] = "evaluator"  # set by the registry

    def __init__(
        self,
        space: Parametrization,
        generator: TextGenerator,
        task: Task,
        scorer: RewardScorer | None = None,
        fitness: str = "mean",
    ) -> None:
        if fitness not in FITNESS:
            raise ValueError(f"unknown fitness {fitness!r}; use one of: {', '.join(FITNESS)}")
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
        #: How a member's rewards on the prompts become its fitness (:func:`member_fitness`).
        self.fitness = fitness

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
    def evaluate(
        self,
        candidates: Sequence[AnyCandidate],
        examples: Sequence[Example],
        encoded: list[list[int]],
    ) -> Scores:
        """Rewards of ``candidates`` on ``examples`` (``encoded``: their prompts' token ids)."""

    def member_groups(self, members: int, prompts: int) -> list[range]:
        """Members that must be scored together to get this evaluator's numbers (each alone)."""
        del prompts
        return [range(m, m + 1) for m in range(members)]

    def close(self) -> None:
        """Releases what the evaluator started: the reward process (a later call restarts it)."""
        self.scorer.close()


EVALUATORS: Registry[type[Evaluator]] = Registry("evaluator")


def choose_evaluator(name: str, space: type[Parametrization]) -> type[Evaluator]:
    """The evaluator class named ``name`` (or the preferred one for ``auto``) for ``space``.

    Raises:
      ValueError: for an unknown name, or one that cannot run ``space``.
    """
    if name == AUTO:
        fitting = [EVALUATORS.get(n) for n in _able(space)]
        if not fitting:
            raise ValueError(f"no registered evaluator can run space {space.__name__}")
        return min(fitting, key=lambda cls: cls.preference)
    cls = EVALUATORS.get(name)
    if not cls.supports(space):
        raise ValueError(
            f"evaluator {name!r} cannot run space {space.__name__}; evaluators that can: "
            f'{", ".join(_able(space))} (or evaluator = "auto")'
        )
    return cls


def _able(space: type[Parametrization]) -> list[str]:
    """The registered evaluators that can run ``space``."""
    return [n for n in EVALUATORS.names() if EVALUATORS.get(n).supports(space)]


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


#: How a member's rewards on the prompts become the one number its strategy is told.
FITNESS = ("mean", "prompt_zscore")


def member_fitness(per_prompt: np.ndarray, fitness: str, failures: int = 0) -> Scores:
    """The population's scores from its rewards per prompt (members x prompts, NaN: failed).

    ``mean``: each member's mean finite reward. ``prompt_zscore`` (the GRPO-like
    baseline of eggroll-vllm): each prompt's rewards are centred on that prompt's
    mean over the members and divided by their spread there, and a member's
    fitness is the mean of its normalised rewards, so that every prompt on which
    the members disagree weighs the same, however small the disagreement, and a
    prompt that all members answer alike weighs nothing. (Centring alone would
    change nothing: the mean of centred rewards is the centred mean, which any
    shaping of the strategy centres anyway.)
    """
    if fitness not in FITNESS:
        raise ValueError(f"unknown fitness {fitness!r}; use one of: {', '.join(FITNESS)}")
    means = np.array([mean_finite(row) for row in per_prompt.tolist()], dtype=np.float64)
    if fitness == "mean":
        return Scores(means, failures, per_prompt)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a prompt no member scored
        centre = np.nanmean(per_prompt, axis=0)
        spread = np.nanstd(per_prompt, axis=0)
    normalised = (per_prompt - centre) / np.where(spread > 0, spread, np.inf)
    shaped = np.array([mean_finite(row) for row in normalised.tolist()], dtype=np.float64)
    return Scores(shaped, failures, per_prompt, means)


def score_members(
    scorer: RewardScorer,
    examples: Sequence[Example],
    completions: Sequence[Sequence[str]],
    fitness: str = "mean",
) -> Scores:
    """Each member's fitness from its completions' rewards on ``examples``, and failures.

    The whole population is scored in one call of ``scorer`` (one message to
    its process).
    """
    flat = [completion for member in completions for completion in member]
    values = scorer(list(examples) * len(completions), flat)
    per_prompt = np.asarray(values, dtype=np.float64).reshape(len(completions), len(examples))
    failures = int(np.isnan(per_prompt).sum())
    return member_fitness(per_prompt, fitness, failures)


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
        if candidate_vector(group[0]) is not None:
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
