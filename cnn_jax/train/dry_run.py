"""``dry_run(config) -> DryRunReport``: what a training run of ``config`` would use, checked without compiling.

Everything comes from the trainer's own functions (``cnn_jax.config.build_model``; ``cnn_jax.train.loop``:
``Schedule.resolve``, ``batch_layout_problems``; ``cnn_jax.train.steps.create_train_state``;
``cnn_jax.train.optim``; ``cnn_jax.data``) and from shapes alone: the dataset's metadata
(``sources.describe_dataset``: no example is read, nothing is prepared), the model's parameters and multiply-adds
(``cnn_jax.analysis``, an abstract trace) and the train state's shapes (``jax.eval_shape``). Nothing is compiled
or run, so a config is checked in seconds and a sweep can check every point before it submits one. Dataset metadata
and model statistics are cached per process (:func:`clear_caches`), keyed by the config values they depend on: the
points of a sweep trace each of their models once.

The memory figure is an estimate from shapes, per device: the train state (parameters, BatchNorm statistics,
optimizer state, EMA copy), one set of gradients (two with gradient accumulation: the running sum and one
microbatch's), the activations kept for the backward pass (the sum of every layer's output in
``cnn_jax.analysis``, times the examples of one microbatch on one device) and the input images. XLA's figure for
the compiled step (``python -m cnn_jax.tools.train_memory``) also holds the outputs of activation functions, which
are not layers, and its scratch, so it is larger by a family-dependent factor (BENCHMARKS.md, "Dry-run memory
estimate"; ``tests/test_dry_run.py`` checks ResNet-20).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import ml_collections
import numpy as np

from cnn_jax.analysis import ModelStats, analyze
from cnn_jax.config import build_model, image_dtype
from cnn_jax.data import pipeline, sources
from cnn_jax.train import loop, optim, steps

MIB = 2**20


@dataclasses.dataclass(frozen=True)
class BatchLayout:
    """How the global batch splits: over processes and devices, then into sequential microbatches per device."""

    global_batch: int
    devices: int
    processes: int
    microbatches: int
    eval_batch: int

    @property
    def per_device(self) -> int:
        return self.global_batch // self.devices

    @property
    def microbatch_per_device(self) -> int:
        """Examples one device holds activations for at once."""
        return self.per_device // max(1, self.microbatches)

    @property
    def eval_per_device(self) -> int:
        return self.eval_batch // self.devices


@dataclasses.dataclass(frozen=True)
class ModelSummary:
    """The model ``build_model(config)`` builds, counted at ``data.image_size`` (``cnn_jax.analysis``)."""

    name: str
    params: int
    macs: int  # per image, inference forward (conv + dense multiply-adds)
    activation_bytes: int  # per image: the sum of every layer's output, in the model's compute dtype
    input_shape: tuple[int, int, int]  # H, W, C of one image


@dataclasses.dataclass(frozen=True)
class TrainingSchedule:
    """Durations and learning rate as the trainer resolves them (``loop.Schedule.resolve``)."""

    resolved: loop.Schedule  # steps_per_epoch, total_steps, learning_rate (the peak), eval_every_steps
    warmup_steps: int
    checkpoint_every_steps: int
    log_every_steps: int
    stop_after_steps: int | None

    @property
    def epochs(self) -> float:
        return self.resolved.total_steps / self.resolved.steps_per_epoch if self.resolved.steps_per_epoch else 0.0


@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
    """Estimated bytes one device holds during a train step, by part (from shapes; see the module docstring)."""

    params: int
    batch_stats: int
    optimizer_state: int
    ema_params: int
    gradients: int
    activations: int
    input_images: int

    @property
    def total(self) -> int:
        return sum(dataclasses.astuple(self))


@dataclasses.dataclass(frozen=True)
class DryRunReport:
    """The result of :func:`dry_run`: each section is None where it could not be worked out (see ``problems``)."""

    model_name: str
    dataset: sources.DatasetMetadata
    batch: BatchLayout
    model: ModelSummary | None
    schedule: TrainingSchedule | None
    optimizer: str
    lr_schedule: str
    base_lr: float  # per 256 examples
    memory: MemoryEstimate | None
    problems: list[str]  # what would make training fail: config key, value and what was expected
    warnings: list[str]  # suspicious but trainable

    @property
    def ok(self) -> bool:
        return not self.problems

    def format(self) -> str:
        """The report as text for a terminal."""
        return _format(self)


def dry_run(config: ml_collections.ConfigDict, *, devices: int | None = None,
            processes: int | None = None) -> DryRunReport:
    """Checks ``config`` as :func:`cnn_jax.train.loop.train_and_evaluate` would use it, without compiling.

    ``devices`` / ``processes``: the run's device and process counts (default: what this process sees, as the
    trainer would), e.g. to check a multi-host layout from one host.
    """
    devices = jax.device_count() if devices is None else devices
    processes = jax.process_count() if processes is None else processes
    problems: list[str] = []
    warnings: list[str] = []
    data, train = config.data, config.train

    dataset = dataset_metadata(config)
    if dataset.problem:
        problems.append(f"data.name={data.name!r}: {dataset.problem}")
    try:
        dataset = dataset.subset(data.max_train_examples, data.max_eval_examples)
    except ValueError as error:
        problems.append(f"data.max_train_examples={data.max_train_examples}, "
                        f"data.max_eval_examples={data.max_eval_examples}: {error}")

    batch = BatchLayout(train.global_batch, devices, processes, train.microbatches, train.eval_batch)
    problems += loop.batch_layout_problems(config, devices)
    if dataset.num_train is not None and dataset.num_train < train.global_batch:
        problems.append(f"train.global_batch={train.global_batch} is larger than the {dataset.num_train} training "
                        f"examples of {data.name!r}: no full batch to train on")
    try:
        input_dtype = image_dtype(config)
    except ValueError as error:
        problems.append(str(error))
        input_dtype = np.dtype(np.float32)

    model, state = _check_model(config, dataset, problems, warnings)
    schedule = _check_schedule(config, dataset, problems)
    if model is not None and dataset.found:
        try:
            pipeline.make_transforms(config, dataset)  # parses the transform specs as the trainer does
        except ValueError as error:
            problems.append(f"data.train_transform={data.train_transform!r}, "
                            f"data.eval_transform={data.eval_transform!r}, "
                            f"data.batch_transform={data.batch_transform!r}: {error}")
    memory = None if state is None else _estimate_memory(state, model, batch, input_dtype)
    return DryRunReport(config.model.name, dataset, batch, model, schedule, config.optimizer.name,
                        config.optimizer.schedule, config.optimizer.base_lr, memory, problems, warnings)


def clear_caches() -> None:
    """Forgets cached dataset metadata and model statistics (e.g. after preparing a dataset)."""
    for cached in (_describe_dataset, _model_stats):
        cached.cache_clear()


# ---------------------------------------------------------------------------------------------------------------
# The checks.


def _check_model(config: ml_collections.ConfigDict, dataset: sources.DatasetMetadata, problems: list[str],
                 warnings: list[str]) -> tuple[ModelSummary | None, Any]:
    """The model's counts and the abstract train state, or None for what fails (its problem appended)."""
    try:
        model = build_model(config)
    except (KeyError, TypeError, ValueError) as error:
        problems.append(f"model: {error}")  # the registry's and build_model's errors name the key and value
        return None, None
    channels = model.in_channels
    if dataset.image_shape and dataset.image_shape[-1] != channels:
        problems.append(f"model.in_channels={channels} but {config.data.name!r} has {dataset.image_shape[-1]}-channel "
                        f"images; expected model.in_channels={dataset.image_shape[-1]}")
    if dataset.num_classes is not None and model.num_classes != dataset.num_classes:
        message = (f"model.num_classes={model.num_classes} but {config.data.name!r} has {dataset.num_classes} "
                   "classes")
        if model.num_classes < dataset.num_classes:
            problems.append(f"{message}: labels beyond {model.num_classes - 1} have no logit")
        else:
            warnings.append(f"{message}: {model.num_classes - dataset.num_classes} logits are never a label")
    size = config.data.image_size
    try:
        stats = model_statistics(config)
    except Exception as error:  # whatever the model's own code raises for this config is the config's problem
        problems.append(f"model {config.model.name!r} at data.image_size={size} ({size}x{size}x{channels} input): "
                        f"{type(error).__name__}: {error}")
        return None, None
    summary = ModelSummary(config.model.name, stats.params, stats.macs, stats.activation_bytes, (size, size, channels))
    try:
        # The optimizer state's shapes do not depend on the learning rate: a constant stands in for the schedule.
        tx = optim.make_optimizer(config.optimizer, 1.0)
    except ValueError as error:
        problems.append(str(error))
        return summary, None
    # The trainer's state built on the model's variables (as from train.init_from): no second trace of the model.
    ema = bool(config.train.ema_decay)
    state = jax.eval_shape(lambda params, batch_stats: steps.create_train_state(params, batch_stats, tx, ema=ema),
                           stats.variables["params"], stats.variables.get("batch_stats", {}))
    return summary, state


