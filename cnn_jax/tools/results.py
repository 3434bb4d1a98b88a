"""Training runs on disk as records: status, progress, size, final metrics; repeated seeds aggregated into points;
the results table and the runs plot shared by ``cnn_jax.tools.sweep`` (a sweep's summary) and
``cnn_jax.tools.report --results DIR... --table`` (across sweeps and loose workdirs).

A *run* is a training workdir (``config.json``, ``metrics.jsonl``, checkpoints) or a run a sweep planned
(``sweep.json`` lists them with their configs, so pending runs appear too). Its status is ``finished`` (an eval at
the last step, or the sweep's ``final_metrics.json``), ``unfinished`` (it logged something but stopped before its
last step) or ``pending`` (nothing on disk). A *point* is the runs that differ only in ``seed``: tables and plots
show its mean ± sample standard deviation over the finished seeds, with n.

``python -m cnn_jax.tools.results export SRC DEST`` copies the evidence of every run under SRC (``config.json``,
``metrics.jsonl``, ``launches.jsonl``, ``final_metrics.json``; a sweep's ``sweep.json``, ``plan/`` and
``summary*``) to DEST, without checkpoints or TensorBoard files: what a results directory in the repository holds.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import json
import pathlib
import re
import shutil
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import ml_collections

from cnn_jax import sweeps
from cnn_jax.config import flatten
from cnn_jax.reporting import markdown_table, pyplot
from cnn_jax.train.metrics import LAUNCHES_FILE, read_metrics

FINAL = "final_metrics.json"
SWEEP_FILE = "sweep.json"
X_AXES = ("macs", "params", "resolution")
SINGLE_STAGE = "runs"  # the stage name of a one-stage sweep (``get_sweep``)


@dataclasses.dataclass
class RunRecord:
    """One run: where it is, what it trains, how far it got and what it scored."""

    name: str  # path relative to the results root
    workdir: pathlib.Path
    config: ml_collections.ConfigDict
    sweep: str = ""  # the sweep file's stem, "" for a loose workdir
    stage: str = ""
    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
    status: str = "pending"
    steps_done: int = 0
    steps_planned: int = 0
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)  # final eval, or the last one logged
    train_time_s: float | None = None

    @functools.cached_property
    def size(self) -> tuple[int, int]:
        """(parameters, MACs per image), counted when first asked for (a status check needs neither)."""
        return run_size(self.config)

    @property
    def params(self) -> int:
        return self.size[0]

    @property
    def macs(self) -> int:
        return self.size[1]

    @property
    def series(self) -> str:
        """The sweep's ``_series`` label, else the stage."""
        return str(self.overrides.get("_series", self.stage))

    @property
    def resolution(self) -> int:
        return int(self.config.data.image_size)

    @property
    def seed(self) -> int:
        return int(self.config.seed)

    @property
    def num_classes(self) -> int:
        return int(self.config.model.get("num_classes", 1000))

    def as_result(self) -> dict[str, Any]:
        """The dict a later sweep stage sees (``cnn_jax.sweeps.Stage``)."""
        return {"name": self.name, "stage": self.stage, "status": self.status, "overrides": self.overrides,
                "metrics": self.metrics, "num_classes": self.num_classes, "config": self.config}


# ---------------------------------------------------------------------------------------------------------------
# Reading runs.


def schedule(config: ml_collections.ConfigDict):
    """The run's ``Schedule`` (``Schedule.resolve`` on its training examples, counted from the dataset's metadata,
    cached by the dry run, or by loading it where the metadata has no count)."""
    from cnn_jax.data import sources
    from cnn_jax.train.dry_run import dataset_metadata
    from cnn_jax.train.loop import Schedule

    data = config.data
    count = dataset_metadata(config).num_train
    if count is None:
        count = len(sources.load_dataset(data.name, data.data_dir, manual_dir=data.manual_dir,
                                         train_split=data.train_split).train)
    return Schedule.resolve(config, min(count, data.max_train_examples or count))


