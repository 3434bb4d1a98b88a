"""Metric output: ``metrics.jsonl`` and TensorBoard event files (tensorboardX, no TensorFlow), process 0 only."""

from __future__ import annotations

import json
import os
import pathlib
import socket
import time

import jax

from cnn_jax.reporting import cpu_model

LAUNCHES_FILE = "launches.jsonl"  # launch.py appends each invocation (time, machine, command line) to it


def record_launch(workdir: str | pathlib.Path, command: str) -> None:
    """Appends one invocation of a run to ``WORKDIR/launches.jsonl``: UTC time, host, CPU, devices and the command
    line, what (re-)ran the run and where (``cnn_jax.tools.reproductions`` prints them beside the results)."""
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    devices = jax.devices()
    processes = f" x {jax.process_count()} processes" if jax.process_count() > 1 else ""
    record = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": socket.gethostname(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "devices": f"{len(devices)} x {devices[0].device_kind}{processes}",
        "command": command,
    }
    with open(workdir / LAUNCHES_FILE, "a") as f:
        f.write(json.dumps(record) + "\n")


def read_launches(workdir: str | pathlib.Path) -> list[dict]:
    """The records :func:`record_launch` wrote (none for a run started otherwise)."""
    path = pathlib.Path(workdir) / LAUNCHES_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class MetricWriter:
    """Appends records to ``metrics.jsonl`` and TensorBoard (process 0). ``resume_step``: the step a run resumed
    from; records after it (written before an interruption, for steps that will run again) are dropped first, so the
    file reads as one run."""

    def __init__(self, workdir: str | pathlib.Path, resume_step: int | None = None):
        self.enabled = jax.process_index() == 0
        if not self.enabled:
            return
        from tensorboardX import SummaryWriter

        workdir = pathlib.Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        if resume_step is not None:
            drop_records_after(workdir, resume_step)
        self.jsonl = open(workdir / "metrics.jsonl", "a")
        self.tensorboard = SummaryWriter(str(workdir / "tensorboard"))

    def write(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        record = {"step": step, "time": time.time(), **{k: float(v) for k, v in metrics.items()}}
        self.jsonl.write(json.dumps(record) + "\n")
        self.jsonl.flush()
        for key, value in metrics.items():
            self.tensorboard.add_scalar(key, float(value), step)

    def close(self) -> None:
        if self.enabled:
            self.jsonl.close()
            self.tensorboard.close()


class DataWaitMeter:
    """The time the devices sat idle waiting for the input pipeline, per log window.

    Steps run asynchronously: waiting for a batch idles the devices only if the previous step had finished by then
    (``previous_step_done``); a wait that overlaps a running step costs nothing and is not counted.
    """

    def __init__(self, clock=time.time):
        self.clock = clock
        self.waited = 0.0

    def next_batch(self, batches, previous_step_done) -> object:
        """``next(batches)``, counting its duration as idle time if ``previous_step_done()`` says so after it."""
        start = self.clock()
        batch = next(batches)
        if previous_step_done():
            self.waited += self.clock() - start
        return batch

    def fraction(self, elapsed: float) -> float:
        """The idle share of a window of ``elapsed`` seconds; starts the next window."""
        fraction, self.waited = self.waited / max(elapsed, 1e-9), 0.0
        return fraction


def read_metrics(workdir: str | pathlib.Path) -> list[dict]:
    """The records of ``workdir/metrics.jsonl``; a line cut short by a killed writer is skipped (the records
    before it stand)."""
    records = []
    with open(pathlib.Path(workdir) / "metrics.jsonl") as f:
        for line in f:
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
    return records


def drop_records_after(workdir: str | pathlib.Path, step: int) -> int:
    """Rewrites ``workdir/metrics.jsonl`` (atomically) without the records of steps after ``step`` and any line cut
    short; returns how many were dropped."""
    path = pathlib.Path(workdir) / "metrics.jsonl"
    if not path.exists():
        return 0
    lines = path.read_text().splitlines()
    kept = []
    for line in lines:
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line)
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    if len(kept) < len(lines):
        partial = path.with_name(path.name + ".partial")
        partial.write_text("".join(line + "\n" for line in kept))
        os.replace(partial, path)
    return len(lines) - len(kept)