def _check_schedule(config: ml_collections.ConfigDict, dataset: sources.DatasetMetadata,
                    problems: list[str]) -> TrainingSchedule | None:
    """Durations and the learning-rate schedule as the trainer resolves them (None without a training size)."""
    if dataset.num_train is None:
        return None
    resolved = loop.Schedule.resolve(config, dataset.num_train)
    if resolved.steps_per_epoch and resolved.total_steps < 1:
        problems.append(f"train.epochs={config.train.epochs} / train.num_steps={config.train.num_steps}: "
                        f"{resolved.total_steps} training steps; expected at least 1")
    try:
        optim.learning_rate_schedule(config.optimizer, resolved.learning_rate, resolved.total_steps,
                                     resolved.steps_per_epoch)
    except ValueError as error:
        problems.append(str(error))
    return TrainingSchedule(resolved, optim.warmup_steps(config.optimizer, resolved.steps_per_epoch),
                            config.train.checkpoint_every_steps, config.train.log_every_steps,
                            config.train.stop_after_steps)


def _estimate_memory(state: Any, model: ModelSummary, batch: BatchLayout, image_dtype: np.dtype) -> MemoryEstimate:
    params = _bytes(state.params)
    return MemoryEstimate(
        params=params,
        batch_stats=_bytes(state.batch_stats),
        optimizer_state=_bytes(state.opt_state),
        ema_params=_bytes(state.ema_params),
        # Accumulation keeps the running sum besides one microbatch's gradients (steps.make_train_step).
        gradients=params * (2 if batch.microbatches > 1 else 1),
        activations=model.activation_bytes * batch.microbatch_per_device,
        input_images=batch.per_device * math.prod(model.input_shape) * image_dtype.itemsize,
    )


