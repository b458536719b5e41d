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
one forward batch in a single process (:meth:`TextGenerator.member_groups`),
so every batch is the same rows; 1, 2 or 8 workers give the same rewards.

A lost worker costs nothing: its unfinished groups are run again on the
others; if none is left the run stops with an error (its checkpoint, written
every iteration, resumes it).
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..iteration import Scores
from ..parametrizations.base import candidate_vector
from .base import member_fitness

if TYPE_CHECKING:
    from ..config import RunConfig
    from ..strategies.base import AnyCandidate
    from ..tasks.base import Example
    from .base import Evaluator

logger = logging.getLogger(__name__)


class WorkersLost(RuntimeError):
    """Every Ray worker of the run died; the run's last checkpoint resumes it."""


def fingerprint(candidates: Sequence[AnyCandidate]) -> str:
    """A short digest of a round's candidates: seeds, scales, offsets or vectors."""
    digest = hashlib.blake2b(digest_size=8)
    for candidate in candidates:
        vector = candidate_vector(candidate)
        if vector is not None:
            digest.update(vector.detach().cpu().numpy().tobytes())
        else:
            digest.update(repr((candidate.seed, candidate.scale)).encode())
        digest.update(repr(getattr(candidate, "offset", ())).encode())
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
    """One worker's copy of the run: model, task, space and strategy (a Ray actor's body)."""

    def __init__(self, settings: dict[str, Any], threads: int, run_dir: str | None) -> None:
        import torch

        from ..config import resolve
        from ..runner import Experiment

        torch.set_num_threads(threads)
        config = resolve(settings, {"workers": 1, "ray_address": None, "threads": threads})
        self.experiment = Experiment(config)
        self.run_dir = run_dir
        self._candidates: list[AnyCandidate] | None = None
        self._round: int | None = None  # the driver's number of the round asked

    def pid(self) -> int:
        return os.getpid()

    def load(self, state: dict[str, Any]) -> None:
        """Moves the replica to the driver's point: its checkpoint state (and snapshot if here)."""
        from ..rundir import RunDir

        state = dict(state)
        name = state.get("snapshot")
        if name is not None and self.run_dir and (Path(self.run_dir) / name).exists():
            self.experiment.rundir = RunDir(self.run_dir)
        else:  # another machine: replay the whole history instead
            state["snapshot"] = None
        self.experiment.load_state_dict(state)
        self.experiment.rundir = None
        self._candidates, self._round = None, None

    def tell(self, number: int, rewards: np.ndarray) -> None:
        """Tells the strategy round ``number``'s rewards, as the driver does: the same update."""
        if number == self._round:
            self.experiment.strategy.tell(self._candidates, rewards)
            self._candidates, self._round = None, None

    def round(
        self, number: int, groups: list[list[int]], examples: list[Example]
    ) -> tuple[str, list[np.ndarray]]:
        """Rewards per prompt of ``groups`` of round ``number``'s candidates.

        A new round is asked first; a round asked already (the groups of a
        lost worker) reuses its candidates.
        """
        experiment = self.experiment
        if number != self._round:
            self._candidates, self._round = experiment.strategy.ask(), number
        encoded = experiment.generator.encode([experiment.task.prompt(e) for e in examples])
        scored = []
        for group in groups:
            chosen = [self._candidates[i] for i in group]
            scores = experiment.evaluator.evaluate(chosen, examples, encoded)
            scored.append(scores.per_prompt)
        return fingerprint(self._candidates), scored


class RayEvaluator:
    """Scores each round's candidates on ``config.loop.workers`` Ray actors (see the module).

    Each worker runs ``inner``'s kind of evaluator on its replica, and
    ``inner`` says which members must share a worker
    (:meth:`Evaluator.member_groups`). ``driver_state()`` is the driver's
    checkpoint state (strategy and space), sent to a worker before its first
    round.
    """

    def __init__(
        self, inner: Evaluator, config: RunConfig, driver_state: Callable[[], dict[str, Any]]
    ) -> None:
        import ray

        self.inner = inner
        self.config = config
        self.driver_state = driver_state
        loop = config.loop
        self._started_ray = not ray.is_initialized()
        if self._started_ray:
            self._init_ray(loop.ray_address)
        self.threads = config.model.threads or max(1, (os.cpu_count() or 1) // loop.workers)
        settings = config.to_dict()
        settings["output"] = {**settings["output"], "out": None, "progress": False}
        settings["evaluation"] = {**settings["evaluation"], "eval_kl": False}
        actor = ray.remote(Replica).options(
            num_cpus=loop.worker_cpus, num_gpus=loop.worker_gpus, max_restarts=0
        )
        run_dir = config.output.out and str(Path(config.output.out).resolve())
        self.workers = [actor.remote(settings, self.threads, run_dir) for _ in range(loop.workers)]
        self._loaded = False  # whether the workers hold the driver's state
        self._round = 0
        self.bytes_sent = 0
        self.lost = 0  # workers that died during the run

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

    def evaluate(
        self,
        candidates: Sequence[AnyCandidate],
        examples: Sequence[Example],
        encoded: list[list[int]] | None = None,
    ) -> Scores:
        """As :meth:`Evaluator.evaluate`; the workers encode the prompts themselves."""
        import ray

        del encoded
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
        # the fitness of the whole population: a prompt's baseline spans every worker's members
        scores = member_fitness(per_prompt, self.inner.fitness, int(np.isnan(per_prompt).sum()))
        rewards = scores.rewards
        # what the driver's strategy is told next: the workers update while the driver does
        for worker in self.workers:
            self.bytes_sent += len(pickle.dumps((self._round, rewards)))
            worker.tell.remote(self._round, rewards.copy())
        return scores

    def _drop(self, lost: list[Any]) -> None:
        """Forgets dead workers."""
        if not lost:
            return
        self.lost += len(lost)
        logger.warning(
            "%d Ray worker(s) died; their members were scored again on the %d left",
            len(lost),
            len(self.workers) - len(lost),
        )
        self.workers = [worker for worker in self.workers if worker not in lost]

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
