"""Metric output: ``metrics.jsonl`` and TensorBoard event files (tensorboardX, no TensorFlow), process 0 only."""

from __future__ import annotations

import json
import pathlib
import time

import jax


class MetricWriter:
    def __init__(self, workdir: str | pathlib.Path):
        self.enabled = jax.process_index() == 0
        if not self.enabled:
            return
        from tensorboardX import SummaryWriter

        workdir = pathlib.Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
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
