"""Pooling: max/average as a module (ceil mode, padding in the divisor or not) and PyTorch's adaptive average."""

from __future__ import annotations

import math

import flax.linen as nn
import jax.numpy as jnp

from cnn_jax.layers.types import Array
from cnn_jax.ops import conv_ops


def adaptive_avg_pool(x: Array, output_size: int) -> Array:
    """PyTorch's AdaptiveAvgPool2d for NHWC: bin i covers ``[floor(i*H/o), ceil((i+1)*H/o))``.

    torchvision's AlexNet and VGG pool to 6x6/7x7 before the classifier, so the FC sizes (and parameter counts)
    do not depend on the input resolution.
    """
    height, width = x.shape[1:3]
    if (height, width) == (output_size, output_size):
        return x

    def bins(size: int) -> list[tuple[int, int]]:
        return [(i * size // output_size, math.ceil((i + 1) * size / output_size)) for i in range(output_size)]

    rows = [jnp.mean(x[:, a:b], axis=1) for a, b in bins(height)]
    x = jnp.stack(rows, axis=1)
    cols = [jnp.mean(x[:, :, a:b], axis=2) for a, b in bins(width)]
    return jnp.stack(cols, axis=2)


class Pool(nn.Module):
    """Max or average pooling as a module, so the per-layer analysis sees it as a layer.

    ``padding`` is symmetric per side; ``ceil_mode`` pads the bottom/right so a partial last window is kept
    (Caffe/PyTorch ``ceil_mode=True``, used by GoogLeNet and NiN). ``count_include_pad`` says whether zero padding
    counts in the average's divisor (PyTorch's default True; TF/Keras "SAME" pooling excludes it).
    """

    kind: str
    window: int
    strides: int | None = None
    padding: int = 0
    ceil_mode: bool = False
    count_include_pad: bool = True

    @nn.compact
    def __call__(self, x: Array) -> Array:
        strides = self.strides or self.window
        pads = []
        for size in x.shape[1:3]:
            extra = 0
            if self.ceil_mode:
                out = -(-(size + 2 * self.padding - self.window) // strides) + 1
                # PyTorch: the last window must start inside the (left-padded) input.
                if (out - 1) * strides >= size + self.padding:
                    out -= 1
                extra = max(0, (out - 1) * strides + self.window - (size + 2 * self.padding))
            pads.append((self.padding, self.padding + extra))
        window, stride = (self.window, self.window), (strides, strides)
        if self.kind == "max":
            return conv_ops.max_pool(x, window, stride, pads)  # = nn.max_pool, with a fast gradient on XLA:CPU
        if self.kind == "avg":
            return nn.avg_pool(x, window, stride, padding=pads, count_include_pad=self.count_include_pad)
        raise ValueError(f"unknown pooling kind {self.kind!r}; expected 'max' or 'avg'")
