"""Optimisers and learning-rate schedules from the config (optax)."""

from __future__ import annotations

import jax
import ml_collections
import optax


def warmup_steps(config: ml_collections.ConfigDict, steps_per_epoch: int) -> int:
    """Steps of linear warmup: ``warmup_epochs`` of ``config.optimizer``, rounded down."""
    return int(config.warmup_epochs * steps_per_epoch)


def learning_rate_schedule(config: ml_collections.ConfigDict, base_lr: float, total_steps: int,
                           steps_per_epoch: int) -> optax.Schedule:
    """Linear warmup, then ``cosine``, ``step`` (x ``decay_factor`` at ``decay_epochs``), ``exponential``
    (x ``decay_factor`` every ``decay_every_epochs``), ``linear`` (to 0 at the end; ShuffleNet) or ``constant``."""
    warmup = warmup_steps(config, steps_per_epoch)
    kind = config.schedule
    if kind == "cosine":
        after = optax.cosine_decay_schedule(base_lr, max(1, total_steps - warmup))
    elif kind == "step":
        boundaries = {int(e * steps_per_epoch) - warmup: config.decay_factor for e in config.decay_epochs}
        after = optax.piecewise_constant_schedule(base_lr, boundaries)
    elif kind == "exponential":
        after = optax.exponential_decay(base_lr, int(config.decay_every_epochs * steps_per_epoch),
                                        config.decay_factor, staircase=True)
    elif kind == "linear":
        after = optax.linear_schedule(base_lr, 0.0, max(1, total_steps - warmup))
    elif kind == "constant":
        after = optax.constant_schedule(base_lr)
    else:
        raise ValueError(f"unknown optimizer.schedule {kind!r}; expected cosine, step, exponential, linear or constant")
    if warmup == 0:
        return after
    return optax.join_schedules([optax.linear_schedule(0.0, base_lr, warmup), after], [warmup])


def decay_mask(params) -> object:
    """True for conv/dense kernels (ndim > 1): no weight decay on BatchNorm parameters and biases."""
    return jax.tree_util.tree_map(lambda p: p.ndim > 1, params)


def make_optimizer(config: ml_collections.ConfigDict, schedule: optax.Schedule) -> optax.GradientTransformation:
    """SGD (+Nesterov), TF-style RMSProp, AdamW or LARS, with masked weight decay and optional gradient clipping."""
    name = config.name
    mask = None if config.decay_all_params else decay_mask
    # L2 weight decay added to the gradient before the update (the classic SGD formulation of the papers).
    l2 = optax.add_decayed_weights(config.weight_decay, mask=mask)
    if name == "sgd":
        opt = optax.chain(l2, optax.sgd(schedule, momentum=config.momentum or None, nesterov=config.nesterov))
    elif name == "rmsprop":
        # TensorFlow's RMSProp (EfficientNet/MobileNet/Inception recipes): eps inside the sqrt, initial
        # accumulator 1 in TF; optax's ``eps_in_sqrt``/``initial_scale`` select that form.
        opt = optax.chain(l2, optax.rmsprop(schedule, decay=config.rmsprop_decay, eps=config.eps,
                                            momentum=config.momentum, eps_in_sqrt=True, initial_scale=1.0))
    elif name == "adamw":
        opt = optax.adamw(schedule, weight_decay=config.weight_decay, mask=mask)
    elif name == "lars":
        # Layer-wise trust ratio ||w|| / ||g + wd w|| (You et al. 2017, Eq. 6); BatchNorm parameters and biases are
        # excluded from both decay and adaptation, as in the large-batch ResNet-50 recipes (Goyal et al. 2017).
        opt = optax.lars(schedule, weight_decay=config.weight_decay, weight_decay_mask=mask or True,
                         trust_coefficient=config.lars_trust_coefficient, trust_ratio_mask=decay_mask,
                         momentum=config.momentum, nesterov=config.nesterov)
    else:
        raise ValueError(f"unknown optimizer.name {name!r}; expected sgd, rmsprop, adamw or lars")
    if config.clip_global_norm:  # Inception v3 (Szegedy et al. 2016 Sec. 8): gradient clipping at 2.0
        opt = optax.chain(optax.clip_by_global_norm(config.clip_global_norm), opt)
    return opt
