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

Everything that can be checked without a model is checked when the config is
built, before any run starts: registry names, component options, strategy x
space pairings and run folder names. The tables and plots are written by
:mod:`zo_llm.bench_report`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import multiprocessing
import re
import shutil
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import __version__
from .bench_report import plot, summarise, write_tables
from .config import make_config
from .parametrizations.base import PARAMETRIZATIONS
from .runner import CHECKPOINT_FILE, CONFIG_FILE, TrainConfig, load_run_config, task_reference
from .strategies.base import STRATEGIES, spaces_searched_by
from .tasks.base import TASKS

DONE_MARKER = "bench_done"
#: Characters a label may use: it becomes part of a folder name.
_LABEL = re.compile(r"^[\w.+=-]+$")
#: The run settings a bench sets that change a run's numbers: a kept run must match them.
#: (``threads`` and ``progress`` may differ, as on resume; ``out`` is the folder itself.)
COMPARED_KEYS = (
    "model",
    "strategy",
    "space",
    "task",
    "strategy_options",
    "space_options",
    "task_options",
    "iterations",
    "max_samples",
    "batch_size",
    "max_new_tokens",
    "eval_every",
    "eval_every_samples",
    "eval_size",
    "dtype",
    "device",
    "seed",
)


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
    def parse(cls, value: str | dict[str, Any], kind: str = "strategy") -> Entry:
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
    config: TrainConfig


