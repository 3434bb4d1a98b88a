"""``train_and_evaluate(config, workdir)``: the sharded training loop.

One mesh over every device of every process; the batch is sharded along ``data``, the train state (params,
optimizer state, BatchNorm statistics) replicated. The state is created already placed (shapes first with
``jax.eval_shape``, then a jitted init with ``out_shardings``), the step is jitted with explicit shardings and a
donated state. On start the newest intact checkpoint in ``workdir`` is restored; SIGTERM saves one and stops.

What a run guarantees (README "Checkpoints and failures"): the config is validated before anything runs
(:class:`cnn_jax.config.ConfigError`); one run per workdir (:class:`cnn_jax.train.workdir.WorkdirLockedError`); a
checkpoint that does not fit the config is refused, not discarded (:class:`CheckpointMismatchError`); a non-finite
loss or gradient norm stops the run before anything from that step on is saved (:class:`TrainingDiverged`); a
failed asynchronous save is raised at the next log step; SIGTERM on any process saves one step on every process
and raises :class:`RunPreempted`.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import pathlib
import signal
import time
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from cnn_jax.config import CONFIG_FILE, build_model, image_dtype, validate
from cnn_jax.data import pipeline, sources
from cnn_jax.runtime import parallel, startup
from cnn_jax.train import optim, steps
from cnn_jax.train.checkpoint import Checkpointer, CheckpointMismatchError, abstract_with_shardings
from cnn_jax.train.metrics import DataWaitMeter, MetricWriter
from cnn_jax.train.workdir import config_differences, read_saved_config, workdir_lock
from cnn_jax.weights import transfer


@flax.struct.dataclass
class Schedule:
    """Durations resolved at run time from the config and the dataset (never stored in the config)."""

    steps_per_epoch: int
    total_steps: int
    learning_rate: float  # base_lr * global_batch / 256
    eval_every_steps: int  # train.eval_every_epochs in steps (at least 1)

    @classmethod
    def resolve(cls, config: ml_collections.ConfigDict, num_train_examples: int) -> Schedule:
        steps_per_epoch = num_train_examples // config.train.global_batch
        if config.train.num_steps is not None:
            total = config.train.num_steps
        else:
            total = int(round(config.train.epochs * steps_per_epoch))
        eval_every = max(1, int(config.train.eval_every_epochs * steps_per_epoch))
        return cls(steps_per_epoch, total, config.optimizer.base_lr * config.train.global_batch / 256, eval_every)


class TrainingDiverged(FloatingPointError):
    """A step's loss or gradient norm was not finite; nothing from that step on was saved."""


class RunPreempted(Exception):
    """SIGTERM stopped the run after every process saved the same step; relaunching resumes from it."""

    def __init__(self, step: int):
        super().__init__(f"preempted: every process saved step {step} and stopped; relaunch the same command to "
                         "resume")
        self.step = step


class _Preemption:
    """SIGTERM on any process -> one step at which every process saves, then the run stops.

    One process: a Python SIGTERM handler sets a flag read after each step. Several (``jax.distributed``): JAX's
    preemption sync manager receives the SIGTERM of any process, the processes agree on the step after the
    furthest one any has reached, and ``multihost_utils.reached_preemption_sync_point`` (called after every step
    by every process) is true at that step on all of them. No Python handler then: it would replace the
    notifier's, and a process saving alone waits at orbax's barriers for peers that never come.
    """

    def __init__(self):
        self.multiprocess = jax.process_count() > 1
        self.requested = False
        self._previous = None

    def __enter__(self):
        if self.multiprocess:
            return self
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread: leave signals alone
            self._previous = None
        return self

    def _handle(self, signum, frame):
        logging.warning("SIGTERM received: saving a checkpoint and stopping")
        self.requested = True

    def reached(self, step: int) -> bool:
        """Whether this step is the one to save and stop at."""
        if self.multiprocess:
            from jax.experimental import multihost_utils

            return multihost_utils.reached_preemption_sync_point(step)
        return self.requested

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def evaluate(eval_step, variables: tuple[Any, Any], dataset, eval_transform, config, mesh, prefix: str = "eval"
             ) -> dict[str, float]:
    """Exact evaluation of ``variables = (params, batch_stats)``: every example of the eval split scored once
    (padded last batch, masked). Metrics are named ``{prefix}/top1`` etc."""
    totals: dict[str, float] = {}
    batches = pipeline.eval_batches(dataset.eval, eval_transform,
                                    global_batch=config.train.eval_batch, process_index=jax.process_index(),
                                    process_count=jax.process_count(), num_threads=config.data.num_threads)
    for images, labels, mask in batches:
        images, labels, mask = parallel.global_batch(mesh, images.astype(image_dtype(config)), labels,
                                                     mask.astype(np.float32))
        for key, value in eval_step(*variables, images, labels, mask).items():
            totals[key] = totals.get(key, 0.0) + float(value)
    count = totals.pop("count")
    return {f"{prefix}/{k}": v / count for k, v in totals.items()} | {f"{prefix}/examples": count}


