"""Squeeze-and-excitation and the hard sigmoid / hard swish of MobileNet v3."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_jax.layers.conv import Conv
from cnn_jax.layers.types import Activation, Array, Dtype


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation (Hu et al. 2018, Fig. 2/3): global pool -> 1x1 reduce -> act -> 1x1 expand -> gate.

    ``reduced_channels`` is explicit because families differ in what it is derived from: SENet uses
    ``channels // 16`` of the block output, EfficientNet ``0.25 x`` the block *input*, MobileNet v3
    ``make_divisible(expanded / 4)``.
    """

    reduced_channels: int
    act: Activation = nn.relu
    gate: Activation = nn.sigmoid
    dtype: Dtype = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        channels = x.shape[-1]
        s = jnp.mean(x, axis=(1, 2), keepdims=True)
        s = Conv(self.reduced_channels, (1, 1), dtype=self.dtype, param_dtype=self.param_dtype, name="reduce")(s)
        s = self.act(s)
        s = Conv(channels, (1, 1), dtype=self.dtype, param_dtype=self.param_dtype, name="expand")(s)
        return x * self.gate(s)


def hard_sigmoid(x: Array) -> Array:
    """relu6(x + 3) / 6 (Howard et al. 2019, Eq. 2 context)."""
    return jax.nn.relu6(x + 3.0) / 6.0


def hard_swish(x: Array) -> Array:
    """x * relu6(x + 3) / 6 (Howard et al. 2019, Sec. 5.2)."""
    return x * hard_sigmoid(x)