@dataclass
class BenchConfig:
    """What to compare and on what budget; every field is a TOML key of ``zo-llm bench``."""

    strategies: list[Entry]
    out: str
    model: str = "zo-tiny"
    spaces: list[Entry] = field(default_factory=lambda: [Entry("full")])
    tasks: list[Entry] = field(default_factory=lambda: [Entry("countdown-easy")])
    seeds: list[int] = field(default_factory=lambda: [0])
    budget: int | None = None
    iterations: int = 10
    batch_size: int = 16
    max_new_tokens: int = 64
    eval_every: int = 2
    eval_every_samples: int | None = None
    eval_size: int | None = None
    target: float | None = None
    metric: str | None = None
    dtype: str = "float32"
    device: str = "auto"
    threads: int | None = 1

    def __post_init__(self) -> None:
        if not self.strategies:
            raise ValueError("a bench needs at least one strategy")
        if not self.seeds:
            raise ValueError("a bench needs at least one seed")
        if self.budget is not None:
            # the budget decides; iterations only bound it (one prompt batch per iteration at least)
            self.iterations = max(self.iterations, math.ceil(self.budget / self.batch_size))
        self.validate()

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> BenchConfig:
        raw = {k.replace("-", "_"): v for k, v in raw.items()}
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - names)
        if unknown:
            raise ValueError(
                f"unknown bench key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(names))}"
            )
        if not raw.get("out"):
            raise ValueError('no output folder; pass --out DIR or set out = "..." in the TOML')
        if "strategies" not in raw:
            raise ValueError(
                "no strategies; pass --strategies es,mezo or add [[strategies]] tables (or "
                'strategies = ["es", "mezo"]) to the TOML'
            )
        for key, kind in (("strategies", "strategy"), ("spaces", "space"), ("tasks", "task")):
            if key in raw:
                raw[key] = [Entry.parse(v, kind) for v in raw[key]]
        return cls(**raw)

    @classmethod
    def from_toml(cls, path: str | Path, **overrides: Any) -> BenchConfig:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"bench config {path} does not exist")
        with path.open("rb") as handle:
            raw = tomllib.load(handle)
        return cls.from_dict({**raw, **overrides})

    def plan(self) -> list[PlannedRun]:
        """Every strategy x space x task x seed, less the spaces a strategy is restricted from."""
        runs = []
        for strategy in self.strategies:
            for space in self._spaces_of(strategy):
                for task in self.tasks:
                    row = (strategy.key, space.key, task.key)
                    for seed in self.seeds:
                        name = "--".join(row) + f"--seed{seed}"
                        config = self._train_config(strategy, space, task, seed, name)
                        runs.append(PlannedRun(name, row, config))
        return runs

    def runs(self) -> list[tuple[str, TrainConfig]]:
        """``(folder name, TrainConfig)`` for every run of the bench."""
        return [(run.name, run.config) for run in self.plan()]

    def _spaces_of(self, strategy: Entry) -> list[Entry]:
        if strategy.spaces is None:
            return list(self.spaces)
        return [s for s in self.spaces if s.key in strategy.spaces or s.name in strategy.spaces]

    # --- checks made before any run starts -------------------------------

    def validate(self) -> None:
        """Names, options, pairings and folder names, checked without loading a model.

        Raises:
          ValueError: naming the entry at fault and what would fix it (an
            unknown name lists the known ones).
        """
        for strategy in self.strategies:
            _options(STRATEGIES.get(strategy.name), strategy.options, f"strategy {strategy.key!r}")
        for space in self.spaces:
            _options(PARAMETRIZATIONS.get(space.name), space.options, f"space {space.key!r}")
        for task in self.tasks:
            _resolve_task_options(task)
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
            self._check_pairings(strategy)
        self._check_unique_names()

    def _check_pairings(self, strategy: Entry) -> None:
        supported = STRATEGIES.get(strategy.name).supported_kinds
        for space in self._spaces_of(strategy):
            kinds = PARAMETRIZATIONS.get(space.name).kinds
            if supported & kinds:
                continue
            fitting = [s.key for s in self.spaces if PARAMETRIZATIONS.get(s.name).kinds & supported]
            registered = spaces_searched_by(supported)
            fix = (
                f'restrict it with spaces = ["{fitting[0]}"] in its [[strategies]] table'
                if fitting
                else f"add a space it can search ({', '.join(registered) or 'none registered'})"
            )
            raise ValueError(
                f"strategy {strategy.key!r} cannot search space {space.key!r}: it searches "
                f"{'/'.join(sorted(supported))} spaces and {space.name!r} is "
                f"{'/'.join(sorted(kinds))}; {fix}, or drop the pairing"
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

        Compared: the zo-llm version that made the run and the
        :data:`COMPARED_KEYS` of each folder's ``run_config.json`` against the
        config this bench would run, with the component options resolved
        through their config classes (the saved file holds every default).
        """
        for run in self.plan():
            folder = Path(run.config.out)
            kept = (folder / DONE_MARKER).exists() or (folder / CHECKPOINT_FILE).exists()
            if not kept or not (folder / CONFIG_FILE).exists():
                continue
            saved = load_run_config(folder)
            differing = []
            made_by = json.loads((folder / CONFIG_FILE).read_text()).get("zo_llm_version")
            if made_by != __version__:  # rewards or splits may have changed since
                differing.append(f"zo-llm version (run: {made_by!r}, now: {__version__!r})")
            for key, want in _comparable(run.config).items():
                have = saved.get(key)
                if isinstance(want, _Given):  # unresolvable options: compare those given
                    want = want.options
                    have = {option: (have or {}).get(option) for option in want}
                if isinstance(want, dict):
                    have = have or {}
                    differing += [
                        f"{key}.{option} (run: {have.get(option)!r}, config: {want.get(option)!r})"
                        for option in sorted(set(have) | set(want))
                        if have.get(option) != want.get(option)
                    ]
                elif have != want:
                    differing.append(f"{key} (run: {have!r}, config: {want!r})")
            if differing:
                raise ValueError(
                    f"run {folder} was made with other settings than this bench config: "
                    f"{'; '.join(differing)}. Pass another --out, or delete that run folder "
                    "to redo it"
                )

    def _train_config(self, strategy, space, task, seed: int, name: str) -> TrainConfig:
        return TrainConfig(
            model=self.model,
            strategy=strategy.name,
            space=space.name,
            task=task.name,
            strategy_options=dict(strategy.options),
            space_options=dict(space.options),
            task_options=dict(task.options),
            iterations=self.iterations,
            max_samples=self.budget,
            batch_size=self.batch_size,
            max_new_tokens=self.max_new_tokens,
            eval_every=self.eval_every,
            eval_every_samples=self.eval_every_samples,
            eval_size=self.eval_size,
            checkpoint_every=max(1, self.eval_every),
            dtype=self.dtype,
            device=self.device,
            seed=seed,
            threads=self.threads,
            out=str(Path(self.out) / "runs" / name),
            progress=False,
        )


@dataclass(frozen=True)
class _Given:
    """Options of a component that cannot be resolved without importing it: compared as given."""

    options: dict[str, Any]


def _json(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _options(cls: type, options: dict[str, Any], owner: str) -> dict[str, Any]:
    """A component's options with every default filled in, as a run saves them."""
    try:
        config = make_config(cls.config_class, options, owner)
    except (ValueError, TypeError) as error:  # a config's own check may not say whose it is
        message = str(error)
        raise ValueError(message if owner in message else f"{owner}: {message}") from None
    return _json(dataclasses.asdict(config))


def _resolve_task_options(task: Entry) -> dict[str, Any] | _Given:
    """A task entry's full options, as a run saves them (every default filled in)."""
    registered, options = task_reference(task.name, task.options)
    if registered is None:
        return _Given(_json(options))  # module:object: checked when the run imports it
    return _options(TASKS.get(registered), options, f"task {task.key!r}")


def _comparable(config: TrainConfig) -> dict[str, Any]:
    """The :data:`COMPARED_KEYS` of a run config as ``run_config.json`` would hold them."""
    fields = _json({key: getattr(config, key) for key in COMPARED_KEYS})
    for key, registry in (("strategy", STRATEGIES), ("space", PARAMETRIZATIONS)):
        cls = registry.get(getattr(config, key))
        fields[f"{key}_options"] = _options(cls, getattr(config, f"{key}_options"), key)
    fields["task_options"] = _resolve_task_options(Entry(config.task, config.task_options))
    return fields


def run_bench(config: BenchConfig) -> list[str]:
    """Runs what is not finished yet, writes the tables and plots; returns the runs executed.

    Raises:
      ValueError: before any run, if a kept run folder was made with other settings.
      RuntimeError: if a run fails; the runs finished before it are kept.
    """
    config.check_kept_runs()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_config.json").write_text(
        json.dumps(dataclasses.asdict(config), indent=2, default=str)
    )
    executed = []
    for name, train_config in config.runs():
        folder = Path(train_config.out)
        if (folder / DONE_MARKER).exists():
            continue
        _run_in_subprocess(train_config, resume=(folder / CHECKPOINT_FILE).exists())
        (folder / DONE_MARKER).write_text("")
        executed.append(name)
    rows = summarise(config)
    write_tables(rows, out)
    plot(config, out)
    return executed