def total_steps(config: ml_collections.ConfigDict) -> int:
    """The run's final step: ``train.num_steps``, else its :func:`schedule`'s."""
    if config.train.get("num_steps") is not None:
        return int(config.train.num_steps)
    return schedule(config).total_steps


def run_size(config: ml_collections.ConfigDict) -> tuple[int, int]:
    """(parameters, MACs per image) of a run's model at its input size (an abstract trace, cached with the dry
    run's: a sweep point checked before training is not traced again for its summary)."""
    from cnn_jax.train.dry_run import model_statistics

    stats = model_statistics(config)
    return stats.params, stats.macs


def read_progress(workdir: pathlib.Path, planned: int) -> dict[str, Any]:
    """``status``, ``steps_done``, ``metrics`` (final eval, else the last eval logged) and ``train_time_s`` (the
    logged training windows' time, summed: start-up and evals excluded, resumed sessions included) of a workdir."""
    marker = workdir / FINAL
    log = workdir / "metrics.jsonl"
    records = read_metrics(workdir) if log.exists() else []
    train = [r for r in records if "train/step_time_s" in r]
    evals = [r for r in records if "eval/top1" in r]
    steps_done = max((r["step"] for r in records), default=0)
    time_s, previous = 0.0, 0
    for record in sorted(train, key=lambda r: (r.get("time", 0.0), r["step"])):
        if record["step"] > previous:
            time_s += record["train/step_time_s"] * (record["step"] - previous)
        previous = record["step"]
    metrics = {k: v for k, v in evals[-1].items() if k.startswith(("eval/", "eval_ema/"))} if evals else {}
    status = "pending"
    if marker.exists():
        final = json.loads(marker.read_text())
        status, metrics, steps_done = "finished", final["metrics"], max(steps_done, planned)
    elif evals and evals[-1]["step"] >= planned:
        status = "finished"
    elif records or (workdir / "checkpoints").exists():
        status = "unfinished"
    return {"status": status, "steps_done": steps_done, "metrics": metrics,
            "train_time_s": time_s if train else None}


def load_record(workdir: pathlib.Path, config: ml_collections.ConfigDict, *, name: str, sweep: str = "",
                stage: str = "", overrides: Mapping[str, Any] | None = None) -> RunRecord:
    overrides = dict(overrides or {})
    planned = total_steps(config)
    record = RunRecord(name=name, workdir=workdir, config=config, sweep=sweep, stage=stage, overrides=overrides,
                       steps_planned=planned)
    for key, value in read_progress(workdir, planned).items():
        setattr(record, key, value)
    return record


def load_results(roots: Iterable[str | pathlib.Path]) -> list[RunRecord]:
    """Every run under ``roots``: the runs each ``sweep.json`` planned (pending ones included), then the loose
    workdirs (a ``config.json`` outside any sweep)."""
    records: list[RunRecord] = []
    for root in map(pathlib.Path, roots):
        if not root.exists():
            raise FileNotFoundError(f"{root}: no such results directory")
        covered: set[pathlib.Path] = set()
        for plan_path in sorted(root.rglob(SWEEP_FILE)):
            plan = json.loads(plan_path.read_text())
            sweep_root = plan_path.parent
            sweep_name = pathlib.Path(str(plan["sweep"]).partition(":")[0]).stem
            for run in plan["runs"]:
                workdir = sweep_root / run["name"]
                covered.add(workdir.resolve())
                records.append(load_record(
                    workdir, ml_collections.ConfigDict(run["config"]), name=_relative(workdir, root),
                    sweep=sweep_name, stage=run["stage"], overrides=run["overrides"]))
        for config_path in sorted(root.rglob("config.json")):
            workdir = config_path.parent
            if workdir.resolve() in covered:
                continue
            config = ml_collections.ConfigDict(json.loads(config_path.read_text()))
            records.append(load_record(workdir, config, name=_relative(workdir, root)))
    if not records:
        raise FileNotFoundError(f"no training run (sweep.json or config.json) under {', '.join(map(str, roots))}")
    return records


def _relative(path: pathlib.Path, root: pathlib.Path) -> str:
    relative = str(path.relative_to(root)) if path != root else ""
    return relative or path.name


