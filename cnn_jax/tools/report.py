"""Size vs accuracy: the "accuracy vs operations, bubble size = parameters" chart, the model size table, and
per-layer plots of memory / parameters / FLOPs.

  python -m cnn_jax.tools.report --out docs/                       # chart + table for every registered model
  python -m cnn_jax.tools.report --out DIR --results /tmp/compound /tmp/axes --table --x macs  # own runs
  python -m cnn_jax.tools.report --out docs/ --layers alexnet --layers vgg16

Top-1 accuracies are the ImageNet-1k validation rows of ``shared/reference/models.csv`` (``tests/reference`` holds
a copy); a model is plotted with the first row whose parameter count and input size equal the model's own (so the
row describes exactly this network: torchvision's weights where they exist, else timm's or the paper's). MACs,
parameters and activation memory are counted by :mod:`cnn_jax.analysis` at each model's default resolution. The
per-layer plots show the lecture's observation (EECS 498-007 lecture 8; Krizhevsky et al. 2012, Simonyan &
Zisserman 2014): in AlexNet and VGG the early convolutions hold most of the activation memory and the fully
connected layers most of the parameters.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import pathlib
import re
import sys
from collections.abc import Sequence
from typing import Any

from cnn_jax.analysis import ModelStats, model_stats
from cnn_jax.registry import list_models, model_info
from cnn_jax.reporting import markdown_table, pyplot

REPO = pathlib.Path(__file__).resolve().parents[2]
_SHARED = REPO.parent / "shared" / "reference" / "models.csv"
DEFAULT_REFERENCE = _SHARED if _SHARED.exists() else REPO / "tests" / "reference" / "models.csv"


@dataclasses.dataclass(frozen=True)
class ReferencePoint:
    """A registered model with its counted size and the reference accuracy row that describes it."""

    name: str
    family: str
    stats: ModelStats
    top1: float | None
    top5: float | None
    variant: str | None  # the models.csv row
    source: str | None


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def load_reference_rows(path: pathlib.Path = DEFAULT_REFERENCE) -> list[dict[str, str]]:
    """ImageNet-1k validation rows of ``models.csv`` that give a top-1."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: reference accuracy table not found (expected shared/reference/models.csv)")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    missing = {"variant", "input_res", "params", "top1", "dataset", "source"} - set(rows[0] if rows else {})
    if missing:
        raise ValueError(f"{path}: missing columns {sorted(missing)}")
    return [r for r in rows if _number(r["top1"]) is not None and r["dataset"].startswith("ImageNet-1k")]


def match_reference(stats: ModelStats, rows: Sequence[dict[str, str]]) -> dict[str, str] | None:
    """The first row with exactly this parameter count and input size (the same network and test resolution)."""
    for row in rows:
        if _number(row["params"]) == stats.params and _number(row["input_res"]) == stats.resolution:
            return row
    return None


def reference_points(names: Sequence[str], rows: Sequence[dict[str, str]]) -> list[ReferencePoint]:
    """Counts each model at its default resolution with its reference class count, and matches its accuracy row."""
    points = []
    for name in names:
        stats = model_stats(name)
        row = match_reference(stats, rows) if stats.num_classes == 1000 else None
        points.append(ReferencePoint(
            name=name, family=model_info(name).family or name, stats=stats,
            top1=_number(row["top1"]) if row else None, top5=_number(row["top5"]) if row else None,
            variant=row["variant"] if row else None, source=row["source"] if row else None))
    return points


def short_source(source: str) -> str:
    """A citation of a ``models.csv`` source, without the per-row details."""
    if m := re.match(r"torchvision [\d.]+", source):
        return f"{m.group(0)} weights metadata"
    if m := re.match(r"timm results/results-imagenet\.csv @\w+", source):
        return m.group(0)
    return re.split(r" \(|;", source.removeprefix("accuracy: "))[0].strip()


# ---------------------------------------------------------------------------------------------------------------
# Own runs.


def report_results(roots: Sequence[pathlib.Path], out: pathlib.Path, *, table: bool, axis: str = "macs"
                   ) -> list[pathlib.Path]:
    """``runs.{png,svg}`` (top-1 against ``axis``, seeds aggregated) of every run under ``roots`` and, with
    ``table``, ``results.{md,csv}`` (one row per point)."""
    from cnn_jax.tools import results

    records = results.load_results(roots)
    points = results.group_points(records)
    paths = results.plot_runs(points, out / "runs", axis=axis,
                              title=f"eval top-1 vs {axis}: {', '.join(pathlib.Path(r).name for r in roots)}")
    if table:
        paths += list(results.write_table(points, out / "results"))
    return paths


