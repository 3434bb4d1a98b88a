"""Run a sweep locally, or write its launch commands for a cluster; then tabulate and plot its results.

A sweep file (``experiments/sweeps/*.py``) holds ``BASE_CONFIG`` (an experiment config path, relative to the
repository root) and either ``get_sweep(**args) -> list[dict]`` (one stage) or ``get_stages(**args) ->
list[cnn_jax.sweeps.Stage]`` (stages that see the results of the earlier ones, e.g. search then scale).
``path.py:key=value,...`` passes arguments to it::

  python -m cnn_jax.tools.sweep experiments/sweeps/efficientnet_compound.py --workdir /tmp/compound
  python -m cnn_jax.tools.sweep experiments/sweeps/lenet_lr.py --workdir DIR --config.train.num_steps=50
  python -m cnn_jax.tools.sweep experiments/sweeps/lenet_lr.py --workdir DIR --emit shell > commands.sh
  python -m cnn_jax.tools.sweep experiments/sweeps/lenet_lr.py --workdir DIR --emit slurm --slurm-arg=--gres=gpu:1
  python -m cnn_jax.tools.sweep experiments/sweeps/lenet_lr.py --workdir DIR --summary-only

Every run trains in ``DIR/[stage/]<run name>`` with its overrides applied to the locked base config (then the
``--config.key=value`` arguments, applied to every run). All run configs are built and their models constructed
before anything trains, so an unknown key or model argument fails at once. A run is *finished* when it has
``final_metrics.json`` (written here) or its ``metrics.jsonl`` holds an eval at the final step (a run launched from
the emitted commands); finished runs are skipped on relaunch. ``DIR/summary.{csv,md}`` collect every run's final
metrics, parameters and MACs (``cnn_jax.analysis``), and ``DIR/summary.{png,svg}`` plots top-1 against MACs.
"""

from __future__ import annotations

import argparse
import ast
import csv
import dataclasses
import importlib.util
import json
import pathlib
import shlex
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ml_collections

from cnn_jax import sweeps

REPO = pathlib.Path(__file__).resolve().parents[2]
FINAL = "final_metrics.json"
METRIC_KEYS = ("eval/top1", "eval/top5", "eval/loss")


# ---------------------------------------------------------------------------------------------------------------
# Loading sweep and config files.


def _split_args(path: str) -> tuple[pathlib.Path, str | None]:
    file, _, arg = str(path).partition(":")
    return pathlib.Path(file), (arg or None)


def _resolve(path: pathlib.Path) -> pathlib.Path:
    if path.is_absolute() or path.exists():
        return path
    if (REPO / path).exists():
        return REPO / path
    raise FileNotFoundError(f"{path}: no such file (looked in {pathlib.Path.cwd()} and {REPO})")


def _import_file(path: pathlib.Path, name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    if str(REPO) not in sys.path:  # configs import experiments.common
        sys.path.insert(0, str(REPO))
    spec.loader.exec_module(module)
    return module


def parse_sweep_args(text: str | None) -> dict[str, Any]:
    """``"tolerance=0.05,max_phi=4"`` -> ``{"tolerance": 0.05, "max_phi": 4}`` (values as Python literals)."""
    if not text:
        return {}
    items, depth, current = [], 0, ""
    for char in text:  # split on commas outside brackets: "lrs=[0.1,0.2],seeds=(0,1)"
        depth += char in "([{"
        depth -= char in ")]}"
        if char == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += char
    items.append(current)
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"sweep argument {item!r}: expected key=value")
        out[key.strip()] = _literal(value.strip())
    return out


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


@dataclasses.dataclass
class SweepFile:
    path: pathlib.Path
    base_config: str
    stages: list[sweeps.Stage]
    single_stage: bool


