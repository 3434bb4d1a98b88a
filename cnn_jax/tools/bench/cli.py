"""The command line and the tables of ``python -m cnn_jax.tools.bench``."""

from __future__ import annotations

import argparse
import gc
import itertools
import os
import statistics
import sys

import cnn_jax
from cnn_jax.reporting import describe_machine
from cnn_jax.runtime import allocator
from cnn_jax.tools.bench.measure import (
    FIRST_STEP_MARK,
    WARM_CACHE,
    Result,
    contender_builders,
    first_step_in_fresh_processes,
    format_cell,
    matmul_peak_flops,
    measure,
    parse_variant,
)
from cnn_jax.tools.bench.peers import DTYPES, MODES, PEERS


def main(argv: list[str] | None = None) -> dict[tuple[str, str], dict[str, Result]]:
    parser = argparse.ArgumentParser(prog="python -m cnn_jax.tools.bench", description="Train-step and inference "
                                     "throughput of our models against Keras 3 on JAX and PyTorch eager, one process.")
    parser.add_argument("--model", nargs="+", required=True, help=f"registered model names; peers: {sorted(PEERS)}")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--dtype", choices=DTYPES, default="float32")
    parser.add_argument("--peers", default="", help="comma-separated: keras,torch")
    parser.add_argument("--mode", default="train,infer", help="comma-separated: train,infer")
    parser.add_argument("--windows", type=int, default=5,
                        help="timed windows per contender (median reported); 0: only --first-step-runs")
    parser.add_argument("--steps", type=int, default=1, help="steps per timed window")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps after the first")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME:K=V,...",
                        help="also time ours compiled with these XLA options (repeatable)")
    parser.add_argument("--plain", action="store_true",
                        help="also time ours without the XLA:CPU conv/pool rewrites (cnn_jax.ops.conv_ops)")
    parser.add_argument("--xla-convs", action="store_true",
                        help="also time ours with XLA's dense convolutions instead of oneDNN's (cnn_jax.ops.onednn)")
    parser.add_argument("--matmul-size", type=int, default=4096, help="square matmul that measures the peak")
    parser.add_argument("--first-step-runs", type=int, default=0, metavar="N",
                        help="also time launch-to-first-step of every contender in N fresh processes each")
    parser.add_argument("--malloc", choices=allocator.MODES, default="auto",
                        help="memory allocator of this process and the fresh ones (cnn_jax.runtime.allocator, as "
                        "launch.py)")
    parser.add_argument("--first-step-of", metavar="CONTENDER", help=argparse.SUPPRESS)  # the fresh process's job
    args = parser.parse_args(argv)
    peers = [p for p in args.peers.split(",") if p]
    modes = [m for m in args.mode.split(",") if m]
    for mode in modes:
        if mode not in MODES:
            parser.error(f"--mode {mode!r}; expected some of {','.join(MODES)}")
    for model_name in args.model:
        cnn_jax.model_info(model_name)  # unknown names fail here, before anything compiles
    variants = [parse_variant(v) for v in args.variant]
    if not args.windows and not args.first_step_runs:
        parser.error("--windows 0 measures only launch-to-first-step: give --first-step-runs N too")
    if args.first_step_of:
        builders = contender_builders(args.model[0], modes[0], batch=args.batch, resolution=args.resolution,
                             dtype=args.dtype, peers=peers, variants=variants, plain=args.plain,
                             xla_convs=args.xla_convs)
        if args.first_step_of not in builders:
            parser.error(f"--first-step-of {args.first_step_of!r}; expected one of {sorted(builders)}")
        contender = builders[args.first_step_of]()
        print(FIRST_STEP_MARK, f"{contender.first_step_run_s:.6f}", flush=True)
        return {}

    print("# command: python -m cnn_jax.tools.bench " + " ".join(sys.argv[1:] if argv is None else argv))
    if os.environ.get("XLA_FLAGS"):
        print(f"# XLA_FLAGS={os.environ['XLA_FLAGS']} (not XLA's defaults)")
    print(f"# allocator: {allocator.active_allocator()} (--malloc={args.malloc}); "
          f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    results: dict[tuple[str, str], dict[str, Result]] = {}
    if args.windows:
        # The matmul peak is measured before each model and at the end, the best kept: load only lowers it. It is
        # measured in each compute dtype of the table (bf16 runs have an ours-float32 row), since a GPU's bf16
        # tensor-core peak is several times its fp32 one.
        peak_dtypes = sorted({"float32", args.dtype})
        peaks: dict[str, list[float]] = {d: [] for d in peak_dtypes}

        def measure_peaks():
            for d in peak_dtypes:
                peaks[d].append(matmul_peak_flops(args.matmul_size, dtype=d))

        for model_name in args.model:
            measure_peaks()
            for mode in modes:
                res = measure(model_name, mode, batch=args.batch, resolution=args.resolution, dtype=args.dtype,
                              peers=peers, variants=variants, plain=args.plain, xla_convs=args.xla_convs,
                              windows=args.windows, steps=args.steps, warmup=args.warmup)
                results[(model_name, mode)] = res
                for name, r in res.items():
                    print(f"#   {model_name} {mode} {name}: {r.images_per_s:.2f} img/s", file=sys.stderr, flush=True)
                gc.collect()
        measure_peaks()
        peak = {d: max(p) for d, p in peaks.items()}
        for d in peak_dtypes:
            print(f"# {d} matmul peak ({args.matmul_size}^2, jitted): {peak[d] / 1e9:.0f} GFLOP/s (best of "
                  + ", ".join(f"{p / 1e9:.0f}" for p in peaks[d]) + ")")
        print("model | mode | contender | first step s | compile s | img/s (spread) | peak MiB | GFLOP/s | % of peak "
              "| ours / contender")
        print("---|---|---|---|---|---|---|---|---|---")
        for (model_name, mode), res in results.items():
            base = res["ours"].images_per_s
            for name, r in res.items():
                achieved = r.flops_per_image * r.images_per_s
                print(f"{model_name} | {mode} | {name} | {r.first_step_s:.1f} | {format_cell(r.compile_s, '.1f')} | "
                      f"{r.images_per_s:.2f} ({r.spread:.0%}) | {format_cell(r.peak_bytes / 2**20, '.0f')} | "
                      f"{format_cell(achieved / 1e9, '.1f')} | {format_cell(100 * achieved / peak[r.dtype], '.1f')} | "
                      f"{base / r.images_per_s:.2f}")
    if args.first_step_runs:
        print(f"launch to first step, fresh process per run ({args.first_step_runs} runs each, alternating) | "
              "median s (min-max) | ours s / contender s | of which the first step ran s | ready to step s "
              "(launch to first step - its run) | ours ready s / contender ready s")
        print("---|---|---|---|---|---")
        for model_name, mode in itertools.product(args.model, modes):
            contenders = ["ours", WARM_CACHE, *(["ours-plain"] if args.plain else []),
                          *(["ours-xla-convs"] if args.xla_convs else []), *peers]
            seconds = first_step_in_fresh_processes(model_name, mode, contenders, runs=args.first_step_runs,
                                                    batch=args.batch, resolution=args.resolution, dtype=args.dtype)
            base = statistics.median(s.total_s for s in seconds["ours"])
            base_ready = statistics.median(s.ready_s for s in seconds["ours"])
            for name, runs in seconds.items():
                totals, ready = [s.total_s for s in runs], statistics.median(s.ready_s for s in runs)
                median = statistics.median(totals)
                print(f"{model_name} {mode} {name} | {median:.1f} ({min(totals):.1f}-{max(totals):.1f}) | "
                      f"{base / median:.2f} | {statistics.median(s.step_s for s in runs):.3g} | {ready:.1f} | "
                      f"{base_ready / ready:.2f}")
    print(f"# {describe_machine()}; batch {args.batch}, {args.resolution}x{args.resolution}, {args.dtype}")
    print(f"# load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return results
