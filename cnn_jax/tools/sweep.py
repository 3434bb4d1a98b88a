"""Run a sweep study locally, as one shell script, or as chained SLURM job arrays; then tabulate and plot it.

A sweep file (``experiments/sweeps/*.py``) holds ``BASE_CONFIG`` (an experiment config path, relative to the
repository root), optionally ``SEEDS`` (every run repeated once per seed; ``--seeds`` overrides it), and either
``get_sweep(**args) -> list[dict]`` (one stage) or ``get_stages(**args) -> list[cnn_jax.sweeps.Stage]`` (stages
that see the results of the earlier ones, e.g. search then scale). ``path.py:key=value,...`` passes arguments::

  python -m cnn_jax.tools.sweep experiments/sweeps/lenet_lr.py --workdir DIR                 # run here, in order
  python -m cnn_jax.tools.sweep SWEEP --workdir DIR --emit shell --out study.sh             # the study as a script
  python -m cnn_jax.tools.sweep SWEEP --workdir DIR --submit slurm --slurm-arg=--gres=gpu:1  # the study on SLURM
  python -m cnn_jax.tools.sweep SWEEP --workdir DIR --summary-only                          # table and plot

Every run trains in ``DIR/[stage/]<run name>`` with its overrides applied to the locked base config (then the
``--config.key=value`` arguments, applied to every run). Every config of a stage is checked before anything of
the stage trains or is submitted (keys, model arguments, dataset, batch layout: ``cnn_jax.train.dry_run``). A run
is *finished* when it has ``final_metrics.json`` (written here) or its ``metrics.jsonl`` holds an eval at the final
step (a run launched by a script or a job); finished runs are skipped on relaunch.

A study is a sequence of jobs: per stage, the launch commands of its unfinished runs (``DIR/plan/<stage>.commands``,
one ``launch.py`` command per line, run in order by the shell script or as one SLURM array task each); between two
stages, a plan job (``--plan <stage>``) that reads the earlier results, picks what to run next (or refuses, e.g. a
search whose winner is within seed noise: ``cnn_jax.sweeps.select_best``) and writes that stage's commands; last, a
summary job (``--summary-only``). SLURM jobs are chained with ``--dependency=afterok`` (the summary: ``afterany``,
so a refused or failed study still gets its table) and ``--kill-on-invalid-dep=yes``.

Outputs in DIR: ``sweep.json`` (every planned run with its config), ``summary.{md,csv}`` (one row per point: runs
that differ only in their seed, top-1/top-5 as mean ± std (n)), ``summary_runs.csv`` (one row per run) and
``summary.{png,svg}`` (top-1 against ``--x``: macs, params, resolution or a config key).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ml_collections

from cnn_jax import sweeps
from cnn_jax.config import (
    UnknownKeyError,
    apply_overrides,
    build_model,
    flatten,
    import_file,
    load_config,
    parse_overrides,
    parse_value,
    resolve_path,
)
from cnn_jax.tools import results
from cnn_jax.tools.results import FINAL

REPO = pathlib.Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------------------------------------------
# Loading sweep and config files.


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
        out[key.strip()] = parse_value(value.strip())
    return out


@dataclasses.dataclass
class SweepFile:
    spec: str  # as given: "path.py[:k=v,...]"
    path: pathlib.Path
    base_config: str
    stages: list[sweeps.Stage]
    single_stage: bool
    seeds: tuple[int, ...] | None  # the file's SEEDS: every run repeated once per seed (None: as planned)


def load_sweep(spec: str) -> SweepFile:
    """Imports a sweep file (``path.py[:k=v,...]``) and returns its base config path and stages."""
    file, _, arg = spec.partition(":")
    path = resolve_path(pathlib.Path(file))
    module = import_file(path, f"cnn_jax_sweep_{path.stem}")
    kwargs = parse_sweep_args(arg)
    base = getattr(module, "BASE_CONFIG", None)
    if not isinstance(base, str):
        raise AttributeError(f"{path}: a sweep file must define BASE_CONFIG = 'experiments/...py' (the base config)")
    seeds = getattr(module, "SEEDS", None)
    seeds = tuple(int(s) for s in seeds) if seeds is not None else None
    if hasattr(module, "get_stages"):
        stages = list(module.get_stages(**kwargs))
        if not stages or not all(isinstance(s, sweeps.Stage) for s in stages):
            raise TypeError(f"{path}: get_stages() must return a non-empty list of cnn_jax.sweeps.Stage")
        names = [s.name for s in stages]
        if len(set(names)) != len(names):
            raise ValueError(f"{path}: stage names must be unique; got {names}")
        return SweepFile(spec, path, base, stages, single_stage=False, seeds=seeds)
    if hasattr(module, "get_sweep"):
        runs = list(module.get_sweep(**kwargs))
        stage = sweeps.Stage(results.SINGLE_STAGE, lambda previous: runs, size=len(runs))
        return SweepFile(spec, path, base, [stage], single_stage=True, seeds=seeds)
    raise AttributeError(f"{path}: a sweep file must define get_sweep() or get_stages()")


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


class PlanError(ValueError):
    """A stage cannot be planned: earlier runs unfinished, the search refused, or a config fails its check."""


def check_configs(planned: Sequence[PlannedRun]) -> None:
    """Validates (``cnn_jax.config``) and dry-runs (``cnn_jax.train.dry_run``: dataset, batch layout, model,
    schedule) every planned config and raises :class:`PlanError` listing every problem, so nothing is submitted or
    trained with a broken point."""
    from cnn_jax.config import config_problems
    from cnn_jax.train.dry_run import dry_run

    problems, checked = [], set()
    for run in planned:
        config = run.config.to_dict()
        config.pop(sweeps.SEED_KEY, None)
        key = json.dumps(config, sort_keys=True, default=str)
        if key in checked:  # another seed of a checked point
            continue
        checked.add(key)
        # Values no run could use first: the dry run's arithmetic assumes them valid (a batch of 0 divides by 0).
        invalid = config_problems(run.config)
        problems += [f"{run.name}: {p}" for p in invalid or dry_run(run.config).problems]
    if problems:
        raise PlanError("the dry run of the planned configs failed:\n  " + "\n  ".join(problems))


def plan_stage(sweep: SweepFile, stage: sweeps.Stage, base: ml_collections.ConfigDict, cli: Mapping[str, Any],
               previous: list[dict[str, Any]], *, seeds: Sequence[int] | None = None,
               check: bool = True) -> list[PlannedRun]:
    """The runs of one stage (each once per seed) with their configs; every config is built (keys, model
    arguments) and, with ``check``, dry-run here."""
    # The index in a run's name is its point's: running more seeds later keeps the names of the runs already done.
    runs = [(index, seeded) for index, run in enumerate(stage.runs(previous))
            for seeded in sweeps.with_seeds([run], seeds)]
    planned, seen = [], set()
    for index, overrides in runs:
        overrides = {**overrides, "_stage": stage.name}
        try:
            config = apply_overrides(base, {**overrides, **cli})
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
    if check:
        check_configs(planned)
    return planned


def record(run: PlannedRun, root: pathlib.Path, sweep_name: str) -> results.RunRecord:
    return results.load_record(run.workdir(root), run.config, name=run.name, sweep=sweep_name, stage=run.stage,
                               overrides=run.overrides)


def execute(run: PlannedRun, root: pathlib.Path, command: str) -> dict[str, float] | None:
    """Trains one run (resuming from its workdir; ``command``, the sweep's, goes to its ``launches.jsonl``); if it
    reached its last step, writes ``final_metrics.json`` and returns the final metrics, else (SIGTERM,
    ``train.stop_after_steps``) returns None."""
    from cnn_jax.train.loop import RunPreempted, train_and_evaluate
    from cnn_jax.train.metrics import record_launch

    workdir = run.workdir(root)
    record_launch(workdir, command)
    start = time.time()
    try:
        train_and_evaluate(run.config, workdir)
    except RunPreempted:
        return None
    progress = results.read_progress(workdir, results.total_steps(run.config))
    if progress["status"] != "finished":
        return None
    final = {"metrics": progress["metrics"], "overrides": run.overrides, "wall_s": time.time() - start}
    (workdir / FINAL).write_text(json.dumps(final, indent=2, default=str))
    return progress["metrics"]


# ---------------------------------------------------------------------------------------------------------------
# Launch commands, the shell script and the SLURM chain.


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


@dataclasses.dataclass(frozen=True)
class Job:
    """One step of a study: an array over a stage's commands file, or a single command (plan, summary)."""

    name: str
    command: str | None = None  # single job
    commands_file: pathlib.Path | None = None  # array job: one launch command per line
    size: int = 1  # array length (tasks past the file's last line exit at once)


def _sweep_command(study: Study, *extra: str) -> str:
    parts = [study.python, "-m", "cnn_jax.tools.sweep", study.sweep.spec, "--workdir", str(study.root)]
    if study.base_spec != study.sweep.base_config:
        parts += ["--base-config", study.base_spec]
    if study.seeds is not None:
        parts += ["--seeds", ",".join(map(str, study.seeds))]
    if study.x != "macs":
        parts += ["--x", study.x]
    if study.python != "python":
        parts += ["--python", study.python]
    return " ".join(shlex.quote(p) for p in [*parts, *extra, *study.cli_args])


def study_jobs(study: Study) -> list[Job]:
    """The jobs of the whole study: each stage's array (the first stage's commands written now), a plan job before
    every later stage, and the summary job."""
    jobs = []
    for index, stage in enumerate(study.sweep.stages):
        if index == 0:
            commands = study.write_commands(stage, study.plan_through(stage.name))
            size = len(commands)
        else:
            jobs.append(Job(f"plan-{stage.name}", command=_sweep_command(study, "--plan", stage.name)))
            if stage.size is None:
                raise PlanError(f"{study.sweep.path}: stage {stage.name!r} does not declare its number of runs "
                                "(cnn_jax.sweeps.Stage(size=...)); a SLURM submission needs it to size the stage's "
                                "job array before the earlier stages have finished")
            size = stage.size * len(study.seeds or [0])
        if size:
            jobs.append(Job(stage.name, commands_file=study.commands_path(stage.name), size=size))
    jobs.append(Job("summary", command=_sweep_command(study, "--summary-only")))
    return jobs


def shell_script(study: Study, jobs: Sequence[Job]) -> str:
    """The study as one bash script: the jobs in order, each stage's commands read from its file when reached."""
    lines = ["#!/bin/bash", f"# The sweep study {study.sweep.spec} in {study.root}, job after job "
             "(python -m cnn_jax.tools.sweep --emit shell).", "set -euo pipefail", f"cd {shlex.quote(str(REPO))}",
             "run_commands() {  # one launch command per line; fd 3, so a command cannot read the list itself",
             '  while IFS= read -r -u 3 command; do echo "+ $command"; eval "$command"; done 3< "$1"', "}"]
    for job in jobs:
        lines.append(f"echo '== {job.name}'")
        lines.append(f"run_commands {shlex.quote(str(job.commands_file))}" if job.commands_file else job.command)
    return "\n".join(lines) + "\n"


def slurm_scripts(study: Study, jobs: Sequence[Job], *, sbatch_args: Sequence[str] = (),
                  max_parallel: int | None = None) -> dict[str, str]:
    """``{file name: text}``: one sbatch script per job and ``submit.sh``, which submits them chained."""
    logs = study.root / "logs"
    name = f"sweep-{study.sweep.path.stem}"
    files: dict[str, str] = {}
    submit = ["#!/bin/bash", f"# Submits the sweep study {study.sweep.spec}: each job starts when the one before it "
              "succeeded (the summary: when it ended).", "set -euo pipefail", 'cd "$(dirname "$0")"']
    previous = None
    for index, job in enumerate(jobs):
        script = f"{index:02d}_{job.name}.sbatch"
        header = ["#!/bin/bash", f"#SBATCH --job-name={name}-{job.name}"]
        if job.commands_file:
            limit = f"%{max_parallel}" if max_parallel else ""
            header += [f"#SBATCH --array=0-{job.size - 1}{limit}", f"#SBATCH --output={logs}/{job.name}-%A_%a.out"]
        else:
            header += [f"#SBATCH --output={logs}/{job.name}-%j.out"]
        if previous is not None:
            header.append("#SBATCH --kill-on-invalid-dep=yes")
        header += [f"#SBATCH {a}" for a in sbatch_args]
        body = ["set -euo pipefail", f"cd {shlex.quote(str(REPO))}"]
        if job.commands_file:
            path = shlex.quote(str(job.commands_file))
            body += [f'total=$(grep -c . {path} || true)',
                     'if [ "$SLURM_ARRAY_TASK_ID" -ge "$total" ]; then',
                     '  echo "task $SLURM_ARRAY_TASK_ID: the plan has $total run(s); nothing to do"; exit 0',
                     "fi",
                     f'command=$(grep . {path} | sed -n "$((SLURM_ARRAY_TASK_ID + 1))p")',
                     'echo "task $SLURM_ARRAY_TASK_ID: $command"',
                     'eval "$command"']
        else:
            body.append(job.command)
        files[script] = "\n".join(header + body) + "\n"
        dependency = ""
        if previous is not None:
            kind = "afterany" if job.name == "summary" else "afterok"
            dependency = f" --dependency={kind}:${{{previous}}}"
        variable = f"job_{index}"
        submit += [f"{variable}=$(sbatch --parsable{dependency} {script})", f"{variable}=${{{variable}%%;*}}",
                   f'echo "{job.name}: job ${{{variable}}}"']
        previous = variable
    files["submit.sh"] = "\n".join(submit) + "\n"
    return files


# ---------------------------------------------------------------------------------------------------------------
# The study.


@dataclasses.dataclass
class Study:
    """A sweep file, its base config, the command-line overrides and the directory its runs live in."""

    sweep: SweepFile
    base_spec: str
    base: ml_collections.ConfigDict
    cli_args: list[str]
    cli: dict[str, Any]
    root: pathlib.Path
    seeds: tuple[int, ...] | None
    python: str = "python"
    x: str = "macs"
    check: bool = True
    log: Callable[[str], None] = print

    @property
    def name(self) -> str:
        return self.sweep.path.stem

    def commands_path(self, stage: str) -> pathlib.Path:
        return self.root / "plan" / f"{stage}.commands"

    def plan_through(self, last: str | None = None, *, strict: bool = True) -> list[PlannedRun]:
        """The planned runs of every stage up to ``last`` (all stages: None). A later stage is planned only when
        every earlier run is finished: else, ``strict``: :class:`PlanError`; not strict: the earlier stages only
        (logged). A refused search is a :class:`PlanError` (``sweeps.UnseparatedWinnerError``) likewise. Only
        ``last``'s configs are dry-run (the earlier ones were when they were planned)."""
        planned: list[PlannedRun] = []
        for stage in self.sweep.stages:
            check = self.check and stage.name == last
            if planned:
                earlier = [record(r, self.root, self.name) for r in planned]
                waiting = [r.name for r in earlier if r.status != "finished"]
                try:
                    if waiting:
                        raise PlanError(f"stage {stage.name!r} needs the results of every earlier run; not finished: "
                                        f"{', '.join(waiting)}")
                    runs = plan_stage(self.sweep, stage, self.base, self.cli, [r.as_result() for r in earlier],
                                      seeds=self.seeds, check=check)
                except (PlanError, sweeps.UnseparatedWinnerError) as error:
                    if strict:
                        raise PlanError(str(error)) from None
                    self.log(f"# stage {stage.name!r} not planned: {error}")
                    break
            else:
                runs = plan_stage(self.sweep, stage, self.base, self.cli, [], seeds=self.seeds, check=check)
            planned += runs
            if stage.name == last:
                break
        self.write_plan(planned)
        return planned

    def write_plan(self, planned: Sequence[PlannedRun]) -> None:
        """``sweep.json``: the sweep, its arguments and every planned run with its config (so a report can list
        pending runs without the sweep file)."""
        self.root.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"sweep": self.sweep.spec, "base_config": self.base_spec, "cli": self.cli_args,
                           "seeds": self.seeds, "runs": [{"name": r.name, "stage": r.stage, "overrides": r.overrides,
                                                          "config": r.config.to_dict()} for r in planned]},
                          indent=2, default=str)
        temporary = self.root / "sweep.json.tmp"
        temporary.write_text(text)
        temporary.replace(self.root / "sweep.json")

    def write_commands(self, stage: sweeps.Stage, planned: Sequence[PlannedRun]) -> list[str]:
        """``plan/<stage>.commands``: the launch commands of the stage's unfinished runs."""
        commands = [launch_command(r, self.root, self.base_spec, self.cli_args, self.python) for r in planned
                    if r.stage == stage.name and record(r, self.root, self.name).status != "finished"]
        path = self.commands_path(stage.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(c + "\n" for c in commands))
        return commands

    def summarize(self, planned: Sequence[PlannedRun]) -> list[results.RunRecord]:
        """``summary.{md,csv}``, ``summary_runs.csv`` and ``summary.{png,svg}`` of the planned runs."""
        records = [record(r, self.root, self.name) for r in planned]
        points = results.group_points(records)
        results.write_table(points, self.root / "summary")
        write_runs_csv(records, self.root / "summary_runs.csv")
        results.plot_runs(points, self.root / "summary", axis=self.x,
                          title=f"{self.sweep.spec}: eval top-1 vs {self.x}")
        return records


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


def open_study(spec: str, workdir: str | pathlib.Path, cli_args: Sequence[str] = (), *,
               seeds: Sequence[int] | None = None, base_config: str | None = None, python: str = "python",
               x: str = "macs", check: bool = True, log: Callable[[str], None] = print) -> Study:
    sweep = load_sweep(spec)
    base_spec = base_config or sweep.base_config
    base = load_config(base_spec)
    cli = parse_overrides(cli_args, base)
    apply_overrides(base, cli)  # unknown keys fail here, before any run
    if x not in results.X_AXES and x not in flatten(base):
        raise UnknownKeyError(f"--x {x!r} is not macs, params, resolution or a key of the config")
    return Study(sweep, base_spec, base, list(cli_args), cli, pathlib.Path(workdir).absolute(),
                 tuple(seeds) if seeds is not None else sweep.seeds, python, x, check, log)


def run_sweep(spec: str, workdir: str | pathlib.Path, cli_args: Sequence[str] = (), *,
              seeds: Sequence[int] | None = None, emit: str | None = None, plan: str | None = None,
              summary_only: bool = False, base_config: str | None = None, python: str = "python",
              sbatch_args: Sequence[str] = (), max_parallel: int | None = None, x: str = "macs", check: bool = True,
              log: Callable[[str], None] = print) -> dict[str, Any]:
    """Runs the study here (default), or writes it as a shell script (``emit="shell"``) or SLURM scripts
    (``emit="slurm"``, into DIR/slurm), or plans one later stage (``plan=<stage>``: the job between stages), or
    only summarises (``summary_only``). Returns ``{"records", "emitted", "jobs", "stopped"}``; ``stopped`` says why
    a local run ended before its last stage (a refused search, an interrupted run), else None."""
    study = open_study(spec, workdir, cli_args, seeds=seeds, base_config=base_config, python=python, x=x,
                       check=check, log=log)
    if emit is not None:
        jobs = study_jobs(study)
        if emit == "shell":
            emitted: str | dict[str, str] = shell_script(study, jobs)
        elif emit == "slurm":
            emitted = slurm_scripts(study, jobs, sbatch_args=sbatch_args, max_parallel=max_parallel)
        else:
            raise ValueError(f"emit={emit!r}: expected 'shell' or 'slurm'")
        return {"records": None, "emitted": emitted, "jobs": jobs, "stopped": None}
    if plan is not None:
        stages = [s.name for s in study.sweep.stages]
        if plan not in stages:
            raise ValueError(f"--plan {plan!r}: the sweep's stages are {stages}")
        stage = study.sweep.stages[stages.index(plan)]
        planned = [r for r in study.plan_through(plan) if r.stage == plan]
        if stage.size is not None and len(planned) > stage.size * len(study.seeds or [0]):
            raise PlanError(f"stage {plan!r} planned {len(planned)} runs, more than it declared (size {stage.size} "
                            f"x {len(study.seeds or [0])} seed(s)): a SLURM array sized from it would drop runs")
        commands = study.write_commands(stage, planned)
        log(f"planned stage {plan!r}: {len(commands)} run(s) to launch -> {study.commands_path(plan)}")
        return {"records": None, "emitted": None, "jobs": None, "stopped": None}
    if summary_only:
        planned = study.plan_through(strict=False)
        return {"records": study.summarize(planned), "emitted": None, "jobs": None, "stopped": None}

    planned: list[PlannedRun] = []
    stopped = None
    for stage in study.sweep.stages:
        try:
            runs = [r for r in study.plan_through(stage.name) if r.stage == stage.name]
        except PlanError as error:
            stopped = f"stopped before stage {stage.name!r}: {error}"
            log(f"# {stopped}")
            break
        planned += runs
        for run in runs:
            progress = record(run, study.root, study.name)
            if progress.status == "finished":
                log(f"[skip] {run.name}: finished (top-1 {progress.metrics.get('eval/top1', float('nan')):.4f})")
                continue
            log(f"[run] {run.name} {sweeps.config_keys(run.overrides)}")
            if execute(run, study.root, _sweep_command(study)) is None:
                # Preempted (SIGTERM) or time-sliced: stop here; a relaunch resumes this run from its checkpoint.
                stopped = f"{run.name} did not reach its last step; relaunch the sweep to resume it"
                log(f"[stopped] {stopped}")
                break
        if stopped:
            break
    study.write_plan(planned)
    return {"records": study.summarize(planned), "emitted": None, "jobs": None, "stopped": stopped}


def submit_slurm(files: Mapping[str, str], directory: pathlib.Path, log: Callable[[str], None] = print) -> None:
    """Writes the SLURM scripts to ``directory`` and runs ``submit.sh`` (``sbatch`` must be on PATH)."""
    write_scripts(files, directory)
    if subprocess.run(["which", "sbatch"], capture_output=True).returncode != 0:
        raise FileNotFoundError(f"sbatch not found on PATH; the scripts are in {directory}: run "
                                f"`bash {directory / 'submit.sh'}` on a SLURM login node")
    output = subprocess.run(["bash", str(directory / "submit.sh")], capture_output=True, text=True)
    if output.returncode != 0:
        raise RuntimeError(f"{directory / 'submit.sh'} failed:\n{output.stdout}{output.stderr}")
    log(output.stdout.rstrip())


def write_scripts(files: Mapping[str, str], directory: pathlib.Path) -> list[pathlib.Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in files.items():
        path = directory / name
        path.write_text(text)
        path.chmod(0o755)
        paths.append(path)
    return paths


def _seed_list(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds {text!r}: expected comma-separated integers, e.g. 0,1,2") from None
    if not seeds:
        raise argparse.ArgumentTypeError("--seeds: no seed given")
    return seeds


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cnn_jax.tools.sweep", description=__doc__.split("\n")[0],
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


if __name__ == "__main__":
    # Runs trained here (no --emit) share this process: on the allocator launch.py's runs get
    # (cnn_jax.runtime.allocator), or XLA:CPU trains them at about half launch.py's images/s (440 vs 842 img/s,
    # mbconv_scaling's baseline).
    from cnn_jax.cli import sweep

    sweep()