def batch_layout_problems(config: ml_collections.ConfigDict, devices: int) -> list[str]:
    """Why ``config``'s batches do not split as the train step needs (none when they do): the global batch evenly
    over ``devices``, then over microbatches and BatchNorm groups on each; the eval batch over ``devices``."""
    batch, k = config.train.global_batch, config.train.microbatches
    problems = []
    if k < 1 or batch % (devices * k):
        problems.append(f"train.global_batch={batch} must divide over {devices} devices x train.microbatches={k}")
    if config.train.eval_batch % devices:
        problems.append(f"train.eval_batch={config.train.eval_batch} must divide over {devices} devices")
    group = config.train.bn_group_size
    if k >= 1 and group and group < batch // k and (batch // k) % group:
        problems.append(f"train.bn_group_size={group} must divide the microbatch of {batch // k} examples "
                        f"(global_batch / microbatches); dividing {batch // (devices * k)} (per device) keeps each "
                        "group on one device")
    return problems


def _check_batch_layout(config: ml_collections.ConfigDict) -> None:
    if problems := batch_layout_problems(config, jax.device_count()):
        raise ValueError("; ".join(problems))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> dict[str, float]:
    """Trains ``config`` in ``workdir`` (resuming from its newest checkpoint) and returns the final eval metrics.

    Raises :class:`cnn_jax.config.ConfigError` for values it cannot use (before anything runs),
    ``WorkdirLockedError`` if another run holds ``workdir``, :class:`CheckpointMismatchError` if the workdir's
    checkpoints belong to another config, :class:`TrainingDiverged` and :class:`RunPreempted`.
    """
    validate(config)
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    # Process 0 writes the run's files; the other processes write only their share of each checkpoint.
    with workdir_lock(workdir) if jax.process_index() == 0 else contextlib.nullcontext():
        return _train_and_evaluate(config, workdir)


def _restore(checkpointer: Checkpointer, abstract, config: ml_collections.ConfigDict, workdir: pathlib.Path):
    """The newest intact checkpoint; a mismatch is re-raised with what differs from the run's saved config."""
    saved = read_saved_config(workdir)
    differences = [] if saved is None else config_differences(saved, json.loads(config.to_json()))
    try:
        restored = checkpointer.restore_latest(abstract)
    except CheckpointMismatchError as error:
        changed = (f"; the config differs from the run's {workdir / CONFIG_FILE} in: {'; '.join(differences)}"
                   if differences else "")
        raise CheckpointMismatchError(
            f"{error}{changed}. Nothing was moved or deleted. To resume, relaunch with the run's own config; to "
            "train this config, use another --workdir (with --config.train.init_from=<weights directory> to start "
            "from exported weights)") from None
    if restored is not None and differences and jax.process_index() == 0:
        logging.warning("resuming %s with a config that differs from its saved one in: %s", workdir,
                        "; ".join(differences))
    return restored


def _open_best(workdir: pathlib.Path, timeout_s: int | None) -> tuple[Checkpointer, float]:
    """The best-checkpoint copy and its top-1 (-1 without one). It is auxiliary: if it cannot be read it is moved
    aside (``best_damaged_<time>``) with a warning and a new one started, instead of blocking the run."""
    def open_():
        return Checkpointer(workdir / "best", keep=1, name="best", timeout_s=timeout_s)

    best = None
    try:
        best = open_()
        return best, best.read_meta()["eval/top1"] if best.manager.latest_step() is not None else -1.0
    except Exception as error:  # orbax and json raise several types for damaged files
        if best is not None:
            with contextlib.suppress(Exception):
                best.manager.close()
        aside = workdir / f"best_damaged_{int(time.time())}"
        logging.warning("the best checkpoint in %s could not be read (%s: %s); moved to %s, a new one is started",
                        workdir / "best", type(error).__name__, error, aside)
        if jax.process_index() == 0:
            (workdir / "best").rename(aside)
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices("cnn_jax_best_moved_aside")
        return open_(), -1.0