def load_sweep(spec: str) -> SweepFile:
    """Imports a sweep file (``path.py[:k=v,...]``) and returns its base config path and stages."""
    file, arg = _split_args(spec)
    path = _resolve(file)
    module = _import_file(path, f"cnn_jax_sweep_{path.stem}")
    kwargs = parse_sweep_args(arg)
    base = getattr(module, "BASE_CONFIG", None)
    if not isinstance(base, str):
        raise AttributeError(f"{path}: a sweep file must define BASE_CONFIG = 'experiments/...py' (the base config)")
    if hasattr(module, "get_stages"):
        stages = list(module.get_stages(**kwargs))
        if not stages or not all(isinstance(s, sweeps.Stage) for s in stages):
            raise TypeError(f"{path}: get_stages() must return a non-empty list of cnn_jax.sweeps.Stage")
        names = [s.name for s in stages]
        if len(set(names)) != len(names):
            raise ValueError(f"{path}: stage names must be unique; got {names}")
        return SweepFile(path, base, stages, single_stage=False)
    if hasattr(module, "get_sweep"):
        runs = list(module.get_sweep(**kwargs))
        return SweepFile(path, base, [sweeps.Stage("runs", lambda previous: runs)], single_stage=True)
    raise AttributeError(f"{path}: a sweep file must define get_sweep() or get_stages()")


def load_config(spec: str) -> ml_collections.ConfigDict:
    """An experiment config ``path.py[:arg]`` (``get_config()`` / ``get_config(arg)``), locked."""
    file, arg = _split_args(spec)
    path = _resolve(file)
    module = _import_file(path, f"cnn_jax_config_{path.stem}")
    config = module.get_config(arg) if arg is not None else module.get_config()
    config.lock()
    return config


def parse_cli_overrides(args: Sequence[str], config: ml_collections.ConfigDict) -> dict[str, Any]:
    """``--config.key=value`` arguments as typed overrides (the type of the config field decides the parsing)."""
    out = {}
    for arg in args:
        if not arg.startswith("--config.") or "=" not in arg:
            raise ValueError(f"unexpected argument {arg!r}; expected --config.key=value")
        key, value = arg[len("--config."):].split("=", 1)
        out[key] = _typed(config, key, value)
    sweeps.apply_overrides(config, out)  # unknown keys fail here, before any run
    return out


def _typed(config: ml_collections.ConfigDict, key: str, text: str) -> Any:
    node = config
    *parents, leaf = key.split(".")
    try:
        for part in parents:
            node = node[part]
        field_type = node.get_type(leaf) if leaf in node else None
    except (KeyError, AttributeError):
        field_type = None
    if field_type is bool:
        if text.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"--config.{key}={text}: expected true or false")
        return text.lower() in ("true", "1")
    if field_type in (int, float):
        try:
            return field_type(text) if field_type is float else int(text)
        except ValueError:
            raise ValueError(f"--config.{key}={text}: expected {field_type.__name__}") from None
    if field_type is str:
        return text
    return _literal(text)


# ---------------------------------------------------------------------------------------------------------------
# Runs.


@dataclasses.dataclass
class PlannedRun:
    name: str  # relative workdir: "<stage>/<run>" or "<run>"
    stage: str
    overrides: dict[str, Any]
    config: ml_collections.ConfigDict

    def workdir(self, root: pathlib.Path) -> pathlib.Path:
        return root / self.name


def plan_stage(sweep: SweepFile, stage: sweeps.Stage, base: ml_collections.ConfigDict, cli: Mapping[str, Any],
               previous: list[dict[str, Any]], *, check_models: bool = True) -> list[PlannedRun]:
    """The runs of one stage with their configs; every config is checked (keys, model arguments) here."""
    from cnn_jax.train.loop import build_model

    runs = stage.runs(previous)
    planned, seen = [], set()
    for index, overrides in enumerate(runs):
        overrides = {**overrides, "_stage": stage.name}
        try:
            config = sweeps.apply_overrides(base, {**overrides, **cli})
            if check_models:
                build_model(config)  # unknown model arguments raise here, not after hours of other runs
        except (KeyError, TypeError, ValueError) as error:
            raise type(error)(f"{sweep.path} stage {stage.name!r} run {index} {sweeps.config_keys(overrides)}: "
                              f"{error}") from None
        name = sweeps.run_name(index, overrides)
        name = name if sweep.single_stage else f"{stage.name}/{name}"
        if name in seen:
            raise ValueError(f"{sweep.path}: two runs are named {name!r}; give them distinct '_name' labels")
        seen.add(name)
        planned.append(PlannedRun(name, stage.name, overrides, config))
    return planned


_TOTAL_STEPS_CACHE: dict[tuple, int] = {}