# ---------------------------------------------------------------------------------------------------------------
# Charts and tables.


def bubble_chart(points: Sequence[ReferencePoint], out: pathlib.Path, *,
                 reference_path: pathlib.Path = DEFAULT_REFERENCE) -> list[pathlib.Path]:
    """``accuracy_vs_macs.{png,svg}``: ImageNet top-1 vs GMACs, bubble area proportional to parameters, one
    colour per family; the family legend uses equal markers and a separate key gives the bubble scale."""
    from matplotlib.lines import Line2D

    from cnn_jax.tools.results import place_labels

    plt = pyplot()
    plotted = [p for p in points if p.top1 is not None]
    if not plotted:
        raise ValueError("no registered model has a reference accuracy row with its exact parameter count")
    fig, ax = plt.subplots(figsize=(13, 7.5))
    families = sorted({p.family for p in plotted})
    cmap = plt.get_cmap("tab20")
    colour = {f: cmap(i % 20) for i, f in enumerate(families)}
    scale = 1500 / max(p.stats.params for p in plotted)  # the largest model's bubble: 1500 pt^2
    for family in families:
        members = [p for p in plotted if p.family == family]
        ax.scatter([p.stats.macs / 1e9 for p in members], [p.top1 for p in members],
                   s=[max(8.0, p.stats.params * scale) for p in members], color=colour[family], alpha=0.55,
                   edgecolors="black", linewidths=0.4)
    ax.set_xscale("log")
    ax.set_xlabel("GMACs per image (multiply-adds; what papers call FLOPs), at the model's default resolution")
    ax.set_ylabel("ImageNet-1k val top-1 (%)")
    ax.set_title("Accuracy vs operations (bubble area = parameters)")
    ax.grid(alpha=0.3, which="both")
    ax.margins(x=0.05, y=0.06)
    family_key = ax.legend(handles=[Line2D([], [], ls="", marker="o", ms=7, color=colour[f], alpha=0.7,
                                           markeredgecolor="black", markeredgewidth=0.4, label=f)
                                    for f in families],
                           title="family", fontsize=7, title_fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                           frameon=False)
    ax.add_artist(family_key)
    sizes = [5e6, 25e6, 100e6]
    ax.legend(handles=[Line2D([], [], ls="", marker="o", ms=(s * scale) ** 0.5, markerfacecolor="none",
                              markeredgecolor="grey", label=f"{s / 1e6:g} M") for s in sizes],
              title="parameters\n(bubble area)", fontsize=7, title_fontsize=8, loc="lower left",
              bbox_to_anchor=(1.01, 0.0), frameon=False, labelspacing=2.2, borderpad=1.2)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    place_labels(ax, fig, [(p.stats.macs / 1e9, p.top1, p.name) for p in plotted], fontsize=5.5)
    sources = sorted({short_source(p.source) for p in plotted if p.source})
    caption = (f"Top-1: ImageNet-1k validation, single crop, from {reference_path.name} of shared/reference "
               f"(the row with the model's exact parameter count and input size). Sources: {'; '.join(sources)}. "
               "Parameters and MACs counted by cnn_jax.analysis.")
    fig.text(0.01, 0.005, "\n".join(_wrap(caption, 160)), fontsize=6.5, va="bottom")
    paths = [out / "accuracy_vs_macs.png", out / "accuracy_vs_macs.svg"]
    for path in paths:
        fig.savefig(path, dpi=150, bbox_inches="tight")
    plt.close(fig)
    return paths


