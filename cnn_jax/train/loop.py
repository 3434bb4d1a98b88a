"""``train_and_evaluate(config, workdir)``: the sharded training loop.

One mesh over every device of every process; the batch is sharded along ``data``, the train state (params,
optimizer state, BatchNorm statistics) replicated. The state is created already placed (shapes first with
``jax.eval_shape``, then a jitted init with ``out_shardings``), the step is jitted with explicit shardings and a
donated state. On start the newest readable checkpoint in ``workdir`` is restored; SIGTERM saves one and exits.
"""

from __future__ import annotations

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
import optax

import cnn_jax
from cnn_jax import parallel
from cnn_jax.data import pipeline
from cnn_jax.train import losses, optim
from cnn_jax.train.checkpoint import Checkpointer, abstract_with_shardings
from cnn_jax.train.metrics import MetricWriter

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any


@flax.struct.dataclass
class Schedule:
    """Durations resolved at run time from the config and the dataset (never stored in the config)."""

    steps_per_epoch: int
    total_steps: int
    learning_rate: float  # base_lr * global_batch / 256

    @classmethod
    def resolve(cls, config: ml_collections.ConfigDict, num_train_examples: int) -> Schedule:
        steps_per_epoch = num_train_examples // config.train.global_batch
        if config.train.num_steps is not None:
            total = config.train.num_steps
        else:
            total = int(round(config.train.epochs * steps_per_epoch))
        return cls(steps_per_epoch, total, config.optimizer.base_lr * config.train.global_batch / 256)


def build_model(config: ml_collections.ConfigDict):
    """The registry model named by ``config.model`` (``name``, ``dtype`` and any other key as an override)."""
    overrides = {k: v for k, v in config.model.items() if k not in ("name", "dtype")}
    dtype = config.model.get("dtype", "float32")
    if dtype not in DTYPES:
        raise ValueError(f"config.model.dtype={dtype!r}; expected one of {sorted(DTYPES)}")
    # bf16 compute, float32 parameters; BatchNorm statistics and the loss are float32 (see losses.cross_entropy).
    return cnn_jax.create_model(config.model.name, dtype=DTYPES[dtype], **overrides)


