"""Calling a task's reward: each call bounded in time, every failure named once by kind.

Why a child process: a reward is arbitrary code (a user's function, a
checker, a parser). One that loops or waits forever would hang a run of
hours, and a thread cannot be stopped. So the rewards of a population are
sent, as one message, to a forked child process that calls them one by one
and answers each at once; a call that takes longer than ``timeout`` seconds
gets the child killed (nothing is left behind) and is a failure, and a new
child takes the remaining calls. The child dies with its parent (Linux's
parent-death signal), ignores Ctrl-C (the parent handles it) and runs torch,
if a reward uses it, on one thread.

What follows from it: a reward's side effects (appending to a list, say)
happen in the child and are not seen by the caller. ``timeout=None`` calls
the reward in this process, without a limit; where the platform cannot fork,
that is what happens, with a warning.

Reward policy (the failures): a reward that raises, times out, returns
something that is not a real number (bool, int, float; a string ``"1.5"`` is
not one) or returns NaN/inf, is scored NaN and counted; the first failure of
each kind (``raised ValueError``, ``returned str``, ``timed out`` ...) is
logged once with its example.

A run that cannot learn stops (:class:`~zo_llm.errors.RewardsFailed`): when
``max_timeouts`` calls in a row time out (a reward that hangs on every input
would otherwise hold the run for ``timeout`` seconds per completion), and,
checked by the caller, when every reward of an evaluation fails
(:meth:`RewardScorer.all_failed`).
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import numbers
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import RewardsFailed

if TYPE_CHECKING:
    from ..tasks.base import Example, Task

logger = logging.getLogger(__name__)

#: One call's outcome: ``("value", number)`` or ``(failure kind, detail)``.
Outcome = tuple[str, Any]

_warned: set[str] = set()


class RewardSource:
    """A batched reward from elsewhere (a model, a server: :mod:`.external`), summed with the
    task's by weight: one outcome per (prompt, completion, example)."""

    name = "source"

    def score(
        self, prompts: Sequence[Any], completions: Sequence[str], examples: Sequence[Any]
    ) -> list[Outcome]:
        raise NotImplementedError

    def close(self) -> None:
        """Releases what the source holds (a model's memory)."""


def call_reward(task: Task, example: Example, completion: str) -> Outcome:
    """The outcome of one reward call, its failure kind named (no exception escapes)."""
    try:
        value = task.reward(example, completion)
    except Exception as error:  # a user's reward must not kill a long run
        return f"raised {type(error).__name__}", str(error)
    return value_outcome(value)


def value_outcome(value: Any, who: str = "") -> Outcome:
    """``("value", float)`` for a finite real number (bool, int, float), else the failure:
    ``returned str`` (``who`` names a source: ``reward server: returned str``)."""
    if not isinstance(value, numbers.Real):
        return f"{who}returned {type(value).__name__}", repr(value)[:80]
    value = float(value)
    if not math.isfinite(value):
        return f"{who}returned {value}", ""
    return "value", value


def reward_value(outcome: Outcome, example: Example) -> float:
    """The outcome's reward, or NaN for a failure (its kind warned the first time)."""
    kind, detail = outcome
    if kind == "value":
        return detail
    if kind not in _warned:
        _warned.add(kind)
        said = f": {detail}" if detail else ""
        logger.warning(
            "reward %s%s (scored as NaN; logged once per kind; example: %r)", kind, said, example
        )
    return float("nan")