def _wrap(text: str, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        if len(line) + len(word) + 1 > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return lines + [line]


def write_table(points: Sequence[ReferencePoint], out: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """``model_sizes.{csv,md}``: params, MACs and activation memory per model at its default resolution, with the
    matched reference top-1."""
    header = ["model", "resolution", "classes", "params", "MACs", "activation memory (MB)", "top-1 (%)",
              "reference row"]
    rows = [[p.name, p.stats.resolution, p.stats.num_classes, p.stats.params, p.stats.macs,
             round(p.stats.activation_kb / 1024, 2), p.top1 if p.top1 is not None else "", p.variant or ""]
            for p in points]
    csv_path = out / "model_sizes.csv"
    with open(csv_path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    md = markdown_table(header, [[f"`{r[0]}`", r[1], r[2], f"{r[3]:,}", f"{r[4] / 1e9:.3g} G", f"{r[5]:,}",
                                  r[6] if r[6] != "" else "–", r[7] or "–"] for r in rows],
                        numeric=[False, *[True] * 6, False])
    md_path = out / "model_sizes.md"
    md_path.write_text("\n".join(md) + "\n")
    return csv_path, md_path


def layer_data(stats: ModelStats) -> list[dict[str, Any]]:
    """The rows behind a per-layer plot: layer path, kind, activation memory (KB), parameters, MACs, FLOPs."""
    return [{"layer": layer.path, "kind": layer.kind, "memory_kb": layer.activation_kb, "params": layer.params,
             "macs": layer.macs, "flops": layer.flops} for layer in stats.layers]


def layer_plot(stats: ModelStats, out: pathlib.Path) -> list[pathlib.Path]:
    """``layers_<model>.{png,svg}``: memory, parameters and FLOPs of each layer (bars coloured by kind)."""
    plt = pyplot()
    data = layer_data(stats)
    kinds = {"conv": "tab:blue", "dense": "tab:red", "pool": "tab:green", "norm": "tab:gray", "other": "tab:purple"}
    fig, axes = plt.subplots(3, 1, figsize=(max(8.0, 0.28 * len(data) + 3), 9), sharex=True)
    x = range(len(data))
    colours = [kinds[d["kind"]] for d in data]
    for ax, key, label in zip(axes, ("memory_kb", "params", "flops"),
                              ("activation memory (KB)", "parameters", "FLOPs (2 x MACs; pools: window ops)"),
                              strict=True):
        ax.bar(x, [d[key] for d in data], color=colours)
        ax.set_ylabel(label, fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        total = sum(d[key] for d in data)
        ax.set_title(f"{label}: total {total:,.0f}", fontsize=8, loc="left")
    axes[-1].set_xticks(list(x))
    axes[-1].set_xticklabels([d["layer"] for d in data], rotation=90, fontsize=6)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for k, c in kinds.items() if k in {d["kind"] for d in data}]
    axes[0].legend(handles, [k for k in kinds if k in {d["kind"] for d in data}], fontsize=7)
    fig.suptitle(f"{stats.name} at {stats.resolution}x{stats.resolution}, batch {stats.batch}: per-layer memory, "
                 "parameters and FLOPs (float32 outputs)", fontsize=10)
    fig.tight_layout()
    paths = [out / f"layers_{stats.name}.png", out / f"layers_{stats.name}.svg"]
    for path in paths:
        fig.savefig(path, dpi=130)
    plt.close(fig)
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cnn_jax.tools.report", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=pathlib.Path, required=True, help="output directory (e.g. docs/)")
    parser.add_argument("--results", type=pathlib.Path, nargs="+", metavar="DIR",
                        help="own runs: sweep directories and/or training workdirs; writes runs.{png,svg} (no "
                             "reference chart unless --chart)")
    parser.add_argument("--table", action="store_true", help="with --results: results.{md,csv}, one row per point "
                        "(runs differing only in seed), top-1/top-5 as mean ± std over seeds")
    parser.add_argument("--x", default="macs", help="with --results: x axis of runs.png: macs, params, resolution "
                        "or a config key (e.g. optimizer.base_lr)")
    parser.add_argument("--models", default="*",
                        help="comma-separated shell patterns of registered models for the chart and table")
    parser.add_argument("--layers", action="append", default=[], metavar="MODEL",
                        help="per-layer plot of this model (repeatable); with it, no chart unless --chart")
    parser.add_argument("--resolution", type=int, help="with --layers: input size (default: the model's)")
    parser.add_argument("--chart", action="store_true", help="draw the chart and table even with --layers/--results")
    parser.add_argument("--reference", type=pathlib.Path, default=DEFAULT_REFERENCE, help="models.csv")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        for name in args.layers:
            stats = model_stats(name, args.resolution)
            for path in layer_plot(stats, args.out):
                print(f"wrote {path}")
        if args.results:
            for path in report_results(args.results, args.out, table=args.table, axis=args.x):
                print(f"wrote {path}")
        elif args.table:
            parser.error("--table needs --results DIR...")
        if (args.layers or args.results) and not args.chart:
            return 0
        names = sorted({n for pattern in args.models.split(",") for n in list_models(pattern.strip())})
        if not names:
            parser.error(f"no registered model matches {args.models!r}")
        points = reference_points(names, load_reference_rows(args.reference))
        for path in (*bubble_chart(points, args.out, reference_path=args.reference), *write_table(points, args.out)):
            print(f"wrote {path}")
    except (FileNotFoundError, ValueError) as error:
        parser.error(str(error))
    return 0


if __name__ == "__main__":
    sys.exit(main())
