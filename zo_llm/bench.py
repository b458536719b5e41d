"""Strategies compared fairly: the same model, task, seeds and budget; one table, two plots.

``zo-llm bench`` runs every (strategy, space, task, seed) as an ordinary run
folder through the normal runner, in its own process (so its peak memory is
its own), then summarises the runs' ``metrics.jsonl`` files:

- ``results.csv`` / ``results.md``: per configuration, the held-out metric
  before and after (mean ± std over seeds), the sample evaluations used and
  those needed to reach ``target``, training seconds, wall seconds (training
  plus held-out evaluations) and peak memory;
- ``heldout_vs_samples.png`` / ``heldout_vs_time.png``: the held-out metric
  against sample evaluations and against wall time, one line per
  configuration with a band of ± one std over seeds.

The budget is counted in sample evaluations (members x prompts), as the papers
compare methods; a method that spends two rounds per iteration (ESSAM, MeZO)
gets fewer iterations for the same budget. A bench that is interrupted
resumes where it stopped: finished runs are not redone, interrupted ones
continue from their checkpoint; a kept run whose settings differ from the
current config is refused, never silently reused.

Each run's config is the bench's base run config (every run setting: model,
batch size, evaluation, ...) with the entry's strategy, space, task and seed
put in by ``dataclasses.replace``, so everything that can be checked without a
model is checked when the bench config is built, before any run starts:
registry names, component options, strategy x space pairings and run folder
names. The tables and plots are written by :mod:`zo_llm.bench_report`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import config as run_config
from .baselines.settings import GRPO, GRPO_SPACES, GRPOSettings, check_trl, saved_config
from .bench_process import run_in_subprocess
from .bench_report import plot, summarise, write_tables
from .config import RunConfig
from .rundir import RunDir
from .sections import SpaceSection, StrategySection, TaskSection
from .version import __version__

#: Characters a label may use: it becomes part of a folder name.
_LABEL = re.compile(r"^[\w.+=-]+$")
#: Run settings that a bench sets per run, not once for all: its entries and seeds decide them.
PER_RUN = ("strategy", "space", "task", "seed", "out", "max_samples")
#: The bench's own defaults for its runs' settings (the rest are ``zo-llm train``'s).
RUN_DEFAULTS = {"threads": 1, "progress": False}


@dataclass(frozen=True)
class Entry:
    """A registry name with its options (``{"name": "es", "population": 8}`` in a config).

    ``label`` names the entry in run folders, table rows and plot legends
    (default: ``name``), so two entries of one strategy with different options
    can sit side by side. ``spaces`` (strategies only) restricts the spaces a
    strategy runs on, by space label or name (default: all the bench's spaces).
    """

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    label: str | None = None
    spaces: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.label is not None and not _LABEL.match(self.label):
            raise ValueError(
                f"label {self.label!r} of {self.name!r} becomes part of a folder name: use "
                "letters, digits and . _ + = - only"
            )

    @property
    def key(self) -> str:
        """What the entry is called in folder names, tables and legends."""
        return self.label or self.name

    @classmethod
    def parse(cls, value: str | dict[str, Any] | Entry, kind: str = "strategy") -> Entry:
        if isinstance(value, Entry):
            return value
        if isinstance(value, str):
            return cls(value)
        options = {k.replace("-", "_"): v for k, v in value.items()}
        if "name" not in options:
            raise ValueError(f"bench entry {value!r} has no 'name'")
        name, label = options.pop("name"), options.pop("label", None)
        spaces = options.pop("spaces", None)
        if spaces is not None:
            if kind != "strategy":
                raise ValueError(
                    f"{kind} entry {name!r}: only [[strategies]] entries take 'spaces'"
                )
            spaces = (spaces,) if isinstance(spaces, str) else tuple(spaces)
        return cls(name, options, label=label, spaces=spaces)


@dataclass(frozen=True)
class PlannedRun:
    """One run of a bench: its folder name, its table row key and its config."""

    name: str
    row: tuple[str, str, str]  # (strategy, space, task) keys: one table row per seed group
    config: RunConfig
    grpo: GRPOSettings | None = None  # the GRPO baseline's settings, for a grpo entry

    def saved_config(self) -> dict[str, Any]:
        """The nested config its ``run_config.json`` holds (a grpo run's strategy: grpo)."""
        if self.grpo is not None:
            return saved_config(self.config, self.grpo)
        return self.config.to_dict()


#: Keys of a bench TOML (and flags) that are the bench's own; every other key is a run setting.
BENCH_KEYS = ("strategies", "spaces", "tasks", "seeds", "budget", "target", "metric", "out")


@dataclass(frozen=True)
class BenchConfig:
    """What to compare and on what budget.

    ``base`` holds every run setting the runs share (a :class:`RunConfig`:
    model, batch size, evaluation, ...); :meth:`from_dict` builds it from the
    same flat keys as ``zo-llm train``. ``task_options`` are options every task
    entry gets unless it sets them itself (the ``eval_size``/``data`` keys).
    """

    strategies: tuple[Entry, ...] = field(metadata={"help": "comma-separated strategy names"})
    out: str = field(metadata={"help": "results folder (created)"})
    spaces: tuple[Entry, ...] = field(
        default=(Entry("full"),), metadata={"help": "comma-separated parametrization names"}
    )
    tasks: tuple[Entry, ...] = field(
        default=(Entry("countdown-easy"),), metadata={"help": "comma-separated task names"}
    )
    seeds: tuple[int, ...] = field(
        default=(0,), metadata={"help": "comma-separated integer seeds, e.g. 0,1,2"}
    )
    budget: int | None = field(
        default=None, metadata={"help": "sample evaluations (members x prompts) per run"}
    )
    target: float | None = field(
        default=None, metadata={"help": "held-out metric value for the samples-to-target column"}
    )
    metric: str | None = field(
        default=None,
        metadata={"help": "held-out metric to compare (None: accuracy if logged, else reward)"},
    )
    base: RunConfig = field(default_factory=lambda: run_config.resolve(RUN_DEFAULTS))
    task_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key in ("strategies", "spaces", "tasks", "seeds"):
            object.__setattr__(self, key, tuple(getattr(self, key)))
        if not self.strategies:
            raise ValueError("a bench needs at least one strategy")
        if not self.seeds:
            raise ValueError("a bench needs at least one seed")
        if self.budget is not None and self.budget < 1:
            raise ValueError(f"budget={self.budget} must be >= 1 sample evaluation")
        self.validate()

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], where: str = "bench config") -> BenchConfig:
        """A bench from the keys of its TOML: its own (:data:`BENCH_KEYS`) and run settings."""
        raw = {k.replace("-", "_"): v for k, v in raw.items()}
        if not raw.get("out"):
            raise ValueError('no output folder; pass --out DIR or set out = "..." in the TOML')
        if "strategies" not in raw:
            raise ValueError(
                "no strategies; pass --strategies es,mezo or add [[strategies]] tables (or "
                'strategies = ["es", "mezo"]) to the TOML'
            )
        known = {*BENCH_KEYS, *run_config.settings(), *run_config.SHORTCUTS, *run_config.SECTIONS}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(
                f"{where}: unknown bench key(s) {', '.join(unknown)}; valid keys: the bench's "
                f"{', '.join(BENCH_KEYS)}, and zo-llm train's settings (zo-llm bench --help)"
            )
        own = {k: raw.pop(k) for k in BENCH_KEYS if k in raw}
        for key, kind in (("strategies", "strategy"), ("spaces", "space"), ("tasks", "task")):
            if key in own:
                own[key] = tuple(Entry.parse(v, kind) for v in own[key])
        refused = sorted(set(raw) & set(PER_RUN))
        if refused:
            raise ValueError(
                f"{where}: {', '.join(refused)} is set per run by the bench; use "
                + ", ".join(sorted(BENCH_KEYS))
            )
        task_options = {k: raw.pop(k) for k in ("eval_size", "data") if k in raw}
        first = own.get("spaces", (Entry("full"),))[0]  # the base's, so that its settings fit
        try:
            space = {"space": first.name, "space_options": first.options}
            base = run_config.resolve(RUN_DEFAULTS, space, raw, where=where)
        except ValueError as error:
            valid = ", ".join(sorted(BENCH_KEYS))
            raise ValueError(f"{error} (or a bench key: {valid})") from None
        return cls(**own, base=base, task_options=task_options)

    @classmethod
    def from_toml(cls, path: str | Path, **overrides: Any) -> BenchConfig:
        from .cli.flags import read_toml

        raw = read_toml(Path(path), "bench config")
        return cls.from_dict({**raw, **overrides}, where=str(path))

    @property
    def title(self) -> str:
        return str(self.base.model.name)

    @property
    def iterations(self) -> int:
        """Iterations per run: the budget decides, ``loop.iterations`` only bounds it."""
        iterations = self.base.loop.iterations
        if self.budget is not None:  # one prompt batch per iteration at least
            iterations = max(iterations, math.ceil(self.budget / self.base.loop.batch_size))
        return iterations

    def plan(self) -> list[PlannedRun]:
        """Every strategy x space x task x seed, less the spaces a strategy is restricted from."""
        runs = []
        for strategy in self.strategies:
            for space in self._spaces_of(strategy):
                for task in self.tasks:
                    row = (strategy.key, space.key, task.key)
                    for seed in self.seeds:
                        name = "--".join(row) + f"--seed{seed}"
                        config = self._run_config(strategy, space, task, seed, name)
                        runs.append(PlannedRun(name, row, config, _grpo_settings(strategy)))
        return runs

    def runs(self) -> list[tuple[str, RunConfig]]:
        """``(folder name, RunConfig)`` for every run of the bench."""
        return [(run.name, run.config) for run in self.plan()]

    def _spaces_of(self, strategy: Entry) -> list[Entry]:
        if strategy.spaces is None:
            return list(self.spaces)
        return [s for s in self.spaces if s.key in strategy.spaces or s.name in strategy.spaces]

    def _run_config(self, strategy, space, task, seed: int, name: str) -> RunConfig:
        """The base config with this run's components, seed, budget and folder put in."""
        base = self.base
        evaluation = base.evaluation
        checkpoint_every = base.output.checkpoint_every
        if strategy.name == GRPO:  # steps are not iterations: evaluated by completions spent
            evaluation = dataclasses.replace(evaluation, eval_every=0)
            base = dataclasses.replace(
                base, loop=dataclasses.replace(base.loop, evaluator="auto"), evaluation=evaluation
            )
        return dataclasses.replace(
            base,
            strategy=base.strategy
            if strategy.name == GRPO
            else _section(StrategySection, strategy, f"strategy {strategy.key!r}"),
            space=_section(SpaceSection, space, f"space {space.key!r}"),
            task=_section(
                TaskSection,
                Entry(task.name, {**self.task_options, **task.options}),
                f"task {task.key!r}",
            ),
            loop=dataclasses.replace(
                base.loop, seed=seed, iterations=self.iterations, max_samples=self.budget
            ),
            output=dataclasses.replace(
                base.output,
                out=str(Path(self.out) / "runs" / name),
                checkpoint_every=min(checkpoint_every, max(1, evaluation.eval_every)),
            ),
        )

    # --- checks made before any run starts -------------------------------

    def validate(self) -> None:
        """Names, options, pairings and folder names, checked without loading a model.

        Raises:
          ValueError: naming the entry at fault and what would fix it (an
            unknown name lists the known ones).
        """
        from .strategies.base import IncompatibleSpaceError

        space_keys = {s.key for s in self.spaces} | {s.name for s in self.spaces}
        for strategy in self.strategies:
            unknown = sorted(set(strategy.spaces or ()) - space_keys)
            if unknown:
                raise ValueError(
                    f"strategy {strategy.key!r} is restricted to spaces {', '.join(unknown)} that "
                    f"the bench does not list; its spaces: {', '.join(s.key for s in self.spaces)}"
                )
            if not self._spaces_of(strategy):
                raise ValueError(f"strategy {strategy.key!r} is restricted to no space")
        self._check_unique_names()
        self._check_grpo()
        for strategy in self.strategies:
            for space in self._spaces_of(strategy):
                try:
                    self._run_config(strategy, space, self.tasks[0], self.seeds[0], "check")
                except IncompatibleSpaceError as error:
                    raise ValueError(
                        f"strategy {strategy.key!r} cannot search space {space.key!r}: {error}"
                        f"{self._pairing_fix(strategy, space)}"
                    ) from None
        for task in self.tasks[1:]:
            self._run_config(
                self.strategies[0], self._spaces_of(self.strategies[0])[0], task, 0, ""
            )

    def _check_grpo(self) -> None:
        """A grpo entry: TRL installed, its options, a budget to match, full/lora spaces only."""
        for strategy in self.strategies:
            if strategy.name != GRPO:
                continue
            check_trl()
            _grpo_settings(strategy)
            if self.budget is None:
                raise ValueError(
                    f"strategy {strategy.key!r} is compared at the same number of training "
                    "completions as the other runs: set budget = N (--budget N)"
                )
            for space in self._spaces_of(strategy):
                if space.name not in GRPO_SPACES:
                    fitting = [s.key for s in self.spaces if s.name in GRPO_SPACES]
                    fix = f'spaces = ["{fitting[0]}"]' if fitting else 'a "lora" or "full" space'
                    raise ValueError(
                        f"strategy {strategy.key!r} trains all weights (space full) or a LoRA "
                        f"adapter (space lora), not space {space.key!r}: give its "
                        f"[[strategies]] table {fix}"
                    )

    def _pairing_fix(self, strategy: Entry, space: Entry) -> str:
        """For a refused pairing, how to restrict the strategy in the bench TOML."""
        from .components import component_class

        cls = component_class("strategy", strategy.name)
        fitting = [
            s.key
            for s in self.spaces
            if cls is not None
            and (space_cls := component_class("space", s.name)) is not None
            and cls.supported_kinds & space_cls.kinds
        ]
        if not fitting or space.key in fitting:
            return ""
        return (
            f'. In the bench: restrict it with spaces = ["{fitting[0]}"] in its '
            "[[strategies]] table, or drop the pairing"
        )

    def _check_unique_names(self) -> None:
        entries: dict[str, list[tuple[Entry, Entry, Entry]]] = {}
        for strategy in self.strategies:
            for space in self._spaces_of(strategy):
                for task in self.tasks:
                    name = "--".join((strategy.key, space.key, task.key))
                    entries.setdefault(name, []).append((strategy, space, task))
        for name, clashing in entries.items():
            if len(clashing) < 2:
                continue
            described, example = [], clashing[-1][0]
            for position, kind in enumerate(("strategies", "spaces", "tasks")):
                parts = [c[position] for c in clashing]
                if any(p != parts[0] for p in parts):
                    described.append(
                        f"{kind} " + " and ".join(f"{p.name} {p.options or '{}'}" for p in parts)
                    )
                    example = example if len(described) > 1 else parts[-1]
            raise ValueError(
                f"bench entries give the same run folder name {name}--seedN "
                f"({'; '.join(described) or 'the same entry twice'}); give each its own label, "
                f'e.g. label = "{example.key}-2" in the entry of {example.name!r} '
                f"with {example.options or 'no options'}"
            )

    def check_kept_runs(self) -> None:
        """Refuses kept run folders (finished or checkpointed) made with other settings.

        Compared: the zo-llm version that made the run and every setting of its
        ``run_config.json`` against the config this bench would run, less the
        machine settings (:data:`MACHINE`) that change no number.
        """
        for run in self.plan():
            folder = RunDir(run.config.output.out)
            kept = folder.bench_done_file.exists() or folder.has_checkpoint()
            if not kept or not folder.holds_run():
                continue
            made_by = folder.made_by()
            if made_by != __version__:  # rewards or splits may have changed since
                differing = [f"zo-llm version (run: {made_by!r}, now: {__version__!r})"]
            else:
                differing = run_config.differences(folder.read_config(), run.saved_config())
            if differing:
                raise ValueError(
                    f"run {folder.path} was made with other settings than this bench config: "
                    f"{'; '.join(differing)}. Pass another --out, or delete that run folder "
                    "to redo it"
                )


