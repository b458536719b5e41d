"""Scoring a population on Ray workers: replicas kept in sync by replay, not by weights.

Why replicas of the whole run, not of the model alone: ES is embarrassingly
parallel when every worker can compute the candidates and the update itself.
Each worker is a Ray actor holding its own model (loaded by name on the
worker), task, space *and strategy*, built from the run config with the
same seed, so its ``ask()`` proposes exactly the driver's candidates. The
driver sends, per round, the indices of the members a worker evaluates and
the prompts; the worker sends back their rewards. Once every reward is in,
each worker is sent all of them and tells its strategy, which applies the
same update to its replica while the driver applies its own. Bytes per round are O(population
+ prompts) whatever the model size (each worker checks that its candidates
match the driver's, by a fingerprint).

The same numbers: a member's reward depends only on the member and the
prompts. With a batched space the members are sent in the groups that share
one forward batch in a single process (:meth:`Generator.member_groups`),
so every batch is the same rows; 1, 2 or 8 workers give the same rewards.

A lost worker costs nothing: its unfinished groups are run again, and a new
worker, loaded with the driver's state as the first ones were, takes its
place (up to as many replacements as the run asked workers: one that keeps
dying, for want of memory say, is not started forever; then the run goes on
with fewer and says so). If none is left the run stops with an error (its
checkpoint, written every iteration, resumes it).
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import socket
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..candidates import VECTOR
from .base import EVALUATORS, Evaluator
from .scores import Scores

if TYPE_CHECKING:
    from ..candidates import AnyCandidate
    from ..tasks.base import Example

logger = logging.getLogger(__name__)


class WorkersLost(RuntimeError):
    """Every Ray worker of the run died; the run's last checkpoint resumes it."""


def fingerprint(candidates: Sequence[AnyCandidate]) -> str:
    """A short digest of a round's candidates: seeds, scales, offsets or vectors."""
    digest = hashlib.blake2b(digest_size=8)
    for candidate in candidates:
        if candidate.kind == VECTOR:
            digest.update(candidate.vector.detach().cpu().numpy().tobytes())
        else:
            digest.update(repr((candidate.seed, candidate.scale)).encode())
        digest.update(repr(candidate.offset).encode())
    return digest.hexdigest()


def check_address(address: str | None, timeout: float = 3.0) -> None:
    """Refuses a ``HOST:PORT`` that nothing listens on, in seconds (Ray would retry for minutes).

    ``auto``, ``local`` and ``ray://`` addresses are left to Ray.
    """
    if not address or address in ("auto", "local") or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--ray-address {address!r} is not HOST:PORT, auto or local")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as error:
        raise ValueError(
            f"cannot reach the Ray cluster at --ray-address {address} ({error}); start one "
            "there with `ray start --head`, or leave --ray-address out for a local one"
        ) from None


