"""Optimisers and learning-rate schedules from the config (optax)."""

from __future__ import annotations

import jax
import ml_collections
import optax


def learning_rate_schedule(config: ml_collections.ConfigDict, base_lr: float, total_steps: int,
                           steps_per_epoch: int) -> optax.Schedule:
    """Linear warmup, then ``cosine``, ``step`` (x ``decay_factor`` at ``decay_epochs``), ``exponential``
    (x ``decay_factor`` every ``decay_every_epochs``) or ``constant``."""
    warmup = int(config.warmup_epochs * steps_per_epoch)
    kind = config.schedule
    if kind == "cosine":
        after = optax.cosine_decay_schedule(base_lr, max(1, total_steps - warmup))
    elif kind == "step":
        boundaries = {int(e * steps_per_epoch) - warmup: config.decay_factor for e in config.decay_epochs}
        after = optax.piecewise_constant_schedule(base_lr, boundaries)
    elif kind == "exponential":
        after = optax.exponential_decay(base_lr, int(config.decay_every_epochs * steps_per_epoch),
                                        config.decay_factor, staircase=True)
    elif kind == "constant":
        after = optax.constant_schedule(base_lr)
    else:
        raise ValueError(f"unknown optimizer.schedule {kind!r}; expected cosine, step, exponential or constant")
    if warmup == 0:
        return after
    return optax.join_schedules([optax.linear_schedule(0.0, base_lr, warmup), after], [warmup])


def decay_mask(params) -> object:
    """True for conv/dense kernels (ndim > 1): no weight decay on BatchNorm parameters and biases."""
    return jax.tree_util.tree_map(lambda p: p.ndim > 1, params)


def make_optimizer(config: ml_collections.ConfigDict, schedule: optax.Schedule) -> optax.GradientTransformation:
    """SGD (+Nesterov), TF-style RMSProp or AdamW, with masked decoupled-from-loss L2 weight decay."""
    name = config.name
    mask = None if config.decay_all_params else decay_mask
    # L2 weight decay added to the gradient before the update (the classic SGD formulation of the papers).
    weight_decay = optax.add_decayed_weights(config.weight_decay, mask=mask)
    if name == "sgd":
        opt = optax.sgd(schedule, momentum=config.momentum or None, nesterov=config.nesterov)
    elif name == "rmsprop":
        # TensorFlow's RMSProp (EfficientNet/MobileNet/Inception recipes): eps inside the sqrt, initial
        # accumulator 1 in TF; optax's ``eps_in_sqrt``/``initial_scale`` select that form.
        opt = optax.rmsprop(schedule, decay=config.rmsprop_decay, eps=config.eps, momentum=config.momentum,
                            eps_in_sqrt=True, initial_scale=1.0)
    elif name == "adamw":
        return optax.adamw(schedule, weight_decay=config.weight_decay, mask=mask)
    else:
        raise ValueError(f"unknown optimizer.name {name!r}; expected sgd, rmsprop or adamw")
    return optax.chain(weight_decay, opt)