def _train_and_evaluate(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> dict[str, float]:
    dataset = sources.load_dataset(config.data.name, config.data.data_dir, manual_dir=config.data.manual_dir,
                                   train_split=config.data.train_split, eval_split=config.data.eval_split).subset(
        config.data.max_train_examples, config.data.max_eval_examples)
    mean, std, normalisation = pipeline.input_stats(config, dataset)  # reads train.init_from's meta.json once
    transforms = pipeline.make_transforms(config, dataset, (mean, std))
    schedule = Schedule.resolve(config, len(dataset.train))
    model = build_model(config)
    mesh = parallel.data_mesh()
    _check_batch_layout(config)
    replicated = parallel.replicated(mesh)

    lr_fn = optim.learning_rate_schedule(config.optimizer, schedule.learning_rate, schedule.total_steps,
                                         schedule.steps_per_epoch)
    tx = optim.make_optimizer(config.optimizer, lr_fn)
    size = config.data.image_size
    init_state = steps.state_initializer(model, tx, (1, size, size, dataset.channels),
                                         ema=bool(config.train.ema_decay))
    # "rbg" keys: the initialiser (one random draw per parameter) compiles ~2x faster than with threefry.
    init_key = jax.random.key(config.seed, impl="rbg")
    with startup.garbage_collection_paused():
        abstract = jax.eval_shape(init_state, init_key)
    rng = jax.random.key(config.seed + 1)
    checkpoint_timeout_s = config.train.checkpoint_timeout_s or None  # 0: the Checkpointer's default
    checkpointer = Checkpointer(workdir, keep=config.train.keep_checkpoints, name="checkpoints",
                                timeout_s=checkpoint_timeout_s)
    abstract = abstract_with_shardings(abstract, replicated)
    restored = _restore(checkpointer, abstract, config, workdir)
    start_step = 0 if restored is None else restored[0]
    if jax.process_index() == 0:
        (workdir / CONFIG_FILE).write_text(config.to_json(indent=2))
        if restored is not None:
            print(f"resumed from step {start_step} "
                  f"({json.dumps({k: v for k, v in restored[2].items() if k != 'fingerprint'})})", flush=True)

    batches = pipeline.prefetch(pipeline.train_batches(
        dataset.train, transforms.train, batch_transform=transforms.batch, global_batch=config.train.global_batch,
        start_step=start_step, seed=config.seed, process_index=jax.process_index(),
        process_count=jax.process_count(), num_threads=config.data.num_threads,
        worker_processes=config.data.worker_processes),
        transform=lambda batch: parallel.global_batch(  # float32 images are not copied (copy=False)
            mesh, batch[0].astype(image_dtype(config), copy=False), *batch[1:]))
    # XLA:CPU's CSE barrier expander strips rematerialisation (memory_efficient DenseNet, scanned stages).
    keep_remat = config.train.compile_keep_remat and jax.default_backend() == "cpu"
    compiler_options = startup.KEEP_REMAT_OPTIONS if keep_remat else None
    train_step = jax.jit(steps.with_nonfinite_guard(steps.make_train_step(model, tx, config, lr_fn)),
                         donate_argnums=(0, 1),
                         in_shardings=(replicated, replicated, parallel.batch_sharded(mesh),
                                       parallel.batch_sharded(mesh), replicated),
                         out_shardings=(replicated, replicated, replicated), compiler_options=compiler_options)
    first_bad = jax.device_put(jnp.zeros((), jnp.int32), replicated)

    def compile_step():
        first_batch = next(batches)  # the labels' shape depends on the batch transform (mixup: soft targets)
        return train_step.lower(abstract, first_bad, *first_batch, rng).compile(), first_batch

    def create_state():
        if restored is not None:
            return restored[1]
        state = jax.jit(init_state, out_shardings=replicated)(init_key)
        if config.train.init_from:
            params, batch_stats = transfer.initial_variables(state.params, state.batch_stats,
                                                             config.train.init_from, model.num_classes)
            state = jax.jit(init_state, out_shardings=replicated)(None, params, batch_stats)
        return state

    if jax.process_index() == 0 and config.train.init_from:
        print(f"input normalisation: mean {mean}, std {std}: {normalisation}", flush=True)
    if jax.process_index() == 0:
        print(f"{config.model.name}: {sum(x.size for x in jax.tree_util.tree_leaves(abstract.params)):,} "
              f"parameters, {schedule.total_steps} steps ({schedule.steps_per_epoch}/epoch), "
              f"lr {schedule.learning_rate:g}, {jax.device_count()} devices", flush=True)
    stop_step = schedule.total_steps
    if config.train.stop_after_steps is not None:
        stop_step = min(stop_step, start_step + config.train.stop_after_steps)
    if start_step < stop_step:
        state, (train_step, first_batch) = startup.initialise_while_compiling(create_state, compile_step)
        batches = itertools.chain([first_batch], batches)
        del first_batch  # the chain holds it until step start_step has used it
    else:  # a finished run relaunched: nothing to train
        state = create_state()
    eval_step = jax.jit(steps.make_eval_step(model))
    # Its own name: it saves the same steps as `checkpointer`, concurrently (distinct orbax barrier keys).
    best, best_top1 = _open_best(workdir, checkpoint_timeout_s)
    writer = MetricWriter(workdir, resume_step=start_step)
    last_saved = start_step if restored is not None else None

    def check_finite(step: int) -> None:
        """Raises if any step so far had a non-finite loss or gradient norm (one device-to-host read)."""
        bad = int(jax.device_get(first_bad))
        if bad:
            saved = f"the last checkpoint is step {last_saved}" if last_saved else "no checkpoint was written"
            raise TrainingDiverged(
                f"non-finite training loss or gradient norm at step {bad} (found at step {step}); nothing from step "
                f"{bad} on was saved ({saved}). Lower optimizer.base_lr, add warmup (optimizer.warmup_epochs) or "
                "gradient clipping (optimizer.clip_global_norm)")

    eval_metrics: dict[str, float] = {}
    step, window_start, window_steps = start_step, time.time(), 0
    data_wait = DataWaitMeter()
    # Each step's loss and top-1 since the last log (device scalars, fetched at the log): the logged train/loss and
    # train/top1 are means over the window, so they measure training error over the epoch, not one batch's.
    window: list[tuple[jax.Array, jax.Array]] = []
    previous_loss = None  # the last dispatched step's loss: ready once that step has finished on the devices
    try:
        with _Preemption() as preemption:
            while step < stop_step:
                # Already on the devices: the prefetch thread places the batches.
                images, labels = data_wait.next_batch(
                    batches, lambda loss=previous_loss: loss is None or loss.is_ready())
                state, first_bad, metrics = train_step(state, first_bad, images, labels, rng)
                previous_loss = metrics["train/loss"]
                window.append((metrics["train/loss"], metrics["train/top1"]))
                step += 1
                window_steps += 1
                last = step == stop_step
                preempted = preemption.reached(step)
                if step % config.train.log_every_steps == 0 or last:
                    check_finite(step)
                    checkpointer.check()  # a failed asynchronous save (disk full) stops the run now
                    metrics = jax.device_get(metrics)
                    window_losses, window_top1 = np.asarray(jax.device_get(window), np.float64).T
                    window = []
                    metrics |= {"train/loss": float(window_losses.mean()), "train/top1": float(window_top1.mean())}
                    elapsed = time.time() - window_start
                    images_per_s = window_steps * config.train.global_batch / max(elapsed, 1e-9)
                    eta = (schedule.total_steps - step) * elapsed / window_steps
                    metrics |= {"train/images_per_s": images_per_s, "train/step_time_s": elapsed / window_steps,
                                "train/data_wait_fraction": data_wait.fraction(elapsed)}
                    writer.write(step, metrics)
                    if jax.process_index() == 0:
                        print(f"step {step}/{schedule.total_steps} epoch {step / schedule.steps_per_epoch:.2f} "
                              f"loss {metrics['train/loss']:.4f} top1 {metrics['train/top1']:.3f} "
                              f"{images_per_s:.0f} img/s ETA {eta:.0f}s", flush=True)
                    window_start, window_steps = time.time(), 0
                if step % schedule.eval_every_steps == 0 or last:
                    check_finite(step)
                    eval_args = (dataset, transforms.eval, config, mesh)
                    eval_metrics = evaluate(eval_step, (state.params, state.batch_stats), *eval_args)
                    if config.train.ema_decay:
                        eval_metrics |= evaluate(eval_step, (state.ema_params, state.batch_stats), *eval_args,
                                                 prefix="eval_ema")
                    writer.write(step, eval_metrics)
                    if jax.process_index() == 0:
                        print(f"eval step {step}: " + "  ".join(
                            f"{prefix} top1 {eval_metrics[f'{prefix}/top1']:.4f} "
                            f"top5 {eval_metrics[f'{prefix}/top5']:.4f} loss {eval_metrics[f'{prefix}/loss']:.4f}"
                            for prefix in ("eval", "eval_ema") if f"{prefix}/top1" in eval_metrics), flush=True)
                    if eval_metrics["eval/top1"] > best_top1:
                        best_top1 = eval_metrics["eval/top1"]
                        best.save(step, state, {"step": step, "model": config.model.name, **eval_metrics})
                if step % config.train.checkpoint_every_steps == 0 or last or preempted:
                    check_finite(step)
                    checkpointer.save(step, state, {"step": step, "model": config.model.name})
                    last_saved = step
                if preempted:
                    break
    except BaseException:
        # In-flight saves end before the error leaves: their threads would otherwise fail at interpreter exit and
        # print after the error's message (launch.py makes that message the last line).
        for manager in (checkpointer.manager, best.manager):
            with contextlib.suppress(Exception):
                manager.close()
        writer.close()
        raise
    try:
        checkpointer.close()  # waits for the last save; raises CheckpointSaveError if it failed
    finally:
        best.close()
        writer.close()
    if step < stop_step:
        if jax.process_index() == 0:
            print(f"preempted at step {step}: checkpoint saved", flush=True)
        raise RunPreempted(step)
    return eval_metrics