def _grpo_settings(strategy: Entry) -> GRPOSettings | None:
    if strategy.name != GRPO:
        return None
    return GRPOSettings.from_options(strategy.options, f"strategy {strategy.key!r}")


def _section(cls: type, entry: Entry, owner: str) -> Any:
    try:
        return cls(name=entry.name, options=dict(entry.options))
    except ValueError as error:
        message = str(error)
        raise ValueError(message if entry.name in message else f"{owner}: {message}") from None


def run_bench(config: BenchConfig) -> list[str]:
    """Runs what is not finished yet, writes the tables and plots; returns the runs executed.

    Raises:
      ValueError: before any run, if a kept run folder was made with other settings.
      RuntimeError: if a run fails; the runs finished before it are kept.
    """
    config.check_kept_runs()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_config.json").write_text(json.dumps(_bench_json(config), indent=2, default=str))
    executed = []
    for run in config.plan():
        folder = RunDir(run.config.output.out)
        if folder.bench_done_file.exists():
            continue
        run_in_subprocess(run.config, resume=folder.has_checkpoint(), grpo=run.grpo)
        folder.bench_done_file.write_text("")
        executed.append(run.name)
    rows = summarise(config)
    write_tables(rows, out)
    plot(config, out)
    return executed


def _bench_json(config: BenchConfig) -> dict[str, Any]:
    """The bench config as JSON: its own keys, and the base run config's nested form."""
    own = {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name != "base"}
    return {
        **json.loads(json.dumps(own, default=lambda o: dataclasses.asdict(o))),
        "base": config.base.to_dict(),
    }