def _bytes(tree: Any) -> int:
    return sum(math.prod(leaf.shape) * leaf.dtype.itemsize for leaf in jax.tree_util.tree_leaves(tree))


# ---------------------------------------------------------------------------------------------------------------
# Cached parts, keyed by the config values they depend on (a model's as a hashable FrozenConfigDict).


def dataset_metadata(config: ml_collections.ConfigDict) -> sources.DatasetMetadata:
    """``sources.describe_dataset`` for ``config.data`` (cached)."""
    data = config.data
    return _describe_dataset(data.name, data.data_dir, data.manual_dir, data.train_split, data.eval_split)


def model_statistics(config: ml_collections.ConfigDict) -> ModelStats:
    """``cnn_jax.analysis`` of the model ``config`` builds, at ``data.image_size`` on its input channels (cached)."""
    channels = build_model(config).in_channels
    return _model_stats(ml_collections.FrozenConfigDict({"model": config.model.to_dict()}), config.data.image_size,
                        channels)


@functools.lru_cache(maxsize=16)
def _describe_dataset(name: str, data_dir: str | None, manual_dir: str | None, train_split: str | None,
                      eval_split: str | None) -> sources.DatasetMetadata:
    return sources.describe_dataset(name, data_dir, manual_dir=manual_dir, train_split=train_split,
                                    eval_split=eval_split)


