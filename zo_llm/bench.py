"""Strategies compared fairly: the same model, task, seeds and budget; one table, two plots.

``zo-llm bench`` runs every (strategy, space, task, seed) as an ordinary run
folder through the normal runner, in its own process (so its peak memory is
its own), then summarises the runs' ``metrics.jsonl`` files:

- ``results.csv`` / ``results.md``: per configuration, the held-out metric
  before and after (mean ± std over seeds), the sample evaluations used and
  those needed to reach ``target``, training seconds and peak memory;
- ``heldout_vs_samples.png`` / ``heldout_vs_time.png``: the held-out metric
  against sample evaluations and against training time, one line per
  configuration with a band of ± one std over seeds.

The budget is counted in sample evaluations (members x prompts), as the papers
compare methods; a method that spends two rounds per iteration (ESSAM, MeZO)
gets fewer iterations for the same budget. A bench that is interrupted
resumes where it stopped: finished runs are not redone, interrupted ones
continue from their checkpoint.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import multiprocessing
import shutil
import statistics
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .logging import read_metrics
from .runner import CHECKPOINT_FILE, TrainConfig

DONE_MARKER = "bench_done"


@dataclass(frozen=True)
class Entry:
    """A registry name with its options (``{"name": "es", "population": 8}`` in a config)."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, value: str | dict[str, Any]) -> Entry:
        if isinstance(value, str):
            return cls(value)
        options = {k.replace("-", "_"): v for k, v in value.items()}
        if "name" not in options:
            raise ValueError(f"bench entry {value!r} has no 'name'")
        return cls(options.pop("name"), options)


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

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> BenchConfig:
        raw = {k.replace("-", "_"): v for k, v in raw.items()}
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - names)
        if unknown:
            raise ValueError(
                f"unknown bench key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(names))}"
            )
        for key in ("strategies", "spaces", "tasks"):
            if key in raw:
                raw[key] = [Entry.parse(v) for v in raw[key]]
        return cls(**raw)

    @classmethod
    def from_toml(cls, path: str | Path, **overrides: Any) -> BenchConfig:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"bench config {path} does not exist")
        with path.open("rb") as handle:
            raw = tomllib.load(handle)
        return cls.from_dict({**raw, **overrides})

    def runs(self) -> list[tuple[str, TrainConfig]]:
        """``(folder name, TrainConfig)`` for every strategy x space x task x seed."""
        runs = []
        for strategy in self.strategies:
            for space in self.spaces:
                for task in self.tasks:
                    for seed in self.seeds:
                        name = f"{strategy.name}--{space.name}--{task.name}--seed{seed}"
                        runs.append((name, self._train_config(strategy, space, task, seed, name)))
        return runs

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


def run_bench(config: BenchConfig) -> list[str]:
    """Runs what is not finished yet, writes the tables and plots; returns the runs executed."""
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
    process = context.Process(
        target=_train_or_resume, args=(dataclasses.asdict(train_config), resume)
    )
    process.start()
    process.join()
    if process.exitcode != 0:
        raise RuntimeError(
            f"bench run {folder.name} failed (exit code {process.exitcode}); see the message "
            f"above. Fix it and run the bench again: finished runs are kept"
        )


def _train_or_resume(fields: dict[str, Any], resume: bool) -> None:
    from .runner import resume as resume_run
    from .runner import train

    if resume:
        resume_run(fields["out"], iterations=fields["iterations"], progress=False)
    else:
        train(TrainConfig(**fields))


def run_records(config: BenchConfig) -> dict[str, list[dict[str, Any]]]:
    """The metrics records of every run folder of the bench, by folder name."""
    return {name: read_metrics(Path(c.out)) for name, c in config.runs()}


def _metric(config: BenchConfig, record: dict[str, Any]) -> str:
    if config.metric:
        if config.metric not in record:
            raise ValueError(
                f"metric {config.metric!r} is not logged; the task logs: "
                f"{', '.join(k for k in record if k not in ('type', 'split'))}"
            )
        return config.metric
    return "accuracy" if "accuracy" in record else "reward"


def run_summary(config: BenchConfig, records: list[dict[str, Any]]) -> dict[str, Any]:
    """One run's numbers, read from its ``metrics.jsonl`` records."""
    evals = [r for r in records if r["type"] == "eval"]
    train = [r for r in records if r["type"] == "train"]
    metric = _metric(config, evals[0])
    reached = [
        r["samples"] for r in evals if config.target is not None and r[metric] >= config.target
    ]
    return {
        "metric": metric,
        "before": evals[0][metric],
        "after": evals[-1][metric],
        "samples": train[-1]["samples"] if train else 0,
        "samples_to_target": reached[0] if reached else None,
        "train_seconds": train[-1]["time"] if train else 0.0,
        "peak_memory_mb": max((r["peak_memory_mb"] for r in train), default=0.0),
    }


