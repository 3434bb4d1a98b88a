"""The command line of ``python -m cnn_jax.tools.sweep`` (``cnn-jax-sweep``)."""

from __future__ import annotations

import argparse
import pathlib
import sys
from collections.abc import Sequence

from cnn_jax.tools.sweep.emit import submit_slurm, write_scripts
from cnn_jax.tools.sweep.run import run_sweep

DESCRIPTION = ("Run a sweep study locally, as one shell script, or as chained SLURM job arrays; then tabulate and "
               "plot it.")


def _seed_list(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds {text!r}: expected comma-separated integers, e.g. 0,1,2") from None
    if not seeds:
        raise argparse.ArgumentTypeError("--seeds: no seed given")
    return seeds


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cnn_jax.tools.sweep", description=DESCRIPTION,
                                     epilog="Any --config.key=value is applied to every run.")
    parser.add_argument("sweep", help="sweep file, path.py[:key=value,...]")
    parser.add_argument("--workdir", required=True, help="root directory; each run trains in DIR/<run name>")
    parser.add_argument("--seeds", type=_seed_list, help="repeat every run once per seed, e.g. 0,1,2 (default: the "
                        "sweep file's SEEDS, else one run per point)")
    parser.add_argument("--emit", choices=("shell", "slurm"), help="write the study as a shell script (to --out or "
                        "stdout) or as SLURM scripts (in DIR/slurm) instead of running it")
    parser.add_argument("--submit", choices=("slurm",), help="write the SLURM scripts and submit them, chained")
    parser.add_argument("--out", type=pathlib.Path, help="with --emit shell: write the script to this file")
    parser.add_argument("--plan", metavar="STAGE", help="(the job between stages) plan STAGE from the earlier "
                        "results and write DIR/plan/STAGE.commands")
    parser.add_argument("--summary-only", action="store_true", help="only tabulate and plot the runs on disk")
    parser.add_argument("--x", default="macs", help="x axis of the plot: macs, params, resolution or a config key "
                        "(e.g. optimizer.base_lr)")
    parser.add_argument("--base-config", help="use this experiment config instead of the sweep file's BASE_CONFIG")
    parser.add_argument("--python", default="python", help="interpreter in emitted commands")
    parser.add_argument("--slurm-arg", action="append", default=[], help="extra '#SBATCH' line, e.g. --gres=gpu:1")
    parser.add_argument("--max-parallel", type=int, help="SLURM array concurrency limit (%%N)")
    args, rest = parser.parse_known_args(argv)
    emit = args.emit or args.submit
    to_stdout = args.emit == "shell" and args.out is None
    log = (lambda text: print(text, file=sys.stderr)) if to_stdout else print
    try:
        result = run_sweep(args.sweep, args.workdir, rest, seeds=args.seeds, emit=emit, plan=args.plan,
                           summary_only=args.summary_only, base_config=args.base_config, python=args.python,
                           sbatch_args=args.slurm_arg, max_parallel=args.max_parallel, x=args.x, log=log)
        emitted = result["emitted"]
        if emit == "shell":
            if args.out:
                write_scripts({args.out.name: emitted}, args.out.parent)
                log(f"wrote {args.out}: bash {args.out}")
            else:
                sys.stdout.write(emitted)
        elif emit == "slurm":
            directory = pathlib.Path(args.workdir).absolute() / "slurm"
            if args.submit:
                submit_slurm(emitted, directory, log)
            else:
                write_scripts(emitted, directory)
                log(f"wrote {', '.join(sorted(emitted))} in {directory}; submit with: bash {directory}/submit.sh")
    except (FileNotFoundError, AttributeError, KeyError, TypeError, ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if not emit and args.plan is None:
        summary = pathlib.Path(args.workdir) / "summary.md"
        log(f"summary: {summary}")
        log(summary.read_text())
    if result["stopped"]:
        print(f"error: {result['stopped']}", file=sys.stderr)
        return 2
    return 0
