"""Classification losses: label-smoothed cross-entropy and auxiliary-classifier weighting."""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import optax


def cross_entropy(logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0) -> jax.Array:
    """Per-example softmax cross-entropy (float32) with uniform label smoothing (Szegedy et al. 2015 Sec. 7).

    ``labels`` are class ids ``(B,)`` or soft targets ``(B, num_classes)`` (mixup/cutmix), smoothed likewise.
    """
    logits = logits.astype(jnp.float32)
    targets = labels.astype(jnp.float32) if labels.ndim == 2 else jax.nn.one_hot(labels, logits.shape[-1])
    return optax.softmax_cross_entropy(logits, optax.smooth_labels(targets, label_smoothing))


def class_ids(labels: jax.Array) -> jax.Array:
    """Class ids from ids or soft targets (the largest target weight), for accuracy metrics."""
    return jnp.argmax(labels, axis=-1) if labels.ndim == 2 else labels


def total_loss(logits: jax.Array, aux_logits: Mapping[str, jax.Array], labels: jax.Array, *, label_smoothing: float,
               aux_weight: float, aux_weights: Mapping[str, float], mask: jax.Array | None = None) -> jax.Array:
    """Mean main loss plus ``weight x`` mean loss of each auxiliary head (``aux_weights[name]``, else ``aux_weight``;
    GoogLeNet's paper uses 0.3 per head)."""
    def mean(x):
        return jnp.mean(x) if mask is None else jnp.sum(x * mask) / jnp.maximum(jnp.sum(mask), 1)

    loss = mean(cross_entropy(logits, labels, label_smoothing))
    for name, aux in aux_logits.items():
        loss += aux_weights.get(name, aux_weight) * mean(cross_entropy(aux, labels, label_smoothing))
    return loss


def topk_correct(logits: jax.Array, labels: jax.Array, k: int) -> jax.Array:
    """1.0 where the label is among the ``k`` highest logits."""
    top = jax.lax.top_k(logits, min(k, logits.shape[-1]))[1]
    return jnp.any(top == labels[:, None], axis=-1).astype(jnp.float32)
