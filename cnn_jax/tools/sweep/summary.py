"""A study's tables and plot: ``summary.{md,csv}`` per point, ``summary_runs.csv`` per run, ``summary.{png,svg}``."""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

from cnn_jax import sweeps
from cnn_jax.tools import results


def write_runs_csv(records: Sequence[results.RunRecord], path: pathlib.Path) -> pathlib.Path:
    """One row per run: name, stage, series, its sweep overrides, status, steps, final metrics, size."""
    import csv

    keys: list[str] = []
    for r in records:
        keys += [k for k in sweeps.config_keys(r.overrides) if k not in keys]
    metrics = ("eval/top1", "eval/top5", "eval/loss")
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["run", "stage", "series", *keys, "status", "steps_done", "steps_planned", *metrics,
                         "params", "macs", "resolution", "train_time_s"])
        for r in records:
            writer.writerow([r.name, r.stage, r.series, *(r.overrides.get(k, "") for k in keys), r.status,
                             r.steps_done, r.steps_planned, *(r.metrics.get(m, "") for m in metrics), r.params,
                             r.macs, r.resolution, "" if r.train_time_s is None else r.train_time_s])
    return path


def write_summary(records: Sequence[results.RunRecord], root: pathlib.Path, *, axis: str, title: str) -> None:
    """``summary.{md,csv}`` (one row per point), ``summary_runs.csv`` and ``summary.{png,svg}`` in ``root``."""
    points = results.group_points(records)
    results.write_table(points, root / "summary")
    write_runs_csv(records, root / "summary_runs.csv")
    results.plot_runs(points, root / "summary", axis=axis, title=title)
