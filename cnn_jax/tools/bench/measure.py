"""Timing the contenders: interleaved windows, the matmul peak, and launch-to-first-step in fresh processes."""

from __future__ import annotations

import dataclasses
import gc
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from cnn_jax.config import parse_value
from cnn_jax.ops import conv_ops
from cnn_jax.runtime import allocator
from cnn_jax.tools.bench.peers import (
    DTYPES,
    MODES,
    Contender,
    keras_peer,
    ours,
    synthetic_batch,
    task,
    torch_peer,
)


@dataclasses.dataclass(frozen=True)
class Result:
    first_step_s: float
    compile_s: float
    images_per_s: float
    spread: float
    peak_bytes: float
    flops_per_image: float
    dtype: str


def matmul_peak_flops(size: int = 4096, repeats: int = 5, dtype: str = "float32") -> float:
    """This host's matmul FLOP/s in ``dtype``: the best of ``repeats`` timed ``size x size`` jitted matmuls."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r}; expected one of {DTYPES}")
    a = jax.random.normal(jax.random.key(0), (size, size), dtype)
    b = jax.random.normal(jax.random.key(1), (size, size), dtype)
    matmul = jax.jit(jnp.matmul)
    matmul(a, b).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, b).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 / best


def _time_window(contender: Contender, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        contender.step()
    contender.sync()
    return time.perf_counter() - start


def parse_variant(text: str) -> tuple[str, dict[str, Any]]:
    """``"NAME:KEY=VALUE,KEY=VALUE"`` -> ``(NAME, {KEY: VALUE})`` (XLA compiler options for an extra ``ours``, or
    ``model.FIELD`` model overrides); values as ``cnn_jax.config.parse_value`` reads them (``true``/``false``,
    numbers and literals; other text as is). A repeated enum option takes
    ``|``-separated values."""
    name, sep, rest = text.partition(":")
    options = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ValueError(f"--variant {text!r}: expected NAME:KEY=VALUE[,KEY=VALUE...], got item {item!r}")
        # XLA parses booleans only from Python bools (or "True"/"False"), so "true" becomes True.
        options[key.strip()] = parse_value(value.strip().replace("|", ","))
    if not sep or not name or not options:
        raise ValueError(f"--variant {text!r}: expected NAME:KEY=VALUE[,KEY=VALUE...]")
    return name, options


def contender_builders(model_name: str, mode: str, *, batch: int, resolution: int, dtype: str,
              peers: Sequence[str], variants: Sequence[tuple[str, dict[str, Any]]],
              plain: bool, xla_convs: bool = False) -> dict[str, Callable[[], Contender]]:
    """``{contender name: build}``; ``build()`` constructs, compiles and runs the first step."""
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}; expected one of {MODES}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r}; expected one of {DTYPES}")
    classes, channels = task(model_name)
    images, labels = synthetic_batch(batch, resolution, channels, classes)
    builders: dict[str, Callable[[], Contender]] = {"ours": lambda: ours(model_name, mode, images, labels,
                                                                         dtype=dtype)}
    for name, options in variants:
        builders[name] = lambda name=name, options=options: ours(model_name, mode, images, labels, dtype=dtype,
                                                                 options=options, name=name)
    if dtype != "float32":  # the same-run reference for what the lower precision buys
        builders["ours-float32"] = lambda: ours(model_name, mode, images, labels, name="ours-float32")
    if plain:
        def build_plain() -> Contender:
            with conv_ops.rewrites(False):
                return ours(model_name, mode, images, labels, dtype=dtype, name="ours-plain")

        builders["ours-plain"] = build_plain
    if xla_convs:
        def build_xla_convs() -> Contender:
            with conv_ops.rewrites(True, onednn_convs=False):
                return ours(model_name, mode, images, labels, dtype=dtype, name="ours-xla-convs")

        builders["ours-xla-convs"] = build_xla_convs
    peer_builders = {"keras": keras_peer, "torch": torch_peer}
    for peer in peers:
        if peer not in peer_builders:
            raise ValueError(f"unknown peer {peer!r}; expected some of {sorted(peer_builders)}")
        builders[peer] = lambda peer=peer: peer_builders[peer](model_name, mode, images, labels, dtype=dtype)
    return builders


FIRST_STEP_MARK = "first step finished, seconds it ran:"


WARM_CACHE = "ours-warm-cache"


@dataclasses.dataclass(frozen=True)
class FirstStep:
    """Launch of a fresh process to its first finished step, and the part of it the step itself ran."""

    total_s: float
    step_s: float

    @property
    def ready_s(self) -> float:
        """Launch to the moment the first step could start (imports, construction, initialisation, compilation)."""
        return self.total_s - self.step_s


def first_step_in_fresh_processes(model_name: str, mode: str, contenders: Sequence[str], *, runs: int,
                                  batch: int, resolution: int, dtype: str) -> dict[str, list[FirstStep]]:
    """``{contender: [FirstStep]}`` from launching a fresh Python process to its first finished step.

    What a user waits for after typing the command: interpreter start, imports, model construction, variable
    initialisation, compilation, one step (whose own run time the process reports, so the time until it could
    start is known too). One process per measurement, contenders alternating round by round so
    load from other processes hits all alike; nothing is shared between them (no warm import or compile cache),
    except for ``ours-warm-cache``: ours relaunched with JAX's persistent compilation cache filled by an untimed
    launch first, as ``launch.py`` relaunches after a preemption (its default ``--compilation_cache_dir``).
    """
    cold = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    with tempfile.TemporaryDirectory(prefix="bench_xla_cache_") as cache:
        warm = cold | {"JAX_COMPILATION_CACHE_DIR": cache}  # JAX's defaults otherwise, as launch.py uses them

        def launch(name: str) -> FirstStep:
            command = [sys.executable, "-m", "cnn_jax.tools.bench", "--model", model_name, "--mode", mode,
                       "--batch", str(batch), "--resolution", str(resolution), "--dtype", dtype,
                       "--first-step-of", "ours" if name == WARM_CACHE else name,
                       # the allocator this process runs on (the children inherit its LD_PRELOAD)
                       "--malloc", "system" if allocator.active_allocator() == "system" else "auto"]
            if name in ("keras", "torch"):
                command += ["--peers", name]
            if name == "ours-plain":
                command.append("--plain")
            if name == "ours-xla-convs":
                command.append("--xla-convs")
            started = time.perf_counter()
            with subprocess.Popen(command, stdout=subprocess.PIPE, text=True,
                                  env=warm if name == WARM_CACHE else cold) as child:
                for line in child.stdout:
                    if line.startswith(FIRST_STEP_MARK):
                        total = time.perf_counter() - started
                        child.kill()  # its exit (freeing the runtime) is not part of the wait
                        return FirstStep(total, float(line[len(FIRST_STEP_MARK):]))
            raise RuntimeError(f"{' '.join(command)} exited with {child.returncode} before its first step")

        if WARM_CACHE in contenders:
            launch(WARM_CACHE)  # fills the cache
        seconds: dict[str, list[FirstStep]] = {name: [] for name in contenders}
        for _ in range(runs):
            for name in contenders:
                seconds[name].append(launch(name))
            print(f"#   {model_name} {mode} first step in a fresh process: " + ", ".join(
                f"{name} {seconds[name][-1].total_s:.1f} s (step {seconds[name][-1].step_s:.1f} s)"
                for name in contenders), file=sys.stderr, flush=True)
    return seconds


def measure(model_name: str, mode: str, *, batch: int, resolution: int, dtype: str = "float32",
            peers: Sequence[str] = (), variants: Sequence[tuple[str, dict[str, Any]]] = (), plain: bool = False,
            xla_convs: bool = False, windows: int = 5, steps: int = 1, warmup: int = 1) -> dict[str, Result]:
    """``{contender: Result}`` for one model and mode; timed windows are interleaved across contenders.

    ``plain`` adds ``ours-plain``: our model traced without the XLA:CPU rewrites of ``cnn_jax.ops.conv_ops``.
    """
    builders = contender_builders(model_name, mode, batch=batch, resolution=resolution, dtype=dtype, peers=peers,
                         variants=variants, plain=plain, xla_convs=xla_convs)
    contenders = []
    for build in builders.values():
        contenders.append(build())
        c = contenders[-1]
        print(f"#   {model_name} {mode} {c.name}: first step after {c.first_step_s:.1f} s "
              f"(compile {format_cell(c.compile_s, '.1f')} s)", file=sys.stderr, flush=True)
        gc.collect()
    for contender in contenders:
        for _ in range(warmup):
            _time_window(contender, 1)
    seconds: dict[str, list[float]] = {c.name: [] for c in contenders}
    for _ in range(windows):
        for contender in contenders:
            seconds[contender.name].append(_time_window(contender, steps))
    work = contenders[0].count_flops() / batch  # our model's flops per image, charged to every contender
    results = {}
    for contender in contenders:
        rates = [steps * batch / s for s in seconds[contender.name]]
        median = statistics.median(rates)
        results[contender.name] = Result(contender.first_step_s, contender.compile_s, median,
                                         (max(rates) - min(rates)) / median, contender.peak_bytes, work,
                                         contender.dtype)
    return results


def format_cell(value: float, fmt: str) -> str:
    return "–" if value != value else format(value, fmt)  # NaN -> dash
