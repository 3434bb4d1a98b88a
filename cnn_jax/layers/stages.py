"""The stage runner of the ResNet-style families: a strided first block, then identical blocks, unrolled or under
``nn.scan`` (parameters stacked)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax.numpy as jnp

from cnn_jax.layers.types import Array


def run_stage(
    block: Callable[..., nn.Module],
    x: Array,
    rates: Sequence[float],
    *,
    strides: int,
    prefix: str,
    train: bool,
    scan: bool,
) -> Array:
    """Runs one stage: ``block(strides=..., name=...)`` makes a unit, called as ``unit(x, train=, drop_path_rate=)``.

    The first unit (stride, projection) is ``{prefix}_block0``. The ``len(rates) - 1`` identical units after it are
    ``{prefix}_block1...`` or, with ``scan``, a single ``nn.scan`` module ``{prefix}_blocks`` whose parameters,
    BatchNorm statistics and captured intermediates are stacked on a leading axis and whose per-unit drop-path rates
    are a scanned array.
    """
    x = block(strides=strides, name=f"{prefix}_block0")(x, train=train, drop_path_rate=rates[0])
    rest = list(rates[1:])
    if not scan:
        for index, rate in enumerate(rest, start=1):
            x = block(strides=1, name=f"{prefix}_block{index}")(x, train=train, drop_path_rate=rate)
        return x
    if not rest:
        return x
    # Zero rates stay a Python 0.0, so training without drop-path needs no "dropout" PRNG stream.
    traced = any(rate > 0.0 for rate in rest)

    def body(unit: nn.Module, carry: Array, rate: Array) -> tuple[Array, None]:
        return unit(carry, train=train, drop_path_rate=rate if traced else 0.0), None

    scanned = nn.scan(
        body,
        variable_axes={"params": 0, "batch_stats": 0, "intermediates": 0},
        split_rngs={"params": True, "dropout": True},
        length=len(rest),
    )
    x, _ = scanned(block(strides=1, name=f"{prefix}_blocks"), x, jnp.asarray(rest, jnp.float32))
    return x