class Replica:
    """One worker's copy of the run: model, task, space and strategy (a Ray actor's body).

    Built by the run's own builder (``build``: :func:`zo_llm.assembly.build_run`,
    passed by reference), for a replica: never spread over workers itself.
    """

    def __init__(self, build: Callable[..., Any], config: Any, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        self.run = build(config, purpose="replica")
        self._candidates: list[AnyCandidate] | None = None
        self._round: int | None = None  # the driver's number of the round asked

    def pid(self) -> int:
        return os.getpid()

    def load(self, state: dict[str, Any]) -> None:
        """Moves the replica to the driver's point (the search's state, replayed here)."""
        self.run.load_state_dict(state)
        self._candidates, self._round = None, None

    def tell(self, number: int, rewards: np.ndarray) -> None:
        """Tells the strategy round ``number``'s rewards, as the driver does: the same update."""
        if number == self._round:
            self.run.strategy.tell(self._candidates, rewards)
            self._candidates, self._round = None, None

    def round(
        self, number: int, groups: list[list[int]], examples: list[Example]
    ) -> tuple[str, list[np.ndarray]]:
        """Rewards per prompt of ``groups`` of round ``number``'s candidates.

        A new round is asked first; a round asked already (the groups of a
        lost worker) reuses its candidates.
        """
        run = self.run
        if number != self._round:
            self._candidates, self._round = run.strategy.ask(), number
        scored = []
        for group in groups:
            chosen = [self._candidates[i] for i in group]
            scored.append(run.evaluator.evaluate(chosen, examples).per_prompt)
        return fingerprint(self._candidates), scored


@EVALUATORS.register("ray")
class RayEvaluator(Evaluator):
    """Scores each round's candidates on Ray workers (--workers N or --ray-address).

    A wrapper, wanted when the run asks for workers (``--workers N`` or
    ``--ray-address``). Each worker runs ``inner``'s kind of evaluator on its
    replica, and ``inner`` says which members must share a worker
    (:meth:`Evaluator.member_groups`). ``driver_state()`` is the driver's
    search state (strategy and space), sent to a worker before its first
    round.
    """

    wrapper = True

    @classmethod
    def wanted(cls, config: Any) -> bool:
        return config.loop.workers > 1 or config.loop.ray_address is not None

    @classmethod
    def check_config(cls, config: Any) -> None:
        """Workers rebuild the run by name: objects passed from Python cannot reach them; and
        an unreachable ``--ray-address`` is refused in seconds."""
        objects = [
            f"{kind}={name[len('python:') :]}"
            for kind, name in (
                ("model", config.model.name or ""),
                ("task", config.task.name),
                ("space", config.space.name),
            )
            if name.startswith("python:")
        ]
        if objects:
            raise ValueError(
                f"workers={config.loop.workers} rebuild the run on each worker by name, but "
                f"{', '.join(objects)} was passed as an object; give its name (a model "
                "folder, a registered task or module:object) or use workers=1"
            )
        check_address(config.loop.ray_address)

    def __init__(
        self,
        inner: Evaluator,
        config: Any,
        driver_state: Callable[[], dict[str, Any]],
        replica: Callable[..., Any],
    ) -> None:
        import ray

        super().__init__(inner.space, inner.generator, inner.task, inner.scorer)
        self.inner = inner
        self.driver_state = driver_state
        loop = config.loop
        self.workers_asked = loop.workers
        self._started_ray = not ray.is_initialized()
        if self._started_ray:
            self._init_ray(loop.ray_address)
        threads = config.model.threads or max(1, (os.cpu_count() or 1) // loop.workers)
        actor = ray.remote(Replica).options(
            num_cpus=loop.worker_cpus, num_gpus=loop.worker_gpus, max_restarts=0
        )
        self._spawn = lambda: actor.remote(replica, config, threads)
        self.workers = [self._spawn() for _ in range(loop.workers)]
        self.replaced = 0  # workers started in place of dead ones
        self._loaded = False  # whether the workers hold the driver's state
        self._round = 0
        self.bytes_sent = 0
        self._counted = 0  # bytes_sent when take_counters() was last called
        self.lost = 0  # workers that died during the run

    @classmethod
    def supports(cls, space: Any) -> bool:
        return True

    def describe(self) -> str:
        return f"{self.inner.describe()} on {self.workers_asked} Ray workers"

    def take_counters(self) -> dict[str, float]:
        """``worker_bytes``: the bytes sent to the workers since the last call."""
        sent, self._counted = self.bytes_sent - self._counted, self.bytes_sent
        return {"worker_bytes": sent}

    @staticmethod
    def _init_ray(address: str | None) -> None:
        import ray

        try:
            ray.init(
                address=address,
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
            )
        except (ConnectionError, ValueError, RuntimeError) as error:
            raise ValueError(
                f"cannot reach the Ray cluster at --ray-address {address!r} ({error}); start "
                "one with `ray start --head` or leave --ray-address out for a local one"
            ) from None

    def evaluate(self, candidates: Sequence[AnyCandidate], examples: Sequence[Example]) -> Scores:
        """As :meth:`Evaluator.evaluate`; the workers prepare the prompts themselves."""
        import ray

        expected = fingerprint(candidates)
        groups = [list(g) for g in self.inner.member_groups(len(candidates), len(examples))]
        per_prompt = np.full((len(candidates), len(examples)), np.nan)
        self._round += 1
        pending = list(range(len(groups)))
        examples = list(examples)
        while pending:
            if not self.workers:
                raise WorkersLost(
                    "every Ray worker of the run died; resume the run from its last "
                    "checkpoint (zo-llm train --resume RUN)"
                )
            if not self._loaded:  # the first round: the driver's point (a resumed run's)
                state = self.driver_state()
                ray.get([worker.load.remote(state) for worker in self.workers])
                self._loaded = True
            shares = {w: pending[i :: len(self.workers)] for i, w in enumerate(self.workers)}
            calls = {}
            for worker in self.workers:
                message = (self._round, [groups[g] for g in shares[worker]], examples)
                self.bytes_sent += len(pickle.dumps(message))
                calls[worker] = worker.round.remote(*message)
            pending, lost = [], []
            for worker, call in calls.items():
                try:
                    seen, scored = ray.get(call)
                except ray.exceptions.RayActorError:
                    lost.append(worker)
                    pending += shares[worker]
                    continue
                if seen != expected:
                    raise RuntimeError(
                        "a Ray worker proposed other candidates than the driver "
                        "(its replica is out of sync); this is a bug in zo-llm"
                    )
                for g, values in zip(shares[worker], scored, strict=True):
                    per_prompt[groups[g]] = values
            self._drop(lost)
        # what the driver's strategy is told next (the whole population's rewards, so a
        # prompt's baseline spans every worker's members): the workers update while it does
        for worker in self.workers:
            self.bytes_sent += len(pickle.dumps((self._round, per_prompt)))
            worker.tell.remote(self._round, per_prompt.copy())
        return Scores(per_prompt, int(np.isnan(per_prompt).sum()))

    def _drop(self, lost: list[Any]) -> None:
        """Forgets dead workers and starts new ones in their place, within the budget."""
        if not lost:
            return
        import ray

        self.lost += len(lost)
        self.workers = [worker for worker in self.workers if worker not in lost]
        fresh = [self._spawn() for _ in range(min(len(lost), self.workers_asked - self.replaced))]
        if fresh:  # loaded as the first workers were: they propose the driver's candidates
            state = self.driver_state()
            ray.get([worker.load.remote(state) for worker in fresh])
            self.replaced += len(fresh)
            self.workers += fresh
        logger.warning(
            "%d Ray worker(s) died; %s; their members are scored again on the %d workers now",
            len(lost),
            f"{len(fresh)} started in their place"
            if fresh
            else f"none replaced (already {self.replaced} replacements, the run's budget)",
            len(self.workers),
        )

    def pids(self) -> list[int]:
        import ray

        return ray.get([worker.pid.remote() for worker in self.workers])

    def close(self) -> None:
        """Stops the workers, and Ray itself where this evaluator started it."""
        import ray

        self.inner.close()
        for worker in self.workers:
            ray.kill(worker)
        self.workers = []
        if self._started_ray and ray.is_initialized():
            ray.shutdown()
