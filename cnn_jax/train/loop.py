"""``train_and_evaluate(config, workdir)``: the sharded training loop.

One mesh over every device of every process; the batch is sharded along ``data``, the train state (params,
optimizer state, BatchNorm statistics) replicated. The state is created already placed (shapes first with
``jax.eval_shape``, then a jitted init with ``out_shardings``), the step is jitted with explicit shardings and a
donated state. On start the newest readable checkpoint in ``workdir`` is restored; SIGTERM saves one and exits.
"""

from __future__ import annotations

import itertools
import json
import logging
import pathlib
import signal
import time
from collections.abc import Callable
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

import cnn_jax
from cnn_jax import parallel
from cnn_jax.data import pipeline, sources
from cnn_jax.registry import config_overrides
from cnn_jax.train import optim, steps
from cnn_jax.train.checkpoint import Checkpointer, abstract_with_shardings
from cnn_jax.train.metrics import MetricWriter
from cnn_jax.train.steps import KEEP_REMAT_OPTIONS, TrainState

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


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


def build_model(config: ml_collections.ConfigDict):
    """The registry model named by ``config.model`` (``name``, ``dtype`` and any other key as an override)."""
    overrides = config_overrides(config.model)
    dtype = config.model.get("dtype", "float32")
    if dtype not in DTYPES:
        raise ValueError(f"config.model.dtype={dtype!r}; expected one of {sorted(DTYPES)}")
    # bf16 compute, float32 parameters; BatchNorm statistics and the loss are float32 (see losses.cross_entropy).
    return cnn_jax.create_model(config.model.name, dtype=DTYPES[dtype], **overrides)


def image_dtype(config: ml_collections.ConfigDict) -> np.dtype:
    """The dtype images are delivered in (``config.data.dtype``; bfloat16 halves the host-to-device copy)."""
    if config.data.dtype not in DTYPES:
        raise ValueError(f"config.data.dtype={config.data.dtype!r}; expected one of {sorted(DTYPES)}")
    return np.dtype(DTYPES[config.data.dtype])