def total_steps(config: ml_collections.ConfigDict) -> int:
    """The run's final step (``Schedule.resolve``; an epoch-based run loads the dataset once to count it)."""
    if config.train.num_steps is not None:
        return int(config.train.num_steps)
    from cnn_jax.data import sources
    from cnn_jax.train.loop import Schedule

    key = (config.data.name, config.data.data_dir, config.data.max_train_examples)
    if key not in _TOTAL_STEPS_CACHE:
        dataset = sources.load_dataset(config.data.name, config.data.data_dir, manual_dir=config.data.manual_dir,
                                       train_split=config.data.train_split).subset(config.data.max_train_examples)
        _TOTAL_STEPS_CACHE[key] = len(dataset.train)
    return Schedule.resolve(config, _TOTAL_STEPS_CACHE[key]).total_steps


def final_metrics(run: PlannedRun, root: pathlib.Path) -> dict[str, float] | None:
    """The run's final eval metrics if it finished, else None."""
    workdir = run.workdir(root)
    marker = workdir / FINAL
    if marker.exists():
        return json.loads(marker.read_text())["metrics"]
    log = workdir / "metrics.jsonl"
    if not log.exists():
        return None
    from cnn_jax.train.metrics import read_metrics

    evals = [r for r in read_metrics(workdir) if "eval/top1" in r]
    if evals and evals[-1]["step"] >= total_steps(run.config):
        return {k: v for k, v in evals[-1].items() if k.startswith("eval/")}
    return None


def execute(run: PlannedRun, root: pathlib.Path) -> dict[str, float] | None:
    """Trains one run (resuming from its workdir); if it reached its last step, writes ``final_metrics.json`` and
    returns the final metrics, else (SIGTERM, ``train.stop_after_steps``) returns None."""
    from cnn_jax.train.loop import train_and_evaluate

    workdir = run.workdir(root)
    start = time.time()
    train_and_evaluate(run.config, workdir)
    metrics = final_metrics(run, root)  # from metrics.jsonl: an eval at the last step, or None
    if metrics is None:
        return None
    record = {"metrics": metrics, "overrides": run.overrides, "wall_s": time.time() - start}
    (workdir / FINAL).write_text(json.dumps(record, indent=2, default=str))
    return metrics


# ---------------------------------------------------------------------------------------------------------------
# Emitting launch commands.


def _cli_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return repr(value)


def launch_command(run: PlannedRun, root: pathlib.Path, base_config: str, cli_args: Sequence[str],
                   python: str = "python") -> str:
    """One ``launch.py`` command line for ``run`` (overrides as ``--config.key=value``, shell-quoted)."""
    parts = [python, "launch.py", "--config", base_config, "--workdir", str(run.workdir(root))]
    parts += [f"--config.{k}={_cli_value(v)}" for k, v in sweeps.config_keys(run.overrides).items()]
    parts += list(cli_args)
    return " ".join(shlex.quote(p) for p in parts)


def slurm_script(commands: Sequence[str], *, job_name: str, log_dir: pathlib.Path, sbatch_args: Sequence[str] = (),
                 max_parallel: int | None = None) -> str:
    """A SLURM array job: task ``i`` runs ``commands[i]`` from the repository root."""
    if not commands:
        raise ValueError("no command to put in a SLURM array (every run is finished?)")
    limit = f"%{max_parallel}" if max_parallel else ""
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name={job_name}",
        f"#SBATCH --array=0-{len(commands) - 1}{limit}",
        f"#SBATCH --output={log_dir}/slurm-%A_%a.out",
        *(f"#SBATCH {a}" for a in sbatch_args),
        "set -euo pipefail",
        f"cd {shlex.quote(str(REPO))}",
        "COMMANDS=(",
        *(f"  {shlex.quote(c)}" for c in commands),
        ")",
        'echo "task ${SLURM_ARRAY_TASK_ID}: ${COMMANDS[$SLURM_ARRAY_TASK_ID]}"',
        'eval "${COMMANDS[$SLURM_ARRAY_TASK_ID]}"',
        "",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# Summary.


_SIZE_CACHE: dict[str, tuple[int, int]] = {}


def run_size(config: ml_collections.ConfigDict) -> tuple[int, int]:
    """(parameters, MACs per image) of a run's model at its input size (an abstract trace; nothing is computed)."""
    from cnn_jax.analysis import analyze
    from cnn_jax.train.loop import build_model

    key = json.dumps([config.model.to_dict(), config.data.image_size], sort_keys=True, default=str)
    if key not in _SIZE_CACHE:
        model = build_model(config)
        stats = analyze(model, config.data.image_size, in_channels=model.in_channels)
        _SIZE_CACHE[key] = (stats.params, stats.macs)
    return _SIZE_CACHE[key]


