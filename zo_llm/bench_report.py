"""The tables and plots of ``zo-llm bench``, read back from the runs' own ``metrics.jsonl``.

Every number here is computed from the records a run logged, never kept
aside, so any cell of ``results.csv`` can be traced to a run folder.
"""

from __future__ import annotations

import csv
import statistics
from pathlib import Path
from typing import Any, Protocol

from .rundir import read_metrics
from .tasks.base import main_metric


class BenchConfig(Protocol):
    """What the report reads of a bench (:class:`zo_llm.bench.BenchConfig`)."""

    metric: str | None
    target: float | None
    spaces: tuple[Any, ...]
    tasks: tuple[Any, ...]
    seeds: tuple[int, ...]

    @property
    def title(self) -> str: ...

    def runs(self) -> list[tuple[str, Any]]: ...

    def plan(self) -> list[Any]: ...


def run_records(config: BenchConfig) -> dict[str, list[dict[str, Any]]]:
    """The metrics records of every run folder of the bench, by folder name."""
    return {name: read_metrics(Path(c.output.out)) for name, c in config.runs()}


def _metric(config: BenchConfig, record: dict[str, Any]) -> str:
    if config.metric:
        if config.metric not in record:
            raise ValueError(
                f"metric {config.metric!r} is not logged; the task logs: "
                f"{', '.join(k for k in record if k not in ('type', 'split'))}"
            )
        return config.metric
    return main_metric(record)


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
        "eval_seconds": sum(r.get("eval_seconds", 0.0) for r in evals),
        "peak_memory_mb": max((r["peak_memory_mb"] for r in train), default=0.0),
    }


def summarise(config: BenchConfig) -> list[dict[str, Any]]:
    """Per (strategy, space, task) entry: mean and std over seeds of each run's numbers."""
    records = run_records(config)
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for run in config.plan():
        groups.setdefault(run.row, []).append(run_summary(config, records[run.name]))
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
                "wall_seconds": statistics.mean(
                    r["train_seconds"] + r["eval_seconds"] for r in runs
                ),
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
        "wall s",
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
                    f"{row['wall_seconds']:.1f}",
                    f"{row['peak_memory_mb']:.0f}",
                ]
            )
            + " |"
        )
    (out / "results.md").write_text("\n".join(lines) + "\n")


def with_wall_time(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The eval records, each with ``wall``: training seconds plus evaluation seconds so far."""
    evals, spent = [], 0.0
    for record in records:
        if record["type"] == "eval":
            spent += record.get("eval_seconds", 0.0)
            evals.append({**record, "wall": record["time"] + spent})
    return evals


def plot(config: BenchConfig, out: Path) -> None:
    """Held-out metric against sample evaluations and against wall time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = run_records(config)
    curves: dict[str, list[list[dict[str, Any]]]] = {}
    for run in config.plan():
        strategy, space, task = run.row
        label = "/".join(
            part
            for part, many in (
                (strategy, True),
                (space, len(config.spaces) > 1),
                (task, len(config.tasks) > 1),
            )
            if many
        )
        curves.setdefault(label, []).append(with_wall_time(records[run.name]))
    for x_key, x_label, filename in (
        ("samples", "sample evaluations (members x prompts)", "heldout_vs_samples.png"),
        ("wall", "wall time (s): training + held-out evaluations", "heldout_vs_time.png"),
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
        axes.set_title(f"{config.title}: mean ± std over {len(config.seeds)} seed(s)")
        axes.legend()
        figure.tight_layout()
        figure.savefig(out / filename, dpi=120)
        plt.close(figure)
