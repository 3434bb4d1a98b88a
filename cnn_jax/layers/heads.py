"""The classifier head."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from cnn_jax.layers.types import Array, Dtype


class ClassifierHead(nn.Module):
    """Global average pool -> dropout(``drop_rate``) -> linear classifier."""

    num_classes: int
    drop_rate: float = 0.0
    dtype: Dtype = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array, *, train: bool) -> Array:
        if x.ndim == 4:
            x = jnp.mean(x, axis=(1, 2))
        x = nn.Dropout(self.drop_rate, deterministic=not train)(x)
        return nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=self.param_dtype, name="fc")(x)
