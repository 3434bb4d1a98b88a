"""What the tools print and write: the machine a figure was measured on, tables (markdown or aligned text), and
matplotlib set up for files (:func:`pyplot`).

Every table a tool writes (``summary``, ``report``, ``results``, ``reproductions``, ``bench``, ``bench_input``, the
weights coverage) goes through :func:`markdown_table` / :func:`text_table`; run and benchmark records name their
machine with :func:`cpu_model` / :func:`describe_machine`.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Sequence
from typing import Any


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_machine(*, libraries: bool = True) -> str:
    """The machine a figure was measured on: the first JAX device, the host's cores and CPU model, and (with
    ``libraries``) the versions of jax, jaxlib, flax and of keras / torch where they are loaded."""
    import jax

    device = jax.devices()[0]
    text = f"{device.platform}:{device.device_kind}; {os.cpu_count()} x {cpu_model()} ({platform.machine()})"
    if not libraries:
        return text
    import flax

    versions = [f"python {platform.python_version()}", f"jax {jax.__version__}", f"jaxlib {jax.lib.__version__}",
                f"flax {flax.__version__}"]
    versions += [f"{name} {sys.modules[name].__version__}" for name in ("keras", "torch") if name in sys.modules]
    return f"{text}; " + ", ".join(versions)


def pyplot():
    """matplotlib's pyplot on the non-interactive Agg backend (the tools write files; no display is needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]], *,
                   numeric: Sequence[bool] | None = None) -> list[str]:
    """The lines of a markdown table; ``numeric`` columns are right-aligned."""
    numeric = numeric or [False] * len(header)
    rule = ["---:" if n else "---" for n in numeric]
    return ["| " + " | ".join(str(c) for c in cells) + " |" for cells in (header, rule, *rows)]


def text_table(header: Sequence[str], rows: Sequence[Sequence[Any]], *, numeric: Sequence[bool] | None = None) -> str:
    """Plain text with aligned columns (``numeric`` ones right-aligned) under a dashed rule."""
    numeric = numeric or [False] * len(header)
    cells = [[str(c) for c in row] for row in (header, *rows)]
    widths = [max(len(c) for c in column) for column in zip(*cells, strict=True)]

    def line(row: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if n else c.ljust(w) for c, w, n in zip(row, widths, numeric, strict=True)).rstrip()

    return "\n".join([line(cells[0]), line(["-" * w for w in widths]), *(line(r) for r in cells[1:])])