def _make_train_step(model, tx, config: ml_collections.ConfigDict, schedule_fn):
    loss_cfg = config.loss
    aux_weights = dict(loss_cfg.aux_weights)

    def train_step(state: TrainState, images, labels, rng):
        dropout_rng = jax.random.fold_in(rng, state.step)

        def loss_fn(params):
            out, new_vars = model.apply({"params": params, "batch_stats": state.batch_stats}, images, train=True,
                                        rngs={"dropout": dropout_rng}, mutable=["batch_stats"])
            loss = losses.total_loss(out.logits, out.aux_logits, labels, label_smoothing=loss_cfg.label_smoothing,
                                     aux_weight=loss_cfg.aux_weight, aux_weights=aux_weights)
            return loss, (out.logits, new_vars.get("batch_stats", {}))

        (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {
            "train/loss": loss,
            "train/top1": jnp.mean(losses.topk_correct(logits, labels, 1)),
            "train/learning_rate": schedule_fn(state.step),
            "train/grad_norm": optax.global_norm(grads),
            "train/param_norm": optax.global_norm(params),
        }
        return TrainState(state.step + 1, params, batch_stats, opt_state), metrics

    return train_step


def _make_eval_step(model):
    def eval_step(state: TrainState, images, labels, mask):
        out = model.apply({"params": state.params, "batch_stats": state.batch_stats}, images, train=False)
        loss = losses.cross_entropy(out.logits, labels)
        return {
            "loss": jnp.sum(loss * mask),
            "top1": jnp.sum(losses.topk_correct(out.logits, labels, 1) * mask),
            "top5": jnp.sum(losses.topk_correct(out.logits, labels, 5) * mask),
            "count": jnp.sum(mask),
        }

    return eval_step


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


def evaluate(eval_step, state, dataset, config, mesh) -> dict[str, float]:
    """Exact evaluation: every example of the eval split scored once (padded last batch, masked)."""
    totals: dict[str, float] = {}
    batches = pipeline.eval_batches(dataset, global_batch=config.train.eval_batch, image_size=config.data.image_size,
                                    process_index=jax.process_index(), process_count=jax.process_count())
    for images, labels, mask in batches:
        images, labels, mask = parallel.global_batch(mesh, images, labels, mask.astype(np.float32))
        for key, value in eval_step(state, images, labels, mask).items():
            totals[key] = totals.get(key, 0.0) + float(value)
    count = totals.pop("count")
    return {f"eval/{k}": v / count for k, v in totals.items()} | {"eval/examples": count}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> dict[str, float]:
    """Trains ``config`` in ``workdir`` (resuming from its newest checkpoint) and returns the final eval metrics."""
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if jax.process_index() == 0:
        (workdir / "config.json").write_text(config.to_json(indent=2))

    dataset = pipeline.load_dataset(config.data.name, config.data.data_dir).subset(
        config.data.max_train_examples, config.data.max_eval_examples)
    schedule = Schedule.resolve(config, len(dataset.train))
    model = build_model(config)
    mesh = parallel.data_mesh()
    if config.train.global_batch % jax.device_count():
        raise ValueError(
            f"train.global_batch={config.train.global_batch} must divide over {jax.device_count()} devices")
    replicated = parallel.replicated(mesh)

    lr_fn = optim.learning_rate_schedule(config.optimizer, schedule.learning_rate, schedule.total_steps,
                                         schedule.steps_per_epoch)
    tx = optim.make_optimizer(config.optimizer, lr_fn)
    size = config.data.image_size
    sample = jnp.zeros((1, size, size, dataset.train.images.shape[-1]), jnp.float32)

    def init_state(rng):
        variables = model.init(rng, sample, train=False)
        params = variables["params"]
        return TrainState(jnp.zeros((), jnp.int32), params, variables.get("batch_stats", {}), tx.init(params))

    abstract = jax.eval_shape(init_state, jax.random.key(config.seed))
    rng = jax.random.key(config.seed + 1)
    checkpointer = Checkpointer(workdir, keep=config.train.keep_checkpoints)
    restored = checkpointer.restore_latest(abstract_with_shardings(abstract, replicated))
    if restored is None:
        state = jax.jit(init_state, out_shardings=replicated)(jax.random.key(config.seed))
        start_step = 0
    else:
        start_step, state, meta = restored
        logging.info("resumed from step %d (%s)", start_step, json.dumps(meta))

    train_step = jax.jit(_make_train_step(model, tx, config, lr_fn), donate_argnums=0,
                         in_shardings=(replicated, parallel.batch_sharded(mesh), parallel.batch_sharded(mesh),
                                       replicated), out_shardings=(replicated, replicated))
    eval_step = jax.jit(_make_eval_step(model))
    writer = MetricWriter(workdir)
    if jax.process_index() == 0:
        print(f"{config.model.name}: {sum(x.size for x in jax.tree_util.tree_leaves(state.params)):,} parameters, "
              f"{schedule.total_steps} steps ({schedule.steps_per_epoch}/epoch), lr {schedule.learning_rate:g}, "
              f"{jax.device_count()} devices", flush=True)

    batches = pipeline.prefetch(pipeline.train_batches(
        dataset, global_batch=config.train.global_batch, start_step=start_step, seed=config.seed,
        image_size=size, augment=config.data.augment, process_index=jax.process_index(),
        process_count=jax.process_count()))
    eval_every = max(1, int(config.train.eval_every_epochs * schedule.steps_per_epoch))
    eval_metrics: dict[str, float] = {}
    step, window_start, window_steps = start_step, time.time(), 0
    stop_step = schedule.total_steps
    if config.train.stop_after_steps is not None:
        stop_step = min(stop_step, start_step + config.train.stop_after_steps)
    with _Preemption() as preemption:
        while step < stop_step:
            images, labels = parallel.global_batch(mesh, *next(batches))
            state, metrics = train_step(state, images, labels, rng)
            step += 1
            window_steps += 1
            last = step == stop_step
            if step % config.train.log_every_steps == 0 or last:
                metrics = jax.device_get(metrics)
                if not np.isfinite(metrics["train/loss"]):
                    raise FloatingPointError(f"non-finite training loss {metrics['train/loss']} at step {step}; "
                                             "no checkpoint was written for it")
                elapsed = time.time() - window_start
                images_per_s = window_steps * config.train.global_batch / max(elapsed, 1e-9)
                eta = (schedule.total_steps - step) * elapsed / window_steps
                metrics |= {"train/images_per_s": images_per_s, "train/step_time_s": elapsed / window_steps}
                writer.write(step, metrics)
                if jax.process_index() == 0:
                    print(f"step {step}/{schedule.total_steps} epoch {step / schedule.steps_per_epoch:.2f} "
                          f"loss {metrics['train/loss']:.4f} top1 {metrics['train/top1']:.3f} "
                          f"{images_per_s:.0f} img/s ETA {eta:.0f}s", flush=True)
                window_start, window_steps = time.time(), 0
            if step % eval_every == 0 or last:
                eval_metrics = evaluate(eval_step, state, dataset, config, mesh)
                writer.write(step, eval_metrics)
                if jax.process_index() == 0:
                    print(f"eval step {step}: top1 {eval_metrics['eval/top1']:.4f} top5 {eval_metrics['eval/top5']:.4f}"
                          f" loss {eval_metrics['eval/loss']:.4f}", flush=True)
            if step % config.train.checkpoint_every_steps == 0 or last or preemption.requested:
                checkpointer.save(step, state, {"step": step, "model": config.model.name})
            if preemption.requested:
                break
    checkpointer.close()
    writer.close()
    return eval_metrics