def summarise(config: BenchConfig) -> list[dict[str, Any]]:
    """Per (strategy, space, task): mean and std over seeds of each run's numbers."""
    records = run_records(config)
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for name, train_config in config.runs():
        key = (train_config.strategy, train_config.space, train_config.task)
        groups.setdefault(key, []).append(run_summary(config, records[name]))
    rows = []
    for (strategy, space, task), runs in groups.items():
        reached = [r["samples_to_target"] for r in runs if r["samples_to_target"] is not None]
        rows.append(
            {
                "strategy": strategy,
                "space": space,
                "task": task,
                "metric": runs[0]["metric"],
                "seeds": len(runs),
                **_mean_std("before", [r["before"] for r in runs]),
                **_mean_std("after", [r["after"] for r in runs]),
                "samples": statistics.mean(r["samples"] for r in runs),
                "samples_to_target": statistics.mean(reached) if reached else None,
                "reached": f"{len(reached)}/{len(runs)}" if config.target is not None else "",
                "train_seconds": statistics.mean(r["train_seconds"] for r in runs),
                "peak_memory_mb": max(r["peak_memory_mb"] for r in runs),
            }
        )
    return rows


def _mean_std(name: str, values: list[float]) -> dict[str, float]:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {f"{name}_mean": statistics.mean(values), f"{name}_std": std}


def write_tables(rows: list[dict[str, Any]], out: Path) -> None:
    """``results.csv`` (full precision) and ``results.md`` (rounded, for reading)."""
    with (out / "results.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    header = [
        "strategy",
        "space",
        "task",
        "metric before",
        "metric after",
        "samples",
        "samples to target",
        "train s",
        "peak MiB",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        to_target = "-" if row["samples_to_target"] is None else f"{row['samples_to_target']:.0f}"
        if row["reached"]:
            to_target += f" ({row['reached']})"
        lines.append(
            "| "
            + " | ".join(
                [
                    row["strategy"],
                    row["space"],
                    row["task"],
                    f"{row['metric']} {row['before_mean']:.3f} ± {row['before_std']:.3f}",
                    f"{row['after_mean']:.3f} ± {row['after_std']:.3f}",
                    f"{row['samples']:.0f}",
                    to_target,
                    f"{row['train_seconds']:.1f}",
                    f"{row['peak_memory_mb']:.0f}",
                ]
            )
            + " |"
        )
    (out / "results.md").write_text("\n".join(lines) + "\n")


def plot(config: BenchConfig, out: Path) -> None:
    """Held-out metric against sample evaluations and against training seconds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = run_records(config)
    curves: dict[str, list[list[dict[str, Any]]]] = {}
    for name, train_config in config.runs():
        label = "/".join(
            part
            for part, many in (
                (train_config.strategy, True),
                (train_config.space, len(config.spaces) > 1),
                (train_config.task, len(config.tasks) > 1),
            )
            if many
        )
        curves.setdefault(label, []).append([r for r in records[name] if r["type"] == "eval"])
    for x_key, x_label, filename in (
        ("samples", "sample evaluations (members x prompts)", "heldout_vs_samples.png"),
        ("time", "training time (s)", "heldout_vs_time.png"),
    ):
        figure, axes = plt.subplots(figsize=(7, 4.5))
        for label, runs in curves.items():
            metric = _metric(config, runs[0][0])
            length = min(len(run) for run in runs)
            xs = [statistics.mean(run[i][x_key] for run in runs) for i in range(length)]
            ys = [[run[i][metric] for run in runs] for i in range(length)]
            mean = [statistics.mean(y) for y in ys]
            std = [statistics.stdev(y) if len(y) > 1 else 0.0 for y in ys]
            (line,) = axes.plot(xs, mean, marker="o", label=label)
            axes.fill_between(
                xs,
                [m - s for m, s in zip(mean, std, strict=True)],
                [m + s for m, s in zip(mean, std, strict=True)],
                color=line.get_color(),
                alpha=0.2,
            )
        axes.set_xlabel(x_label)
        axes.set_ylabel(f"held-out {metric}")
        axes.set_title(f"{config.model}: mean ± std over {len(config.seeds)} seed(s)")
        axes.legend()
        figure.tight_layout()
        figure.savefig(out / filename, dpi=120)
        plt.close(figure)