def summary_rows(runs: Sequence[PlannedRun], root: pathlib.Path) -> list[dict[str, Any]]:
    """One row per run: name, stage, series, overrides, status, final metrics, params, MACs."""
    rows = []
    for run in runs:
        metrics = final_metrics(run, root)
        params, macs = run_size(run.config)
        rows.append({
            "run": run.name,
            "stage": run.stage,
            "series": run.overrides.get("_series", run.stage),
            "overrides": sweeps.config_keys(run.overrides),
            "status": "finished" if metrics is not None else "pending",
            "metrics": metrics or {},
            "params": params,
            "macs": macs,
            "resolution": run.config.data.image_size,
        })
    return rows


def _override_columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row["overrides"] if k not in keys]
    return keys


def write_summary(rows: Sequence[Mapping[str, Any]], root: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """``summary.csv`` (full precision) and ``summary.md`` in ``root``."""
    keys = _override_columns(rows)
    header = ["run", "stage", "series", *keys, "status", *METRIC_KEYS, "params", "macs", "resolution"]
    table = []
    for row in rows:
        table.append([row["run"], row["stage"], row["series"], *(row["overrides"].get(k, "") for k in keys),
                      row["status"], *(row["metrics"].get(m, "") for m in METRIC_KEYS), row["params"], row["macs"],
                      row["resolution"]])
    csv_path = root / "summary.csv"
    with open(csv_path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(table)

    def fmt(value: Any, column: str) -> str:
        if value == "":
            return "–"
        if column in METRIC_KEYS:
            return f"{value:.4f}"
        if column in ("params", "macs"):
            return f"{value:,}"
        return _cli_value(value) if not isinstance(value, float) else f"{value:g}"

    md = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    md += ["| " + " | ".join(fmt(v, c) for v, c in zip(r, header, strict=True)) + " |" for r in table]
    md_path = root / "summary.md"
    md_path.write_text("\n".join(md) + "\n")
    return csv_path, md_path


def plot_summary(rows: Sequence[Mapping[str, Any]], root: pathlib.Path, title: str) -> list[pathlib.Path]:
    """Top-1 against MACs for every finished run (``summary.png`` and ``.svg``); one colour per series, series
    other than a search stage joined in MAC order (scaling curves); the best run is circled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if r["status"] == "finished"]
    if not done:
        return []
    fig, ax = plt.subplots(figsize=(7, 4.5))
    series: dict[str, list[Mapping[str, Any]]] = {}
    for row in done:
        series.setdefault(row["series"], []).append(row)
    for label, members in series.items():
        members = sorted(members, key=lambda r: r["macs"])
        x = [r["macs"] / 1e6 for r in members]
        y = [100 * r["metrics"]["eval/top1"] for r in members]
        style = "o" if label == "search" or len(members) == 1 else "o-"
        ax.plot(x, y, style, label=label, alpha=0.85)
    best = max(done, key=lambda r: r["metrics"]["eval/top1"])
    ax.scatter([best["macs"] / 1e6], [100 * best["metrics"]["eval/top1"]], s=220, facecolors="none",
               edgecolors="black", label=f"best: {best['run']}")
    macs = [r["macs"] for r in done]
    if max(macs) > 5 * min(macs):
        ax.set_xscale("log")
    ax.set_xlabel("MACs per image (millions)")
    ax.set_ylabel("eval top-1 (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    paths = [root / "summary.png", root / "summary.svg"]
    for path in paths:
        fig.savefig(path, dpi=130)
    plt.close(fig)
    return paths


# ---------------------------------------------------------------------------------------------------------------


def _previous(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r["status"] == "finished"]


def run_sweep(spec: str, workdir: str | pathlib.Path, cli_args: Sequence[str] = (), *, emit: str | None = None,
              summary_only: bool = False, base_config: str | None = None, python: str = "python",
              sbatch_args: Sequence[str] = (), max_parallel: int | None = None,
              log: Callable[[str], None] = print) -> dict[str, Any]:
    """Runs (or emits) every stage of a sweep file and writes the summary; returns ``{"rows", "emitted"}``."""
    sweep = load_sweep(spec)
    base_spec = base_config or sweep.base_config
    base = load_config(base_spec)
    cli = parse_cli_overrides(cli_args, base)
    root = pathlib.Path(workdir).absolute()
    root.mkdir(parents=True, exist_ok=True)

    all_runs: list[PlannedRun] = []
    rows: list[dict[str, Any]] = []
    commands: list[str] = []
    interrupted = False
    for stage in sweep.stages:
        if interrupted:
            break
        if any(r["status"] != "finished" for r in rows):
            log(f"# stage {stage.name!r} depends on the results of earlier stages, which are not all finished; "
                "run this again once they are")
            break
        runs = plan_stage(sweep, stage, base, cli, _previous(rows))
        all_runs += runs
        for run in runs:
            metrics = final_metrics(run, root)
            if metrics is not None:
                log(f"[skip] {run.name}: finished (top-1 {metrics.get('eval/top1', float('nan')):.4f})")
            elif emit:
                commands.append(launch_command(run, root, base_spec, cli_args, python))
            elif not summary_only:
                log(f"[run] {run.name} {sweeps.config_keys(run.overrides)}")
                if execute(run, root) is None:
                    # Preempted (SIGTERM) or time-sliced: stop here; a relaunch resumes this run from its checkpoint.
                    log(f"[stopped] {run.name} did not reach its last step; relaunch the sweep to resume it")
                    interrupted = True
                    break
        rows = summary_rows(all_runs, root)
        (root / "sweep.json").write_text(json.dumps(
            {"sweep": str(spec), "base_config": base_spec, "cli": list(cli_args),
             "runs": [{"name": r.name, "stage": r.stage, "overrides": r.overrides} for r in all_runs]},
            indent=2, default=str))

    emitted = None
    if emit == "shell":
        emitted = "\n".join(commands) + ("\n" if commands else "")
    elif emit == "slurm":
        emitted = slurm_script(commands, job_name=f"sweep-{sweep.path.stem}", log_dir=root,
                               sbatch_args=sbatch_args, max_parallel=max_parallel)
    write_summary(rows, root)
    plot_summary(rows, root, f"{sweep.path.stem}: eval top-1 vs MACs")
    return {"rows": rows, "emitted": emitted}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cnn_jax.tools.sweep", description=__doc__.split("\n")[0],
                                     epilog="Any --config.key=value is applied to every run.")
    parser.add_argument("sweep", help="sweep file, path.py[:key=value,...]")
    parser.add_argument("--workdir", required=True, help="root directory; each run trains in DIR/<run name>")
    parser.add_argument("--emit", choices=("shell", "slurm"), help="write launch commands instead of running")
    parser.add_argument("--out", type=pathlib.Path, help="with --emit: write to this file (default: stdout)")
    parser.add_argument("--summary-only", action="store_true", help="only collect the summary of finished runs")
    parser.add_argument("--base-config", help="use this experiment config instead of the sweep file's BASE_CONFIG")
    parser.add_argument("--python", default="python", help="interpreter in emitted commands")
    parser.add_argument("--slurm-arg", action="append", default=[], help="extra '#SBATCH' line, e.g. --gres=gpu:1")
    parser.add_argument("--max-parallel", type=int, help="SLURM array concurrency limit (%%N)")
    args, rest = parser.parse_known_args(argv)
    log = print if not (args.emit and args.out is None) else (lambda text: print(text, file=sys.stderr))
    try:
        result = run_sweep(args.sweep, args.workdir, rest, emit=args.emit, summary_only=args.summary_only,
                           base_config=args.base_config, python=args.python, sbatch_args=args.slurm_arg,
                           max_parallel=args.max_parallel, log=log)
    except (FileNotFoundError, AttributeError, KeyError, TypeError, ValueError) as error:
        parser.error(str(error))
    if result["emitted"] is not None:
        if args.out:
            args.out.write_text(result["emitted"])
            if args.emit == "slurm":
                args.out.chmod(0o755)
            log(f"wrote {args.out}")
        else:
            sys.stdout.write(result["emitted"])
    else:
        log(f"summary: {pathlib.Path(args.workdir) / 'summary.md'}")
        log((pathlib.Path(args.workdir) / "summary.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
