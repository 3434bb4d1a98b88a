"""Per-layer and whole-registry summaries: parameters, multiply-adds, FLOPs and activation memory.

One model, layer by layer (the EECS 498-007 lecture 8 table for AlexNet at 227 / VGG-16 at 224)::

  python -m cnn_jax.tools.summary alexnet --resolution 227
  python -m cnn_jax.tools.summary vgg16 --markdown

Every registered model at its training resolution, and the README model list (between the
``<!-- model-table:start -->`` / ``<!-- model-table:end -->`` markers)::

  python -m cnn_jax.tools.summary --table
  python -m cnn_jax.tools.summary --table --markdown --write-readme README.md

MACs are multiply-adds, what papers, torchvision's "GFLOPS" and the lecture call FLOPs; FLOPs = 2 x MACs. Counts
come from :mod:`cnn_jax.analysis` (an abstract trace: nothing is computed, so this runs anywhere in seconds).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import pathlib
import re
import sys
from collections.abc import Mapping, Sequence

from cnn_jax.analysis import ModelStats, model_stats
from cnn_jax.registry import list_models, model_info
from cnn_jax.reporting import markdown_table, text_table

DEFAULT_REFERENCE = pathlib.Path(__file__).resolve().parents[2] / "tests" / "reference" / "param_counts.csv"
README_START = "<!-- model-table:start -->"
README_END = "<!-- model-table:end -->"
MACS_HEADER = "MACs (what the lecture calls FLOPs)"


def _render(headers: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool, numeric: Sequence[bool]) -> str:
    if markdown:
        return "\n".join(markdown_table(headers, rows, numeric=numeric))
    return text_table(headers, rows, numeric=numeric)


def _short(value: float, decimals: int) -> str:
    """Fixed decimals, or 3 significant digits below 1 (LeNet's 0.000417 GMACs)."""
    return f"{value:,.{decimals}f}" if value >= 1 else f"{value:.3g}"


def _shape(shape: Sequence[int]) -> str:
    return "x".join(str(d) for d in shape[1:])  # batch dropped


def layer_summary(stats: ModelStats, *, markdown: bool = False) -> str:
    """The per-layer table of one model followed by its totals."""
    headers = ["layer", "kind", "output (HxWxC)", "memory (KB)", "params", MACS_HEADER, "FLOPs (2 x MACs)"]
    rows = [
        [
            layer.path + (f" (x{layer.repeats})" if layer.repeats > 1 else ""),
            layer.kind,
            _shape(layer.output_shape),
            f"{layer.activation_kb:,.1f}",
            f"{layer.params:,}",
            f"{layer.macs:,}",
            f"{layer.flops:,}",
        ]
        for layer in stats.layers
    ]
    title = (
        f"{stats.name}: input {stats.resolution}x{stats.resolution}x{stats.in_channels}, batch {stats.batch}, "
        f"{stats.num_classes} classes (activation memory of each layer's float32 output; pool rows count window "
        "operations, kept out of the MAC total; (xN): a scanned block's layer, run N times, figures are totals)"
    )
    aux = stats.params - stats.inference_params
    totals = [
        f"parameters: {stats.params:,}"
        + (f" ({aux:,} of them in layers that do not run in this pass, e.g. auxiliary heads)" if aux else ""),
        f"conv + dense MACs: {stats.macs:,} ({stats.macs / 1e9:.3f} G); FLOPs: {stats.flops:,} "
        f"({stats.flops / 1e9:.3f} G)",
        f"pooling operations: {stats.pool_ops:,}",
        f"activation memory: {stats.activation_kb:,.1f} KB ({stats.activation_kb / 1024:,.2f} MB)",
    ]
    bullet = "- " if markdown else ""
    table = _render(headers, rows, markdown, [False, False, False, True, True, True, True])
    return "\n".join([title, "", table, "", *(bullet + t for t in totals)])


@dataclasses.dataclass(frozen=True)
class RegistryRow:
    """One model of the registry table: its counts and the reference row it is checked against."""

    stats: ModelStats
    reference: str | None
    reference_params: int | None

    @property
    def matches(self) -> bool | None:
        return None if self.reference_params is None else self.stats.params == self.reference_params


def load_reference_counts(path: pathlib.Path = DEFAULT_REFERENCE) -> dict[str, int]:
    """Exact counts of ``param_counts.csv`` by variant (rows with a rounded figure, such as "~60k", are left out)."""
    if not path.exists():
        return {}
    with open(path, newline="") as f:
        return {row["variant"]: int(row["params"]) for row in csv.DictReader(f) if row["params"].isdigit()}


def registry_rows(names: Sequence[str], reference_counts: Mapping[str, int]) -> list[RegistryRow]:
    """Counts each model at its training resolution with its reference row's class count."""
    rows = []
    for name in names:
        info = model_info(name)
        rows.append(RegistryRow(model_stats(name), info.reference, reference_counts.get(info.reference or "")))
    return rows


def registry_table(rows: Sequence[RegistryRow], *, markdown: bool = False) -> str:
    headers = ["model", "input", "classes", "params", "GMACs", "act. memory (MB)", "reference params", "match"]
    match_text = {True: "yes", False: "NO", None: "–"}
    body = [
        [
            f"`{r.stats.name}`" if markdown else r.stats.name,
            str(r.stats.resolution),
            str(r.stats.num_classes),
            f"{r.stats.params:,}",
            _short(r.stats.macs / 1e9, 3),
            _short(r.stats.activation_kb / 1024, 1),
            f"{r.reference_params:,}" if r.reference_params is not None else "–",
            match_text[r.matches],
        ]
        for r in rows
    ]
    return _render(headers, body, markdown, [False, True, True, True, True, True, True, False])


def replace_between_markers(text: str, table: str) -> str:
    """``text`` with everything between the README markers replaced by ``table``."""
    pattern = re.compile(re.escape(README_START) + r".*?" + re.escape(README_END), re.DOTALL)
    if not pattern.search(text):
        raise ValueError(f"no {README_START} ... {README_END} markers found")
    return pattern.sub(lambda _: f"{README_START}\n{table}\n{README_END}", text, count=1)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cnn_jax.tools.summary", description=__doc__.split("\n")[0])
    parser.add_argument("model", nargs="?", help="registered model name (omit with --table)")
    parser.add_argument("--resolution", type=int, help="square input size (default: the model's training size)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--num-classes", type=int, help="default: the class count of the model's reference row")
    parser.add_argument("--markdown", action="store_true", help="print markdown tables")
    parser.add_argument("--table", action="store_true", help="one row per registered model")
    parser.add_argument("--models", default="*", help="with --table: shell pattern of model names")
    parser.add_argument("--write-readme", type=pathlib.Path, help="with --table: rewrite the README's model table")
    parser.add_argument("--reference", type=pathlib.Path, default=DEFAULT_REFERENCE, help="param_counts.csv")
    args = parser.parse_args(argv)

    if args.table:
        if args.model:
            parser.error("--table summarises the registry; give no model name (use --models PATTERN to filter)")
        names = list_models(args.models)
        if not names:
            parser.error(f"no registered model matches {args.models!r}")
        rows = registry_rows(names, load_reference_counts(args.reference))
        table = registry_table(rows, markdown=args.markdown or args.write_readme is not None)
        if args.write_readme is not None:
            try:
                args.write_readme.write_text(replace_between_markers(args.write_readme.read_text(), table))
            except (OSError, ValueError) as e:
                parser.error(f"{args.write_readme}: {e}")
        print(table)
        return 0

    if not args.model:
        parser.error("give a model name, or --table")
    try:
        stats = model_stats(args.model, args.resolution, batch=args.batch, num_classes=args.num_classes)
    except ValueError as e:  # unknown model: the registry's message names close matches
        parser.error(str(e))
    print(layer_summary(stats, markdown=args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