class RewardScorer:
    """Scores completions with ``task.reward``, each call under ``timeout`` seconds (or none)."""

    def __init__(
        self,
        task: Task,
        timeout: float | None = None,
        max_timeouts: int = 0,
        sources: Sequence[tuple[RewardSource, float]] = (),
        task_weight: float = 1.0,
    ) -> None:
        if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
            raise ValueError(f"reward timeout={timeout} must be a positive number of seconds")
        self.task = task
        #: Batched rewards from elsewhere with their weights (:mod:`.external`), and the
        #: task's own weight in the sum.
        self.sources = list(sources)
        self.task_weight = task_weight
        #: With sources: each part of the last call's rewards by name (``task``,
        #: ``reward_model``, ``reward_url``), for held-out metrics of each.
        self.last_parts: dict[str, list[float]] = {}
        self.timeout = timeout
        self.max_timeouts = max_timeouts  # 0: never stop for timeouts
        self.timeouts_in_a_row = 0
        #: The last failure seen: its kind, detail and example (for a stopping run's message).
        self.last_failure: tuple[str, str, Example] | None = None
        self._child: _Child | None = None
        if timeout is not None and "fork" not in multiprocessing.get_all_start_methods():
            logger.warning(
                "this platform cannot fork: rewards run in this process without a time limit"
            )
            self.timeout = None

    def __call__(self, examples: Sequence[Example], completions: Sequence[str]) -> list[float]:
        """Rewards of ``completions`` of ``examples``; failures are NaN (see the module)."""
        pairs = list(zip(examples, completions, strict=True))
        if self.timeout is None:
            outcomes = [call_reward(self.task, e, c) for e, c in pairs]
            self._observe(outcomes, pairs)
        else:
            outcomes = self._bounded(pairs)
        rewards = [reward_value(o, e) for o, (e, _) in zip(outcomes, pairs, strict=True)]
        return self._with_sources(rewards, pairs) if self.sources else rewards

    def _with_sources(self, rewards: list[float], pairs: list[tuple[Example, str]]) -> list[float]:
        """The weighted sum of the task's ``rewards`` and each source's scores."""
        examples = [e for e, _ in pairs]
        prompts = [self.task.prompt(e) for e in examples]
        completions = [c for _, c in pairs]
        self.last_parts = {"task": rewards}
        total = [self.task_weight * r for r in rewards] if self.task_weight else [0.0] * len(pairs)
        for source, weight in self.sources:
            outcomes = source.score(prompts, completions, examples)
            self._observe(outcomes, pairs)
            values = [reward_value(o, e) for o, e in zip(outcomes, examples, strict=True)]
            self.last_parts[source.name] = values
            total = [t + weight * v for t, v in zip(total, values, strict=True)]
        return total

    def _bounded(self, pairs: list[tuple[Example, str]]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        while len(outcomes) < len(pairs):
            if self._child is None:
                self._child = _Child(self.task)
            answered = self._child.run(pairs[len(outcomes) :], self.timeout)
            self._observe(answered, pairs[len(outcomes) :])
            outcomes += answered
            if not self._child.alive:
                self._child = None  # killed or dead: the next call starts another
        return outcomes

    def _observe(self, outcomes: list[Outcome], pairs: Sequence[tuple[Example, str]]) -> None:
        """Keeps the last failure and the run of timeouts; stops at ``max_timeouts`` in a row."""
        for (kind, detail), (example, _) in zip(outcomes, pairs, strict=False):
            if kind == "value":
                self.timeouts_in_a_row = 0
                continue
            self.last_failure = (kind, detail, example)
            self.timeouts_in_a_row = self.timeouts_in_a_row + 1 if kind == "timed out" else 0
            if self.max_timeouts and self.timeouts_in_a_row >= self.max_timeouts:
                raise RewardsFailed(
                    f"{self.timeouts_in_a_row} reward calls in a row timed out (each after "
                    f"{self.timeout:g} s; the last on example {example!r}): the reward hangs. "
                    "Fix it, or raise --reward-timeout, or --max-reward-timeouts (0: never stop)"
                )

    def all_failed(self, failures: int, rewards: int, what: str) -> None:
        """Raises :class:`RewardsFailed` when all ``rewards`` of ``what`` failed (none to learn
        from), naming the kind and an example of the last failure."""
        if not rewards or failures < rewards:
            return
        seen = ""
        if self.last_failure is not None:
            kind, detail, example = self.last_failure
            seen = f"; the last {kind}{': ' + detail if detail else ''} on example {example!r}"
        raise RewardsFailed(
            f"every reward of {what} failed ({failures} of {rewards}){seen}. "
            "A run cannot learn without rewards: fix the task's reward"
        )

    def close(self) -> None:
        """Stops the child process, if one runs (a later call starts a new one)."""
        if self._child is not None:
            self._child.stop()
            self._child = None
        for source, _ in self.sources:
            source.close()

    def __del__(self) -> None:
        self.close()


class _Child:
    """One forked process calling the rewards it is sent, answering one call at a time."""

    def __init__(self, task: Task) -> None:
        context = multiprocessing.get_context("fork")
        self.connection, child_end = context.Pipe()
        self.process = context.Process(
            target=_serve, args=(child_end, task), daemon=True, name="zo-llm-reward"
        )
        self.process.start()
        child_end.close()
        self.alive = True

    def run(self, pairs: list[tuple[Example, str]], timeout: float) -> list[Outcome]:
        """Outcomes of ``pairs`` in order, up to the first one that times out or kills the child.

        That one is the last outcome returned (a failure), and the child is stopped.
        """
        self.connection.send(pairs)
        outcomes: list[Outcome] = []
        for _ in pairs:
            if not self.connection.poll(timeout):
                outcomes.append(("timed out", f"no answer within {timeout:g} s"))
                self.stop()
                break
            try:
                outcomes.append(self.connection.recv())
            except (EOFError, OSError):
                outcomes.append(("killed its process", f"exit code {self.process.exitcode}"))
                self.stop()
                break
        return outcomes

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.connection.close()
        self.alive = False


def _serve(connection: Any, task: Task) -> None:
    """The child's loop: a list of pairs in, one outcome out per pair, until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    if "torch" in sys.modules:  # after fork, OpenMP's threads are gone: stay on one
        sys.modules["torch"].set_num_threads(1)
    while True:
        try:
            pairs = connection.recv()
        except (EOFError, OSError):
            return
        for example, completion in pairs:
            connection.send(call_reward(task, example, completion))


def _die_with_parent() -> None:
    """Linux: the kernel kills this process when its parent dies (even by ``kill -9``)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass
