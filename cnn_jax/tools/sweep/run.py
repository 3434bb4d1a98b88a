"""A study run here: plan each stage, train its unfinished runs in this process, summarise."""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import ml_collections

from cnn_jax import sweeps
from cnn_jax.config import (
    UnknownKeyError,
    apply_overrides,
    flatten,
    load_config,
    parse_overrides,
)
from cnn_jax.tools import results
from cnn_jax.tools.results import FINAL
from cnn_jax.tools.sweep import summary
from cnn_jax.tools.sweep.emit import launch_command, shell_script, slurm_scripts, study_jobs, sweep_command
from cnn_jax.tools.sweep.plan import PlanError, PlannedRun, SweepFile, load_sweep, plan_stage


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
        summary.write_summary(records, self.root, axis=self.x, title=f"{self.sweep.spec}: eval top-1 vs {self.x}")
        return records


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
            if execute(run, study.root, sweep_command(study)) is None:
                # Preempted (SIGTERM) or time-sliced: stop here; a relaunch resumes this run from its checkpoint.
                stopped = f"{run.name} did not reach its last step; relaunch the sweep to resume it"
                log(f"[stopped] {stopped}")
                break
        if stopped:
            break
    study.write_plan(planned)
    return {"records": study.summarize(planned), "emitted": None, "jobs": None, "stopped": stopped}
