"""The train state and the pure train/eval step functions (jitted with explicit shardings by the loop).

Options of the train step, all from ``config.train``:
- ``microbatches`` k: gradient accumulation. Example ``i`` of the batch goes to microbatch ``i % k``, so each
  device's share splits evenly and no data moves between devices; gradients and losses are averaged over the k
  microbatches and BatchNorm statistics are updated once per microbatch, in order.
- ``bn_group_size`` N: "ghost" BatchNorm (Hoffer et al. 2017; per-replica statistics in Goyal et al. 2017 Sec. 5):
  statistics over groups of N examples instead of the whole global batch. The model is ``vmap``-ed over the
  groups; with N dividing the per-device batch every group lives on one device and needs no communication.
  The running statistics become the mean of the groups' updates.
- ``ema_decay``: an exponential moving average of the parameters (Polyak averaging, used by the EfficientNet and
  MobileNet recipes with 0.9999), evaluated alongside the raw weights; ``ema_warmup`` uses TensorFlow's
  ``min(decay, (1 + step) / (10 + step))`` so early averages are not dominated by the initialisation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax

from cnn_jax.train import losses


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any
    ema_params: Any  # {} when config.train.ema_decay == 0


def create_train_state(params: Any, batch_stats: Any, tx: optax.GradientTransformation, *, ema: bool = False
                       ) -> TrainState:
    """Step 0 of training from a model's variables: the optimizer state and, with ``ema``, the EMA copy."""
    return TrainState(jnp.zeros((), jnp.int32), params, batch_stats, tx.init(params), params if ema else {})


def state_initializer(model, tx: optax.GradientTransformation, input_shape: tuple[int, ...], *, ema: bool = False
                      ) -> Callable[..., TrainState]:
    """``init_state(rng, params=None, batch_stats=None) -> TrainState``: :func:`create_train_state` on the model's
    variables, initialised on zeros of ``input_shape`` (one NHWC batch) unless given. What the trainer, the
    dry run and the benchmark build, concretely or with ``jax.eval_shape``."""

    def init_state(rng, params=None, batch_stats=None):
        if params is None:
            variables = model.init(rng, jnp.zeros(input_shape, jnp.float32), train=False)
            params, batch_stats = variables["params"], variables.get("batch_stats", {})
        return create_train_state(params, batch_stats, tx, ema=ema)

    return init_state


def ema_decay_at(step: jax.Array, decay: float, warmup: bool) -> jax.Array:
    """The EMA decay used at ``step`` (TensorFlow's ``ExponentialMovingAverage(num_updates=step)`` with warmup)."""
    if not warmup:
        return jnp.asarray(decay, jnp.float32)
    step = step.astype(jnp.float32)
    return jnp.minimum(decay, (1.0 + step) / (10.0 + step))


