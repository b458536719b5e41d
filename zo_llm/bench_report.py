"""The tables and plots of ``zo-llm bench``, read back from the runs' own ``metrics.jsonl``.

Every number here is computed from the records a run logged, never kept
aside, so any cell of ``results.csv`` can be traced to a run folder.
"""

from __future__ import annotations

import csv
import json
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
    probe = _probe_metric(evals[0])
    return {
        "metric": metric,
        "before": evals[0][metric],
        "after": evals[-1][metric],
        "best": max(r[metric] for r in evals),
        "samples": train[-1]["samples"] if train else 0,
        **{name: _total(train, name) for name in WORK},
        "weight_change": evals[-1].get("weight_change"),
        "kl": evals[-1].get("kl"),
        "probe": probe,
        "probe_before": evals[0][f"probe_{probe}"] if probe else None,
        "probe_after": evals[-1][f"probe_{probe}"] if probe else None,
        "samples_to_target": reached[0] if reached else None,
        "train_seconds": train[-1]["time"] if train else 0.0,
        "eval_seconds": sum(r.get("eval_seconds", 0.0) for r in evals),
        "peak_memory_mb": max((r["peak_memory_mb"] for r in train), default=0.0),
    }


#: What a train record counts of the work done (:meth:`Generator.counts`), summed over a run.
WORK = ("generated_tokens", "forward_passes", "backward_passes")
#: Per-run numbers that may be missing (not logged by every run): averaged where all have them.
OPTIONAL = (*WORK, "weight_change", "kl", "probe_before", "probe_after")


def _total(train: list[dict[str, Any]], name: str) -> int | None:
    """A count summed over the train records, None if any record lacks it."""
    values = [r.get(name) for r in train]
    return sum(values) if train and None not in values else None


def _probe_metric(record: dict[str, Any]) -> str | None:
    """The probe task's main metric, if the run scored a probe."""
    probed = {k.removeprefix("probe_"): v for k, v in record.items() if k.startswith("probe_")}
    return main_metric(probed) if probed else None


def _mean_or_none(values: list[Any]) -> float | None:
    return None if not values or None in values else statistics.mean(values)


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
                "best_mean": statistics.mean(r["best"] for r in runs),
                "samples": statistics.mean(r["samples"] for r in runs),
                **{name: _mean_or_none([r[name] for r in runs]) for name in OPTIONAL},
                "probe": runs[0]["probe"] or "",
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
        "best",
        "tokens",
        "fwd / bwd passes",
        "weight change",
        "KL",
        "probe before → after",
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
                    f"{row['best_mean']:.3f}",
                    _cell(row["generated_tokens"], ".0f"),
                    " / ".join(_cell(row[k], ".0f") for k in ("forward_passes", "backward_passes")),
                    _cell(row["weight_change"], ".2e"),
                    _cell(row["kl"], ".4f"),
                    _probe_cell(row),
                ]
            )
            + " |"
        )
    (out / "results.md").write_text("\n".join(lines) + "\n")


def _cell(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _probe_cell(row: dict[str, Any]) -> str:
    if not row["probe"]:
        return "-"
    return (
        f"{row['probe']} {_cell(row['probe_before'], '.3f')} → {_cell(row['probe_after'], '.3f')}"
    )


def with_wall_time(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The eval records, each with ``wall``: training seconds plus evaluation seconds so far."""
    evals, spent = [], 0.0
    for record in records:
        if record["type"] == "eval":
            spent += record.get("eval_seconds", 0.0)
            evals.append({**record, "wall": record["time"] + spent})
    return evals


def curves(config: BenchConfig) -> dict[str, Any]:
    """What the plots draw, as JSON (``curves.json``): per line, each seed's eval records
    with ``wall`` seconds; a later change redraws from it without running again."""
    records = run_records(config)
    lines: dict[str, list[list[dict[str, Any]]]] = {}
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
        lines.setdefault(label, []).append(with_wall_time(records[run.name]))
    first = next(iter(lines.values()))[0][0]
    return {
        "title": config.title,
        "seeds": len(config.seeds),
        "metric": _metric(config, first),
        "lines": lines,
    }


def plot(config: BenchConfig, out: Path) -> None:
    """Held-out metric against sample evaluations and against wall time, and their data."""
    data = curves(config)
    (out / "curves.json").write_text(json.dumps(data, indent=1))
    draw(data, out)


def draw(data: dict[str, Any], out: Path, prefix: str = "") -> list[Path]:
    """The two plots of ``data`` (:func:`curves`) in ``out``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric, written = data["metric"], []
    for x_key, x_label, filename in (
        ("samples", "training completions (sample evaluations)", "heldout_vs_samples.png"),
        ("wall", "wall time (s): training + held-out evaluations", "heldout_vs_time.png"),
    ):
        figure, axes = plt.subplots(figsize=(7, 4.5))
        for label, runs in data["lines"].items():
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
        axes.set_title(f"{data['title']}: mean ± std over {data['seeds']} seed(s)")
        axes.legend()
        figure.tight_layout()
        written.append(out / f"{prefix}{filename}")
        figure.savefig(written[-1], dpi=120)
        plt.close(figure)
    return written