class _Preemption:
    """Turns SIGTERM into a flag the loop checks after each step (a final checkpoint, then a clean exit)."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread: leave signals alone
            self._previous = None
        return self

    def _handle(self, signum, frame):
        logging.warning("SIGTERM received: saving a checkpoint and stopping")
        self.requested = True

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


def state_initializer(model, tx: optax.GradientTransformation, config: ml_collections.ConfigDict,
                      channels: int) -> Callable[..., TrainState]:
    """``init_state(rng, params=None, batch_stats=None) -> TrainState``: step 0, the model's variables
    (initialised on one ``data.image_size``-square image of ``channels`` channels, unless given), the optimizer
    state and, with ``train.ema_decay``, the EMA copy of the parameters."""
    size = config.data.image_size

    def init_state(rng, params=None, batch_stats=None):
        if params is None:
            variables = model.init(rng, jnp.zeros((1, size, size, channels), jnp.float32), train=False)
            params, batch_stats = variables["params"], variables.get("batch_stats", {})
        ema_params = params if config.train.ema_decay else {}
        return TrainState(jnp.zeros((), jnp.int32), params, batch_stats, tx.init(params), ema_params)

    return init_state


def initial_variables(params: Any, batch_stats: Any, directory: str, num_classes: int) -> tuple[Any, Any]:
    """``params``/``batch_stats`` with every array that ``directory``'s imported weights provide in the same
    shape (``cnn_jax.weights``); a classifier of another size keeps its fresh initialisation, with a warning."""
    from cnn_jax import weights

    loaded, meta = weights.load_variables(directory)
    loaded_classes = meta.get("overrides", {}).get("num_classes", 1000)
    skipped: list[str] = []

    def take(tree, source, kind):
        flat_source = {jax.tree_util.keystr(k): v for k, v in
                       jax.tree_util.tree_flatten_with_path(source.get(kind, {}))[0]}

        def pick(path, leaf):
            name = jax.tree_util.keystr(path)
            if name not in flat_source:
                raise ValueError(f"train.init_from={directory}: {kind}{name} {leaf.shape} of "
                                 f"{meta.get('model')!r} weights is missing; the weights do not fit this model")
            value = flat_source[name]
            if tuple(value.shape) != tuple(leaf.shape):
                refit = (value.shape[-1], leaf.shape[-1]) == (loaded_classes, num_classes)
                if refit and tuple(value.shape[:-1]) == tuple(leaf.shape[:-1]):
                    skipped.append(f"{kind}{name} {tuple(value.shape)} -> {tuple(leaf.shape)}")
                    return leaf
                raise ValueError(f"train.init_from={directory}: {kind}{name} has shape {tuple(value.shape)}, "
                                 f"the model expects {tuple(leaf.shape)}")
            return jnp.asarray(value, leaf.dtype)

        return jax.tree_util.tree_map_with_path(pick, tree)

    params, batch_stats = take(params, loaded, "params"), take(batch_stats, loaded, "batch_stats")
    if skipped:
        logging.warning("init_from %s: kept the fresh initialisation of %s (another number of classes)",
                        directory, ", ".join(skipped))
    return params, batch_stats


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> dict[str, float]:
    """Trains ``config`` in ``workdir`` (resuming from its newest checkpoint) and returns the final eval metrics."""
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if jax.process_index() == 0:
        (workdir / "config.json").write_text(config.to_json(indent=2))

    dataset = sources.load_dataset(config.data.name, config.data.data_dir, manual_dir=config.data.manual_dir,
                                   train_split=config.data.train_split, eval_split=config.data.eval_split).subset(
        config.data.max_train_examples, config.data.max_eval_examples)
    transforms = pipeline.make_transforms(config, dataset)
    schedule = Schedule.resolve(config, len(dataset.train))
    model = build_model(config)
    mesh = parallel.data_mesh()
    _check_batch_layout(config)
    replicated = parallel.replicated(mesh)

    lr_fn = optim.learning_rate_schedule(config.optimizer, schedule.learning_rate, schedule.total_steps,
                                         schedule.steps_per_epoch)
    tx = optim.make_optimizer(config.optimizer, lr_fn)
    init_state = state_initializer(model, tx, config, dataset.channels)
    # The initialiser draws one random kernel per parameter: with "rbg" keys it compiles ~2x faster than with
    # threefry (ResNet-50: 19.6 -> 10.9 s, BENCHMARKS.md), which is most of the time to the first step on CPU.
    init_key = jax.random.key(config.seed, impl="rbg")
    with steps.garbage_collection_paused():
        abstract = jax.eval_shape(init_state, init_key)
    rng = jax.random.key(config.seed + 1)
    checkpoint_timeout_s = config.train.checkpoint_timeout_s or None  # 0: the Checkpointer's default
    checkpointer = Checkpointer(workdir, keep=config.train.keep_checkpoints, name="checkpoints",
                                timeout_s=checkpoint_timeout_s)
    abstract = abstract_with_shardings(abstract, replicated)
    restored = checkpointer.restore_latest(abstract)
    start_step = 0 if restored is None else restored[0]
    if restored is not None and jax.process_index() == 0:
        print(f"resumed from step {start_step} ({json.dumps(restored[2])})", flush=True)

    batches = pipeline.prefetch(pipeline.train_batches(
        dataset.train, transforms.train, batch_transform=transforms.batch, global_batch=config.train.global_batch,
        start_step=start_step, seed=config.seed, process_index=jax.process_index(),
        process_count=jax.process_count(), num_threads=config.data.num_threads,
        worker_processes=config.data.worker_processes),
        transform=lambda batch: parallel.global_batch(  # float32 images are not copied (copy=False)
            mesh, batch[0].astype(image_dtype(config), copy=False), *batch[1:]))
    # XLA:CPU's CSE barrier expander strips rematerialisation (memory_efficient DenseNet, scanned stages).
    keep_remat = config.train.compile_keep_remat and jax.default_backend() == "cpu"
    compiler_options = KEEP_REMAT_OPTIONS if keep_remat else None
    train_step = jax.jit(steps.make_train_step(model, tx, config, lr_fn), donate_argnums=0,
                         in_shardings=(replicated, parallel.batch_sharded(mesh), parallel.batch_sharded(mesh),
                                       replicated), out_shardings=(replicated, replicated),
                         compiler_options=compiler_options)

    def compile_step():
        first_batch = next(batches)  # the labels' shape depends on the batch transform (mixup: soft targets)
        return train_step.lower(abstract, *first_batch, rng).compile(), first_batch

    def create_state():
        if restored is not None:
            return restored[1]
        state = jax.jit(init_state, out_shardings=replicated)(init_key)
        if config.train.init_from:
            params, batch_stats = initial_variables(state.params, state.batch_stats, config.train.init_from,
                                                  model.num_classes)
            state = jax.jit(init_state, out_shardings=replicated)(None, params, batch_stats)
        return state

    if jax.process_index() == 0:
        print(f"{config.model.name}: {sum(x.size for x in jax.tree_util.tree_leaves(abstract.params)):,} "
              f"parameters, {schedule.total_steps} steps ({schedule.steps_per_epoch}/epoch), "
              f"lr {schedule.learning_rate:g}, {jax.device_count()} devices", flush=True)
    stop_step = schedule.total_steps
    if config.train.stop_after_steps is not None:
        stop_step = min(stop_step, start_step + config.train.stop_after_steps)
    if start_step < stop_step:
        state, (train_step, first_batch) = steps.initialise_while_compiling(create_state, compile_step)
        batches = itertools.chain([first_batch], batches)
        del first_batch  # the chain holds it until step start_step has used it
    else:  # a finished run relaunched: nothing to train
        state = create_state()
    eval_step = jax.jit(steps.make_eval_step(model))
    # Its own name: it saves the same steps as `checkpointer`, concurrently (distinct orbax barrier keys).
    best = Checkpointer(workdir / "best", keep=1, name="best", timeout_s=checkpoint_timeout_s)
    best_top1 = best.read_meta()["eval/top1"] if best.manager.latest_step() is not None else -1.0
    writer = MetricWriter(workdir)

    eval_metrics: dict[str, float] = {}
    step, window_start, window_steps, data_wait = start_step, time.time(), 0, 0.0
    # Each step's loss and top-1 since the last log (device scalars, fetched at the log): the logged train/loss and
    # train/top1 are means over the window, so they measure training error over the epoch, not one batch's.
    window: list[tuple[jax.Array, jax.Array]] = []
    previous_loss = None  # the last dispatched step's loss: ready once that step has finished on the devices
    with _Preemption() as preemption:
        while step < stop_step:
            wait_start = time.time()
            images, labels = next(batches)  # already on the devices: the prefetch thread places the batches
            # Steps run asynchronously: a wait that ends before the previous step finishes idles no device.
            if previous_loss is None or previous_loss.is_ready():
                data_wait += time.time() - wait_start
            state, metrics = train_step(state, images, labels, rng)
            previous_loss = metrics["train/loss"]
            window.append((metrics["train/loss"], metrics["train/top1"]))
            step += 1
            window_steps += 1
            last = step == stop_step
            if step % config.train.log_every_steps == 0 or last:
                metrics = jax.device_get(metrics)
                window_losses, window_top1 = np.asarray(jax.device_get(window), np.float64).T
                window = []
                bad = np.flatnonzero(~np.isfinite(window_losses))
                if bad.size:
                    first_bad = step - window_losses.size + 1 + int(bad[0])
                    raise FloatingPointError(f"non-finite training loss {window_losses[bad[0]]} at step {first_bad} "
                                             f"(the first since the last log, step {step - window_losses.size})")
                metrics |= {"train/loss": float(window_losses.mean()), "train/top1": float(window_top1.mean())}
                elapsed = time.time() - window_start
                images_per_s = window_steps * config.train.global_batch / max(elapsed, 1e-9)
                eta = (schedule.total_steps - step) * elapsed / window_steps
                metrics |= {"train/images_per_s": images_per_s, "train/step_time_s": elapsed / window_steps,
                            "train/data_wait_fraction": data_wait / max(elapsed, 1e-9)}
                writer.write(step, metrics)
                if jax.process_index() == 0:
                    print(f"step {step}/{schedule.total_steps} epoch {step / schedule.steps_per_epoch:.2f} "
                          f"loss {metrics['train/loss']:.4f} top1 {metrics['train/top1']:.3f} "
                          f"{images_per_s:.0f} img/s ETA {eta:.0f}s", flush=True)
                window_start, window_steps, data_wait = time.time(), 0, 0.0
            if step % schedule.eval_every_steps == 0 or last:
                eval_args = (dataset, transforms.eval, config, mesh)
                eval_metrics = evaluate(eval_step, (state.params, state.batch_stats), *eval_args)
                if config.train.ema_decay:
                    eval_metrics |= evaluate(eval_step, (state.ema_params, state.batch_stats), *eval_args,
                                             prefix="eval_ema")
                writer.write(step, eval_metrics)
                if jax.process_index() == 0:
                    print(f"eval step {step}: " + "  ".join(
                        f"{prefix} top1 {eval_metrics[f'{prefix}/top1']:.4f} top5 {eval_metrics[f'{prefix}/top5']:.4f}"
                        f" loss {eval_metrics[f'{prefix}/loss']:.4f}"
                        for prefix in ("eval", "eval_ema") if f"{prefix}/top1" in eval_metrics), flush=True)
                if eval_metrics["eval/top1"] > best_top1:
                    best_top1 = eval_metrics["eval/top1"]
                    best.save(step, state, {"step": step, "model": config.model.name, **eval_metrics})
            if step % config.train.checkpoint_every_steps == 0 or last or preemption.requested:
                checkpointer.save(step, state, {"step": step, "model": config.model.name})
            if preemption.requested:
                break
    try:
        checkpointer.close()  # waits for the last save; raises CheckpointSaveError if it failed
    finally:
        best.close()
        writer.close()
    return eval_metrics