# ---------------------------------------------------------------------------------------------------------------
# Points: repeated seeds.


@dataclasses.dataclass
class Point:
    """Runs that differ only in their seed."""

    runs: list[RunRecord]

    @property
    def first(self) -> RunRecord:
        return self.runs[0]

    @property
    def finished(self) -> list[RunRecord]:
        return [r for r in self.runs if r.status == "finished"]

    @property
    def is_finished(self) -> bool:
        return len(self.finished) == len(self.runs)

    @property
    def label(self) -> str:
        """The first run's name with its seed part dropped (``search/003_..._seed0`` -> ``search/003_...``)."""
        return re.sub(r"_seed-?\d+(?=_|$)", "", self.first.name)

    @property
    def seeds(self) -> list[int]:
        return [r.seed for r in self.runs]

    def score(self, metric: str = "eval/top1", *, finished_only: bool = True) -> sweeps.Summary:
        runs = self.finished if finished_only else [r for r in self.runs if metric in r.metrics]
        return sweeps.summarize(r.metrics[metric] for r in runs if metric in r.metrics)

    @property
    def status(self) -> str:
        done = len(self.finished)
        if done == len(self.runs):
            return "finished"
        states = [r.status for r in self.runs]
        started = sum(s != "pending" for s in states)
        return f"{done}/{len(self.runs)} finished" + (f", {started - done} unfinished" if started > done else "")