def _run_in_subprocess(train_config: TrainConfig, resume: bool) -> None:
    """One run in a fresh process: its peak memory is its own, and a crash stays contained."""
    folder = Path(train_config.out)
    if not resume and folder.exists():
        shutil.rmtree(folder)  # started but never checkpointed: nothing to keep
    context = multiprocessing.get_context("spawn")
    errors = context.SimpleQueue()
    process = context.Process(
        target=_train_or_resume, args=(dataclasses.asdict(train_config), resume, errors)
    )
    process.start()
    process.join()
    if process.exitcode != 0:
        if not errors.empty():
            reason = errors.get()
        elif process.exitcode < 0:
            reason = f"killed by signal {-process.exitcode}"
        else:
            reason = f"exit code {process.exitcode}; see the message above"
        raise RuntimeError(
            f"bench run {folder.name} failed: {reason}. Fix it and run the bench again: "
            "finished runs are kept"
        )


def _train_or_resume(fields: dict[str, Any], resume: bool, errors: Any = None) -> None:
    from transformers.utils import logging as hf_logging

    from .runner import resume as resume_run
    from .runner import train

    hf_logging.disable_progress_bar()  # the bench reports per run; load/save bars are noise
    try:
        if resume:
            resume_run(fields["out"], iterations=fields["iterations"], progress=False)
        else:
            train(TrainConfig(**fields))
    except (ValueError, FileNotFoundError, OSError, KeyError) as error:
        # a user's error (a setting, a file): its message says it all, no traceback
        if errors is not None:
            errors.put(f"{type(error).__name__}: {str(error)[:4000]}")
        sys.exit(1)
    except Exception as error:
        if errors is not None:
            errors.put(f"{type(error).__name__}: {str(error)[:4000]} (traceback above)")
        raise
