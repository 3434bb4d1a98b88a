"""Network in Network: Lin, Chen & Yan 2013, "Network in network", arXiv:1312.4400 (mlpconv layers = a conv
followed by 1x1 convs, Sec. 3.1; global average pooling instead of FC layers, Sec. 3.2).

The paper reports no ImageNet network; ``nin_imagenet`` is the authors' Caffe Model Zoo ``nin_imagenet`` model
(models.md Sec. 4): four mlpconv blocks

  conv1 96 11x11/4 + cccp1, cccp2 (96)        -> max-pool 3/2
  conv2 256 5x5 pad 2 + cccp3, cccp4 (256)     -> max-pool 3/2
  conv3 384 3x3 pad 1 + cccp5, cccp6 (384)     -> max-pool 3/2 -> dropout 0.5
  conv4 1024 3x3 pad 1 + cccp7 1024, cccp8 (classes)  -> global average pool = logits

with a ReLU after every convolution, cccp8 included (Caffe ``relu12``), and Caffe's pooling, which keeps the partial
last window (54 -> 27 -> 13 -> 6 at 224). The Caffe model's 6x6 stride-1 average pool is the global average at 224;
a global mean keeps other sizes working. 7,595,176 parameters: the param_counts.csv ``computed`` row, matched.
Caffe layer names ``conv4-1024``, ``cccp7-1024``, ``cccp8-1024`` are ``conv4``, ``cccp7``, ``cccp8`` here.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from cnn_jax.layers import Array, ClassifierModel, Conv, ModelOutput, Pool, check_images, conv_kernel_init
from cnn_jax.registry import ModelInfo, register_model

PAPER = "Lin, Chen & Yan 2013, Network in network, arXiv:1312.4400"

# One mlpconv block per row: (channels, kernel, stride, padding) of its spatial conv; two 1x1 convs follow.
# The last block's final 1x1 conv has num_classes outputs.
IMAGENET_BLOCKS: tuple[tuple[int, int, int, int], ...] = (
    (96, 11, 4, 0),
    (256, 5, 1, 2),
    (384, 3, 1, 1),
    (1024, 3, 1, 1),
)


class NiN(ClassifierModel):
    """Network in Network: mlpconv blocks separated by max-pools, dropout before the last block, global average
    pooling of per-class maps as the classifier.

    Attributes:
      blocks: ``(channels, kernel, stride, padding)`` of each mlpconv block's first conv.
      drop_rate: dropout before the last mlpconv block (0.5 in the Caffe model).
    """

    blocks: tuple[tuple[int, int, int, int], ...] = IMAGENET_BLOCKS
    drop_rate: float = 0.5

    @nn.compact
    def __call__(self, images: Array, *, train: bool) -> ModelOutput:
        check_images(images, self.in_channels, "NiN")
        opts = {"kernel_init": conv_kernel_init, "dtype": self.dtype, "param_dtype": self.param_dtype}
        x = images
        last = len(self.blocks)
        for b, (channels, kernel, stride, pad) in enumerate(self.blocks, start=1):
            if b == last:
                x = nn.Dropout(self.drop_rate, deterministic=not train)(x)
            padding = ((pad, pad), (pad, pad))
            x = nn.relu(Conv(channels, (kernel, kernel), stride, padding=padding, **opts, name=f"conv{b}")(x))
            for j in (2 * b - 1, 2 * b):
                features = self.num_classes if (b == last and j == 2 * b) else channels
                x = nn.relu(Conv(features, (1, 1), **opts, name=f"cccp{j}")(x))
            if b != last:
                x = Pool("max", 3, strides=2, ceil_mode=True, name=f"pool{b}")(x)
        return ModelOutput(logits=jnp.mean(x, axis=(1, 2)))


register_model(
    "nin_imagenet",
    NiN,
    ModelInfo(
        paper=PAPER,
        table="Caffe Model Zoo nin_imagenet (4 mlpconv blocks + global average pooling; models.md Sec. 4)",
        family="nin",
        reference="nin_imagenet",
        min_resolution=39,
    ),
)