def _hashable(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def group_points(records: Sequence[RunRecord]) -> list[Point]:
    """Runs grouped by (sweep, stage, whole config without ``seed``), in first-seen order."""
    groups: dict[tuple, list[RunRecord]] = {}
    for record in records:
        config = {k: v for k, v in flatten(record.config).items() if k != sweeps.SEED_KEY}
        key = (record.sweep, record.stage, str(record.workdir.parent) if not record.sweep else "",
               _hashable(config))
        groups.setdefault(key, []).append(record)
    return [Point(runs) for runs in groups.values()]


def differing_keys(records: Sequence[RunRecord]) -> list[str]:
    """Config keys (dotted) whose value is not the same in every run, ``seed`` left out (it has its column)."""
    flats = [flatten(r.config) for r in records]
    keys: list[str] = []
    for flat in flats:
        keys += [k for k in flat if k not in keys]
    return [k for k in keys if k != sweeps.SEED_KEY
            and len({_hashable(f[k]) if k in f else "<missing>" for f in flats}) > 1]


# ---------------------------------------------------------------------------------------------------------------
# The table.


METRICS = ("eval/top1", "eval/top5")


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "–"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return "-".join(_cell(v) for v in value)
    return str(value)


def table_rows(points: Sequence[Point]) -> tuple[list[str], list[dict[str, Any]]]:
    """The columns and one row per point (full precision; the markdown rounds)."""
    records = [r for p in points for r in p.runs]
    keys = [k for k in differing_keys(records) if k != "data.image_size"]  # the resolution column
    columns = ["run", "sweep", "stage", "status", "steps", "seeds", "params", "macs", "resolution", *keys]
    for metric in METRICS:
        columns += [f"{metric} mean", f"{metric} std", f"{metric} n"]
    columns += ["train time (s)"]
    rows = []
    for point in points:
        first = point.first
        flat = flatten(first.config)
        steps = sorted({f"{r.steps_done}/{r.steps_planned}" for r in point.runs})
        times = [r.train_time_s for r in point.runs if r.train_time_s is not None]
        row = {"run": point.label, "sweep": first.sweep, "stage": first.stage, "status": point.status,
               "steps": ", ".join(steps) if len(steps) <= 2 else f"{min(r.steps_done for r in point.runs)}.."
               f"{max(r.steps_done for r in point.runs)}/{first.steps_planned}",
               "seeds": ",".join(str(s) for s in point.seeds), "params": first.params, "macs": first.macs,
               "resolution": first.resolution, **{k: flat.get(k, "") for k in keys},
               "train time (s)": sum(times) / len(times) if times else ""}
        for metric in METRICS:
            score = point.score(metric)
            row |= {f"{metric} mean": score.mean if score.n else "", f"{metric} std": score.std if score.n > 1 else "",
                    f"{metric} n": score.n}
        rows.append(row)
    return columns, rows


def write_table(points: Sequence[Point], stem: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """``<stem>.csv`` (full precision, mean / std / n columns) and ``<stem>.md`` (top-1/top-5 in % as mean ± std
    (n) over the finished seeds; unfinished points marked)."""
    columns, rows = table_rows(points)
    csv_path, md_path = stem.with_suffix(".csv"), stem.with_suffix(".md")
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows(rows)
    shown = [c for c in columns if not c.startswith(METRICS) and c != "train time (s)"]
    if all(r["stage"] in ("", SINGLE_STAGE) for r in rows):
        shown.remove("stage")
    if not any(r["sweep"] for r in rows):
        shown.remove("sweep")
    header = [*shown, *(f"{m} (%)" for m in METRICS), "train time (s)"]
    body = []
    for point, row in zip(points, rows, strict=True):
        cells = []
        for column in shown:
            value = row[column]
            cells.append(f"{value:,}" if column in ("params", "macs") else _cell(value))
        cells += [point.score(m).format(100) for m in METRICS]
        cells.append(f"{row['train time (s)']:.0f}" if row["train time (s)"] != "" else "–")
        body.append(cells)
    md = markdown_table(header, body)
    md.append("")
    md.append("Top-1/top-5: mean ± sample std over the finished seeds (n). Train time: the logged training "
              "windows per run, averaged over seeds (start-up and evals excluded).")
    md_path.write_text("\n".join(md) + "\n")
    return csv_path, md_path


# ---------------------------------------------------------------------------------------------------------------
# The plot.


def x_value(record: RunRecord, axis: str) -> float | None:
    """A run's position on the x axis: ``macs``, ``params``, ``resolution`` or any dotted config key."""
    if axis == "macs":
        return record.macs / 1e6
    if axis == "params":
        return record.params / 1e6
    if axis == "resolution":
        return float(record.resolution)
    value = flatten(record.config).get(axis)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def axis_label(axis: str) -> str:
    return {"macs": "MACs per image (millions)", "params": "parameters (millions)",
            "resolution": "input size (pixels)"}.get(axis, axis)


_STAGE_MARKERS = ("o", "s", "^", "D", "v", "P")


@dataclasses.dataclass(frozen=True)
class PlottedPoint:
    """What the figure shows of one point (kept for tests)."""

    label: str
    series: str
    stage: str
    x: float
    y: float
    yerr: float
    n: int
    hollow: bool  # unfinished: drawn hollow, excluded from lines and from "best"
    curve: bool  # a labelled series other than a search (a scaling curve): finished points joined in x order


def _series(record: RunRecord, several_sweeps: bool) -> str:
    if not record.sweep:
        return "runs outside a sweep"
    label = record.overrides.get("_series", "")
    if several_sweeps:
        return f"{record.sweep}: {label}" if label else record.sweep
    return label or record.sweep


def plotted_points(points: Sequence[Point], axis: str, metric: str = "eval/top1") -> list[PlottedPoint]:
    several_sweeps = len({p.first.sweep for p in points}) > 1
    out = []
    for point in points:
        x = x_value(point.first, axis)
        if x is None:
            raise ValueError(f"--x {axis}: run {point.first.name} has no numeric value for it; use macs, params, "
                             "resolution or a numeric config key such as optimizer.base_lr")
        if point.is_finished:
            score = point.score(metric)
        else:
            score = point.score(metric, finished_only=False)  # whatever evals the runs logged so far
            if score.n == 0:
                continue
        stage = point.first.stage if point.first.stage != SINGLE_STAGE else ""
        label = point.first.overrides.get("_series", "")
        out.append(PlottedPoint(plot_label(point), _series(point.first, several_sweeps), stage, x, 100 * score.mean,
                                100 * score.std if score.n > 1 else 0.0, score.n, hollow=not point.is_finished,
                                curve=bool(label) and label != "search"))
    return out


def place_labels(ax, fig, items: Sequence[tuple[float, float, str]], fontsize: float) -> None:
    """Annotates each (x, y, text) beside its point: right of it, else left of it (always left where it would run
    past the axes' right edge), shifted up or down until it overlaps no earlier label, with a thin leader line once
    shifted."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    right_edge = ax.get_window_extent(renderer).x1
    placed: list[Any] = []
    shifts = (2, -10, 12, -20, 22, -30, 32, -40, 42, -50, 52, -60, 62, -70)
    for x, y, text in sorted(items, key=lambda item: (item[0], item[1])):
        candidates = [(side, dy) for dy in shifts for side in (1, -1)]
        for side, dy in candidates:
            leader = {"arrowprops": {"arrowstyle": "-", "lw": 0.4, "color": "grey"}} if dy != shifts[0] else {}
            annotation = ax.annotate(text, (x, y), xytext=(5 * side, dy), textcoords="offset points",
                                     ha="left" if side > 0 else "right", fontsize=fontsize, annotation_clip=False,
                                     **leader)
            box = annotation.get_window_extent(renderer)
            last = (side, dy) == candidates[-1]
            if (box.x1 <= right_edge and not any(box.overlaps(other) for other in placed)) or last:
                placed.append(box)
                break
            annotation.remove()


def runs_figure(points: Sequence[Point], *, axis: str = "macs", title: str = "", metric: str = "eval/top1"):
    """Mean ``metric`` (%) of each point against ``axis``, error bars = std over seeds; colour = series, marker
    = stage; finished points of a series other than a search joined in x order; unfinished points hollow (their
    last logged eval) and left out of lines and of "best", which circles the best finished point."""
    from matplotlib.lines import Line2D

    plt = pyplot()
    shown = plotted_points(points, axis, metric)
    if not shown:
        return None, shown
    fig, ax = plt.subplots(figsize=(9.5, 5.5))
    series = list(dict.fromkeys(p.series for p in shown))
    stages = list(dict.fromkeys(p.stage for p in shown))  # "" (no stage) first: it gets the plain circle
    stages.sort(key=bool)
    colours = {s: plt.get_cmap("tab10")(i % 10) for i, s in enumerate(series)}
    markers = {s: _STAGE_MARKERS[i % len(_STAGE_MARKERS)] for i, s in enumerate(stages)}
    for name in series:
        members = sorted((p for p in shown if p.series == name), key=lambda p: p.x)
        done = [p for p in members if not p.hollow and p.curve]
        if len(done) > 1:
            ax.plot([p.x for p in done], [p.y for p in done], "-", color=colours[name], alpha=0.6, zorder=1)
        for p in members:
            ax.errorbar([p.x], [p.y], yerr=[p.yerr] if p.n > 1 else None, fmt=markers[p.stage], ms=7,
                        color=colours[name], mfc="none" if p.hollow else colours[name], mew=1.5, capsize=3,
                        zorder=2)
    finished = [p for p in shown if not p.hollow]
    if finished:
        best = max(finished, key=lambda p: p.y)
        ax.scatter([best.x], [best.y], s=260, facecolors="none", edgecolors="black", linewidths=1.2, zorder=3)
    xs = [p.x for p in shown]
    if min(xs) > 0 and max(xs) > 5 * min(xs):
        ax.set_xscale("log")
    ax.margins(x=0.08, y=0.12)
    ax.set_xlabel(axis_label(axis))
    ax.set_ylabel(f"{metric} (%), mean ± std over seeds")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    handles = [Line2D([], [], color=colours[s], marker="o", ls="-" if any(p.curve for p in shown if p.series == s)
                      else "", label=s) for s in series]
    if len([s for s in stages if s]) > 1:
        handles += [Line2D([], [], color="grey", marker=markers[s], ls="", label=f"stage {s}") for s in stages if s]
    if any(p.hollow for p in shown):
        handles.append(Line2D([], [], color="grey", marker="o", mfc="none", ls="", label="unfinished (last eval)"))
    if finished:
        handles.append(Line2D([], [], color="black", marker="o", mfc="none", ms=12, ls="",
                              label=_best_label(finished)))
    ax.legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    place_labels(ax, fig, [(p.x, p.y, p.label) for p in shown], fontsize=6.5)
    return fig, shown


def _best_label(finished: Sequence[PlottedPoint]) -> str:
    """"best: X", or, when the runner-up is within two standard errors of the difference, says so (as
    ``cnn_jax.sweeps.select_best`` would refuse to pick)."""
    ranked = sorted(finished, key=lambda p: -p.y)
    best = ranked[0]
    if len(ranked) > 1 and best.n > 1 and ranked[1].n > 1:
        second = ranked[1]
        error = (best.yerr**2 / best.n + second.yerr**2 / second.n) ** 0.5
        if best.y - second.y <= 2 * error:
            return f"highest mean: {best.label}\n(within 2 SE of {second.label})"
    return f"best: {best.label}"


_SYMBOLS = {"alpha": "α", "beta": "β", "gamma": "γ", "phi": "φ"}


def plot_label(point: Point) -> str:
    """A point's label in a plot: its ``_name`` label, else its swept values (``φ=1 α=1.2 β=1.1 γ=1.15 37px``),
    else (a workdir outside a sweep) its directory name."""
    overrides = point.first.overrides
    if "_name" in overrides:
        return re.sub(r"_seed-?\d+$", "", str(overrides["_name"]))
    parts = []
    for key, value in sweeps.config_keys(overrides).items():
        if key == sweeps.SEED_KEY:
            continue
        leaf = key.rsplit(".", 1)[-1]
        parts.append(f"{value}px" if key == "data.image_size" else f"{_SYMBOLS.get(leaf, leaf)}={_cell(value)}")
    return " ".join(parts) or point.label.rsplit("/", 1)[-1]


def save_figure(fig, stem: pathlib.Path) -> list[pathlib.Path]:
    import matplotlib.pyplot as plt

    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    for path in paths:
        fig.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(fig)
    return paths


def plot_runs(points: Sequence[Point], stem: pathlib.Path, *, axis: str = "macs", title: str = "",
              metric: str = "eval/top1") -> list[pathlib.Path]:
    """``<stem>.png`` and ``.svg`` of :func:`runs_figure`; nothing when no point has an eval."""
    fig, _ = runs_figure(points, axis=axis, title=title, metric=metric)
    return save_figure(fig, stem) if fig is not None else []


# ---------------------------------------------------------------------------------------------------------------
# Evidence for the repository.


EVIDENCE = ("config.json", "metrics.jsonl", LAUNCHES_FILE, FINAL, SWEEP_FILE, "summary.md", "summary.csv",
            "summary_runs.csv", "summary.png", "summary.svg")


def export_evidence(source: str | pathlib.Path, destination: str | pathlib.Path) -> list[pathlib.Path]:
    """Copies every evidence file under ``source`` (:data:`EVIDENCE`, and a sweep's ``plan/*.commands``) to the same
    relative path under ``destination``; checkpoints, ``best/`` and TensorBoard files are left out."""
    source, destination = pathlib.Path(source), pathlib.Path(destination)
    if not source.is_dir():
        raise FileNotFoundError(f"{source}: no such results directory")
    copied = []
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if not path.is_file() or {"checkpoints", "best", "tensorboard"} & set(relative.parts):
            continue
        if path.name in EVIDENCE or (relative.parts[0] == "plan" and path.suffix == ".commands"):
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
            copied.append(target)
    if not copied:
        raise FileNotFoundError(f"{source}: no run evidence (config.json, metrics.jsonl, ...) under it")
    return copied


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m cnn_jax.tools.results", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    export = commands.add_parser("export", help="copy the runs' evidence (no checkpoints) from SRC to DEST")
    export.add_argument("source", type=pathlib.Path)
    export.add_argument("destination", type=pathlib.Path)
    args = parser.parse_args(argv)
    try:
        copied = export_evidence(args.source, args.destination)
    except FileNotFoundError as error:
        parser.error(str(error))
    print(f"copied {len(copied)} files to {args.destination}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
