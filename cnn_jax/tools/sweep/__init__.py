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

Modules: ``plan`` (sweep files, planned runs, config checks), ``run`` (the study here), ``emit`` (commands, shell
script, SLURM chain), ``summary`` (tables and plot), ``command`` (the command line).
"""

from cnn_jax.tools.results import FINAL
from cnn_jax.tools.sweep.command import main
from cnn_jax.tools.sweep.emit import (
    Job,
    launch_command,
    shell_script,
    slurm_scripts,
    study_jobs,
    submit_slurm,
    write_scripts,
)
from cnn_jax.tools.sweep.plan import (
    PlanError,
    PlannedRun,
    SweepFile,
    check_configs,
    load_sweep,
    parse_sweep_args,
    plan_stage,
)
from cnn_jax.tools.sweep.run import Study, execute, open_study, record, run_sweep
from cnn_jax.tools.sweep.summary import write_runs_csv, write_summary

__all__ = ["FINAL", "Job", "PlanError", "PlannedRun", "Study", "SweepFile", "check_configs", "execute",
           "launch_command", "load_sweep", "main", "open_study", "parse_sweep_args", "plan_stage", "record",
           "run_sweep", "shell_script", "slurm_scripts", "study_jobs", "submit_slurm", "write_runs_csv",
           "write_scripts", "write_summary"]