def _split_microbatches(x: jax.Array, k: int) -> jax.Array:
    """``(B, ...) -> (k, B / k, ...)`` with example ``i`` in microbatch ``i % k`` (keeps the batch sharding)."""
    return jnp.swapaxes(x.reshape(x.shape[0] // k, k, *x.shape[1:]), 0, 1)


def _join_microbatches(x: jax.Array) -> jax.Array:
    return jnp.swapaxes(x, 0, 1).reshape(-1, *x.shape[2:])


def make_train_step(model, tx: optax.GradientTransformation, config: ml_collections.ConfigDict, lr_fn):
    """``train_step(state, images, labels, rng) -> (state, metrics)``; ``labels`` are class ids ``(B,)`` or soft
    targets ``(B, num_classes)`` (mixup/cutmix)."""
    loss_cfg, train_cfg = config.loss, config.train
    aux_weights = dict(loss_cfg.aux_weights)
    k = train_cfg.microbatches
    group = train_cfg.bn_group_size

    def apply_model(params, batch_stats, images, rng):
        def apply(x, r):
            out, new_vars = model.apply({"params": params, "batch_stats": batch_stats}, x, train=True,
                                        rngs={"dropout": r}, mutable=["batch_stats"])
            return out, new_vars.get("batch_stats", {})

        if not group or group >= images.shape[0]:
            return apply(images, rng)
        if images.shape[0] % group:
            raise ValueError(f"train.bn_group_size={group} does not divide the batch of {images.shape[0]} "
                             f"(per microbatch)")
        num_groups = images.shape[0] // group
        grouped = images.reshape(num_groups, group, *images.shape[1:])
        out, stats = jax.vmap(apply)(grouped, jax.random.split(rng, num_groups))
        out = jax.tree_util.tree_map(lambda y: y.reshape(-1, *y.shape[2:]), out)
        return out, jax.tree_util.tree_map(lambda s: jnp.mean(s, axis=0), stats)

    def loss_and_grads(params, batch_stats, images, labels, rng):
        def loss_fn(p):
            out, new_stats = apply_model(p, batch_stats, images, rng)
            loss = losses.total_loss(out.logits, out.aux_logits, labels, label_smoothing=loss_cfg.label_smoothing,
                                     aux_weight=loss_cfg.aux_weight, aux_weights=aux_weights)
            return loss, (out.logits, new_stats)

        (loss, (logits, new_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        return loss, logits, new_stats, grads

    def train_step(state: TrainState, images, labels, rng):
        rng = jax.random.fold_in(rng, state.step)
        if k == 1:
            loss, logits, batch_stats, grads = loss_and_grads(state.params, state.batch_stats, images, labels, rng)
        else:
            def accumulate(carry, xs):
                stats, grad_sum, loss_sum = carry
                loss, logits, stats, grads = loss_and_grads(state.params, stats, *xs)
                return (stats, jax.tree_util.tree_map(jnp.add, grad_sum, grads), loss_sum + loss), logits

            zeros = jax.tree_util.tree_map(jnp.zeros_like, state.params)
            xs = (_split_microbatches(images, k), _split_microbatches(labels, k), jax.random.split(rng, k))
            (batch_stats, grads, loss), logits = jax.lax.scan(
                accumulate, (state.batch_stats, zeros, jnp.zeros((), jnp.float32)), xs)
            grads = jax.tree_util.tree_map(lambda g: g / k, grads)
            loss, logits = loss / k, _join_microbatches(logits)

        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        ema_params = state.ema_params
        if train_cfg.ema_decay:
            decay = ema_decay_at(state.step, train_cfg.ema_decay, train_cfg.ema_warmup)
            ema_params = jax.tree_util.tree_map(lambda e, p: decay * e + (1.0 - decay) * p, ema_params, params)
        metrics = {
            "train/loss": loss,
            "train/top1": jnp.mean(losses.topk_correct(logits, losses.class_ids(labels), 1)),
            "train/learning_rate": lr_fn(state.step),
            "train/grad_norm": optax.global_norm(grads),
            "train/param_norm": optax.global_norm(params),
        }
        return TrainState(state.step + 1, params, batch_stats, opt_state, ema_params), metrics

    return train_step


def with_nonfinite_guard(step_fn):
    """``train_step(state, first_bad, images, labels, rng) -> (state, first_bad, metrics)``: ``step_fn`` that also
    carries ``first_bad``, an int32 scalar on the devices that is 0 until a step's loss or gradient norm is not
    finite and then that step's number (``state.step + 1``) for good. The loop reads it only before it logs, evaluates
    or saves: a diverged state is caught on the step it happens without a host sync per step."""

    def train_step(state: TrainState, first_bad, images, labels, rng):  # the name of the compiled program
        new_state, metrics = step_fn(state, images, labels, rng)
        finite = jnp.isfinite(metrics["train/loss"]) & jnp.isfinite(metrics["train/grad_norm"])
        first_bad = jnp.where((first_bad == 0) & ~finite, state.step + 1, first_bad)
        return new_state, first_bad, metrics

    return train_step


def make_eval_step(model):
    """``eval_step(params, batch_stats, images, labels, mask)``: masked sums of loss, top-1, top-5 and the count."""

    def eval_step(params, batch_stats, images, labels, mask):
        out = model.apply({"params": params, "batch_stats": batch_stats}, images, train=False)
        loss = losses.cross_entropy(out.logits, labels)
        return {
            "loss": jnp.sum(loss * mask),
            "top1": jnp.sum(losses.topk_correct(out.logits, labels, 1) * mask),
            "top5": jnp.sum(losses.topk_correct(out.logits, labels, 5) * mask),
            "count": jnp.sum(mask),
        }

    return eval_step
