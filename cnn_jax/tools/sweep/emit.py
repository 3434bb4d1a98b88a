"""A study as commands: ``launch.py`` command lines, the job sequence, one shell script or chained SLURM job arrays."""

from __future__ import annotations

import dataclasses
import pathlib
import shlex
import subprocess
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from cnn_jax import sweeps
from cnn_jax.tools.sweep.plan import PlanError, PlannedRun

if TYPE_CHECKING:
    from cnn_jax.tools.sweep.run import Study


REPO = pathlib.Path(__file__).resolve().parents[3]  # the checkout: emitted scripts cd there


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


def sweep_command(study: Study, *extra: str) -> str:
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
            jobs.append(Job(f"plan-{stage.name}", command=sweep_command(study, "--plan", stage.name)))
            if stage.size is None:
                raise PlanError(f"{study.sweep.path}: stage {stage.name!r} does not declare its number of runs "
                                "(cnn_jax.sweeps.Stage(size=...)); a SLURM submission needs it to size the stage's "
                                "job array before the earlier stages have finished")
            size = stage.size * len(study.seeds or [0])
        if size:
            jobs.append(Job(stage.name, commands_file=study.commands_path(stage.name), size=size))
    jobs.append(Job("summary", command=sweep_command(study, "--summary-only")))
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