@functools.lru_cache(maxsize=64)
def _model_stats(model_config: ml_collections.FrozenConfigDict, image_size: int, channels: int) -> ModelStats:
    return analyze(build_model(model_config), image_size, in_channels=channels)


# ---------------------------------------------------------------------------------------------------------------
# The text report.


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}es" if noun.endswith(("s", "h")) else f"{n} {noun}s"


def _mib(num_bytes: int) -> str:
    return f"{num_bytes / MIB:,.1f} MiB"


def _format(report: DryRunReport) -> str:
    lines = [f"dry run: {report.model_name} on {report.dataset.name}"]

    def row(label: str, *texts: str) -> None:
        for i, text in enumerate(texts):
            lines.append(f"  {label if i == 0 else '':<10}{text}")

    d = report.dataset
    row("dataset", f"{d.name}: {'found' if d.found else 'NOT FOUND'} ({d.location})"
                   + (f"; {d.note}" if d.note else ""))
    if d.num_train is not None:
        shape = "x".join("?" if n is None else str(n) for n in d.image_shape) if d.image_shape else "?"
        row("", f"{d.num_train:,} train / {d.num_eval if d.num_eval is None else f'{d.num_eval:,}'} eval examples "
                f"({d.counts_from}); {shape} images, {d.num_classes} classes")
    b = report.batch
    # True quotients, so a batch that does not divide shows as such (its problem is listed below).
    row("batch", f"global {b.global_batch} = {_count(b.devices, 'device')} x {b.global_batch / b.devices:g} "
                 f"({_count(b.processes, 'process')}); {_count(b.microbatches, 'microbatch')} of "
                 f"{b.global_batch / b.devices / max(1, b.microbatches):g} per device; eval {b.eval_batch} = "
                 f"{b.devices} x {b.eval_batch / b.devices:g}")
    if (m := report.model) is not None:
        row("model", f"{m.name}: {m.params:,} parameters, {m.macs / 1e9:.4g} GMACs per "
                     f"{'x'.join(map(str, m.input_shape))} image")
    if (s := report.schedule) is not None:
        r = s.resolved
        row("schedule", f"{r.total_steps:,} steps = {s.epochs:.4g} epochs x {r.steps_per_epoch:,} steps/epoch; "
                        f"warmup {s.warmup_steps:,} steps",
            f"eval every {r.eval_every_steps:,} steps, checkpoint every {s.checkpoint_every_steps:,}, "
            f"log every {s.log_every_steps:,}"
            + (f"; this invocation stops after {s.stop_after_steps:,}" if s.stop_after_steps is not None else ""))
    peak = f" -> peak {report.schedule.resolved.learning_rate:.4g}" if report.schedule else ""
    row("lr", f"{report.optimizer}, base_lr {report.base_lr:g} per 256 examples{peak} at global batch "
              f"{b.global_batch}, {report.lr_schedule} schedule")
    if (mem := report.memory) is not None:
        row("memory", f"~{_mib(mem.total)} per device: an estimate from shapes (XLA's compiled step on the CPU "
                      "holds 1-3x this)",
            f"params {_mib(mem.params)}, batch stats {_mib(mem.batch_stats)}, optimizer state "
            f"{_mib(mem.optimizer_state)}, EMA {_mib(mem.ema_params)}, gradients {_mib(mem.gradients)}",
            f"activations {_mib(mem.activations)} ({report.model.activation_bytes / 1024:,.1f} KiB per image x "
            f"{b.microbatch_per_device}), input images {_mib(mem.input_images)}")
    for warning in report.warnings:
        row("warning", warning)
    if report.ok:
        lines.append("ok: every check passed")
    else:
        lines.append(f"FAILED: {len(report.problems)} problem(s)")
        lines += [f"  - {problem}" for problem in report.problems]
    return "\n".join(lines)
