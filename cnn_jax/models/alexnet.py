"""AlexNet and ZFNet: five convolutions (the first two followed by response normalisation and max-pooling, the
fifth by max-pooling) and three fully-connected layers with dropout.

- Krizhevsky, Sutskever & Hinton 2012, "ImageNet classification with deep convolutional neural networks", NIPS:
  Sec. 3.5 / Fig. 2 layout, LRN of Sec. 3.3, dropout of Sec. 4.2. ``alexnet_paper`` is that layout:
  96-256-384-384-256 with conv2/4/5 split into two groups (the two GPUs; conv3 and the FC layers see both) and
  LRN, on 227x227 inputs (the text says 224, but 55x55 conv1 maps need (227 - 11) / 4 + 1): 60,965,224
  parameters, the param_counts.csv ``computed`` row. The paper overlaps pooling (3x3, stride 2).
- Krizhevsky 2014, "One weird trick for parallelizing convolutional neural networks", arXiv:1404.5997: the
  single-tower 64-192-384-256-256 layout torchvision ships as ``alexnet`` (61,100,840 parameters, no LRN;
  ``lrn=True`` adds the paper's LRN after conv1/conv2). Its layers are those of the EECS 498-007 lecture 8 table.
- Zeiler & Fergus 2013, "Visualizing and understanding convolutional networks", arXiv:1311.2901, Fig. 3:
  ``zfnet``, conv1 7x7 stride 2 (110x110 maps at 224) and conv2 5x5 stride 2, 384-384-256, 3x3/2 pooling with
  the partial last window kept (110 -> 55, 26 -> 13 as in Fig. 3), contrast normalisation after layers 1-2 (the
  AlexNet LRN here, the paper gives no constants). The paper states no parameter count; 62,357,608 is the
  param_counts.csv ``computed`` row for Fig. 3, matched exactly.

All three average-pool adaptively to 6x6 before fc6 (torchvision's choice), so the FC sizes and parameter counts do
not depend on the input size; at the native sizes the maps are already 6x6 and the pool is the identity.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import numpy as np
from jax import lax

from cnn_jax.layers import (
    Array,
    ClassifierModel,
    Conv,
    ModelOutput,
    Pool,
    adaptive_avg_pool,
    check_images,
    conv_kernel_init,
)
from cnn_jax.registry import ModelInfo, register_model

PAPER_ALEXNET = "Krizhevsky, Sutskever & Hinton 2012, ImageNet classification with deep convolutional neural networks"
PAPER_WEIRD_TRICK = "Krizhevsky 2014, One weird trick for parallelizing convolutional neural networks, arXiv:1404.5997"
PAPER_ZFNET = "Zeiler & Fergus 2013, Visualizing and understanding convolutional networks, arXiv:1311.2901"

# Response-normalisation conventions (sizes in channels). The paper divides by (k + alpha * sum a^2)^beta
# (Sec. 3.3: k = 2, n = 5, alpha = 1e-4, beta = 0.75); Caffe's bvlc_alexnet and PyTorch's LocalResponseNorm
# divide alpha by n and default k to 1.
LRN_CONVENTIONS: dict[str, dict[str, Any]] = {
    "paper": {"size": 5, "alpha": 1e-4, "beta": 0.75, "k": 2.0, "alpha_per_size": False},
    "caffe": {"size": 5, "alpha": 1e-4, "beta": 0.75, "k": 1.0, "alpha_per_size": True},
}


class LocalResponseNorm(nn.Module):
    """Local response normalisation across channels (Krizhevsky et al. 2012, Sec. 3.3).

    b_c = a_c / (k + alpha' * sum_{|c' - c| <= size // 2} a_{c'}^2)^beta, with alpha' = alpha (paper) or
    alpha / size (``alpha_per_size``: Caffe, PyTorch).
    """

    size: int = 5
    alpha: float = 1e-4
    beta: float = 0.75
    k: float = 2.0
    alpha_per_size: bool = False

    @nn.compact
    def __call__(self, x: Array) -> Array:
        half = self.size // 2
        window = (1,) * (x.ndim - 1) + (self.size,)
        padding = ((0, 0),) * (x.ndim - 1) + ((half, self.size - 1 - half),)
        # A concrete zero makes this a windowed sum, which JAX can differentiate.
        sums = lax.reduce_window(x * x, np.zeros((), x.dtype), lax.add, window, (1,) * x.ndim, padding)
        alpha = self.alpha / self.size if self.alpha_per_size else self.alpha
        return x / (self.k + alpha * sums) ** self.beta


@dataclasses.dataclass(frozen=True)
class ConvSpec:
    """One convolution of the feature extractor: ``lrn`` marks where the LRN option applies; ``pool`` adds the
    3x3 / stride-2 max-pool after it; ``bias`` is the paper's initial bias (1 on conv2/4/5 in AlexNet, Sec. 5)."""

    features: int
    kernel: int
    stride: int = 1
    padding: int = 0
    groups: int = 1
    lrn: bool = False
    pool: bool = False
    bias: float = 0.0


TORCHVISION_LAYOUT = (
    ConvSpec(64, 11, 4, 2, lrn=True, pool=True),
    ConvSpec(192, 5, 1, 2, lrn=True, pool=True),
    ConvSpec(384, 3, 1, 1),
    ConvSpec(256, 3, 1, 1),
    ConvSpec(256, 3, 1, 1, pool=True),
)
PAPER_LAYOUT = (
    ConvSpec(96, 11, 4, 0, lrn=True, pool=True),
    ConvSpec(256, 5, 1, 2, groups=2, lrn=True, pool=True, bias=1.0),
    ConvSpec(384, 3, 1, 1),
    ConvSpec(384, 3, 1, 1, groups=2, bias=1.0),
    ConvSpec(256, 3, 1, 1, groups=2, pool=True, bias=1.0),
)
ZFNET_LAYOUT = (
    ConvSpec(96, 7, 2, 1, lrn=True, pool=True),
    ConvSpec(256, 5, 2, 0, lrn=True, pool=True),
    ConvSpec(384, 3, 1, 1),
    ConvSpec(384, 3, 1, 1),
    ConvSpec(256, 3, 1, 1, pool=True),
)


class AlexNet(ClassifierModel):
    """AlexNet-style network: ``layout`` convolutions with ReLU, LRN and max-pooling, then fc6-fc7-fc8.

    Attributes:
      layout: the feature extractor (``TORCHVISION_LAYOUT``, ``PAPER_LAYOUT``, ``ZFNET_LAYOUT``).
      lrn: apply local response normalisation after the convolutions whose spec has ``lrn`` (after the ReLU,
        before the pool, as in the paper).
      lrn_convention: a key of ``LRN_CONVENTIONS``.
      pool_ceil_mode: keep the partial last pooling window (ZFNet's Fig. 3 map sizes).
      paper_init: the paper's initialisation (Sec. 5): weights N(0, 0.01), biases 1 in conv2/4/5 and the hidden FC
        layers, 0 elsewhere; otherwise He-normal convs and LeCun-normal FC layers with zero biases.
      fc_features: width of fc6 and fc7.
      pooled_size: side of the adaptive average pool before fc6.
      drop_rate: dropout before fc6 and fc7 (0.5, Sec. 4.2).
    """

    layout: tuple[ConvSpec, ...] = TORCHVISION_LAYOUT
    lrn: bool = False
    lrn_convention: str = "paper"
    pool_ceil_mode: bool = False
    paper_init: bool = False
    fc_features: int = 4096
    pooled_size: int = 6
    drop_rate: float = 0.5

    def _inits(self, bias: float, conv: bool) -> dict[str, Any]:
        if self.paper_init:
            return {"kernel_init": nn.initializers.normal(0.01), "bias_init": nn.initializers.constant(bias)}
        return {"kernel_init": conv_kernel_init} if conv else {}  # Flax's Dense default is LeCun-normal

    @nn.compact
    def __call__(self, images: Array, *, train: bool) -> ModelOutput:
        check_images(images, self.in_channels, "AlexNet")
        if self.lrn_convention not in LRN_CONVENTIONS:
            raise ValueError(
                f"unknown LRN convention {self.lrn_convention!r}; expected one of {sorted(LRN_CONVENTIONS)}"
            )
        opts = {"dtype": self.dtype, "param_dtype": self.param_dtype}
        x = images
        for i, spec in enumerate(self.layout, start=1):
            pad = spec.padding
            x = Conv(
                spec.features,
                (spec.kernel, spec.kernel),
                strides=spec.stride,
                padding=((pad, pad), (pad, pad)),
                feature_group_count=spec.groups,
                **self._inits(spec.bias, conv=True),
                **opts,
                name=f"conv{i}",
            )(x)
            x = nn.relu(x)
            if self.lrn and spec.lrn:
                x = LocalResponseNorm(**LRN_CONVENTIONS[self.lrn_convention], name=f"lrn{i}")(x)
            if spec.pool:
                x = Pool("max", 3, strides=2, ceil_mode=self.pool_ceil_mode, name=f"pool{i}")(x)
        x = adaptive_avg_pool(x, self.pooled_size)
        x = x.reshape(x.shape[0], -1)
        for name in ("fc6", "fc7"):
            x = nn.Dropout(self.drop_rate, deterministic=not train)(x)
            x = nn.relu(nn.Dense(self.fc_features, **self._inits(1.0, conv=False), **opts, name=name)(x))
        logits = nn.Dense(self.num_classes, **self._inits(0.0, conv=False), **opts, name="fc8")(x)
        return ModelOutput(logits=logits)


register_model(
    "alexnet",
    AlexNet,
    ModelInfo(
        paper=PAPER_WEIRD_TRICK,
        table="torchvision alexnet (single tower 64-192-384-256-256, Sec. 2 of arXiv:1404.5997)",
        family="alexnet",
        reference="alexnet",
        min_resolution=63,
    ),
)
register_model(
    "alexnet_paper",
    AlexNet,
    ModelInfo(
        paper=PAPER_ALEXNET,
        table="Sec. 3.5 / Fig. 2 (two-GPU layout as groups=2), Sec. 3.3 LRN, Sec. 5 initialisation",
        resolution=227,
        crop_fraction=227 / 256,
        family="alexnet",
        reference="alexnet (paper layout: 96-256-384-384-256, groups=2 on conv2/4/5)",
        min_resolution=67,
    ),
    layout=PAPER_LAYOUT,
    lrn=True,
    paper_init=True,
)
register_model(
    "zfnet",
    AlexNet,
    ModelInfo(
        paper=PAPER_ZFNET,
        table="Fig. 3 (7x7/2 conv1, 5x5/2 conv2, 384-384-256, 4096-4096)",
        family="alexnet",
        reference="zfnet",
        min_resolution=47,
    ),
    layout=ZFNET_LAYOUT,
    lrn=True,
    pool_ceil_mode=True,
)
