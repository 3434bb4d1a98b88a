"""ResNeSt: the ResNet stage builder with a split-attention bottleneck.

Zhang, Wu, Zhang, Zhu, Lin, Zhang, Sun, He, Mueller, Manmatha, Li & Smola 2020, "ResNeSt: Split-Attention
Networks", arXiv:2004.08955 (v2): split-attention block Sec. 3.1, its radix-major implementation Sec. 3.2 (used
here), network tweaks Sec. 4.1 (deep stem, average-pool downsampling: "avd" in the block, ResNet-D in the shortcut);
ResNeSt-50/101 with radix 2, cardinality 1, width 64 ("2s1x64d" in the paper's notation). Layout and names follow
timm ``resnest50d`` (stem 32-32-64) and ``resnest101e`` (stem 64-64-128), which load the authors' weights.
"""

from __future__ import annotations

from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_jax.layers import Array, Conv, ConvNormAct, Dtype, Pool, batch_norm, conv_kernel_init, make_divisible
from cnn_jax.layers.blocks import ResidualBlock
from cnn_jax.models.resnet import DEPTHS, ResNet
from cnn_jax.registry import ModelInfo, register_model


class SplitAttention(nn.Module):
    """Split-attention 3x3 conv (Sec. 3.1, radix-major form of Sec. 3.2).

    A 3x3 conv with ``groups * radix`` groups makes ``radix`` splits of ``features`` channels; their sum is
    global-pooled and passed through fc1 -> BN -> ReLU -> fc2 (1x1 convs grouped by cardinality) and an r-softmax
    across the splits of each channel (a sigmoid when ``radix`` is 1); the output is the weighted sum of the splits.
    fc1 is ``max(features * radix / 4, 32)`` wide (rounded to a multiple of 8).
    """

    features: int
    strides: int = 1
    groups: int = 1
    radix: int = 2
    dtype: Dtype = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array, *, train: bool) -> Array:
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        x = ConvNormAct(
            self.features * self.radix, 3, self.strides, groups=self.groups * self.radix, name="conv", **kw
        )(x, train=train)
        batch, height, width = x.shape[:3]
        splits = x.reshape(batch, height, width, self.radix, self.features)  # radix-major, as the grouped conv
        pooled = jnp.mean(splits.sum(axis=3), axis=(1, 2), keepdims=True)
        attn_channels = make_divisible(self.features * self.radix / 4, 8, min_value=32)
        conv = dict(feature_group_count=self.groups, kernel_init=conv_kernel_init, **kw)
        a = Conv(attn_channels, (1, 1), name="fc1", **conv)(pooled)
        a = nn.relu(batch_norm(train=train, name="bn1", **kw)(a))
        a = Conv(self.features * self.radix, (1, 1), name="fc2", **conv)(a)
        # fc2 orders its outputs (group, split, channel); the splits are (split, group, channel).
        a = a.reshape(batch, self.groups, self.radix, self.features // self.groups).swapaxes(1, 2)
        a = jax.nn.softmax(a, axis=1) if self.radix > 1 else jax.nn.sigmoid(a)
        return jnp.sum(splits * a.reshape(batch, 1, 1, self.radix, self.features), axis=3)


class SplitAttentionBottleneck(ResidualBlock):
    """1x1 -> split-attention 3x3 -> [3x3 avg pool /2 where strided ("avd")] -> 1x1 x4 (Sec. 3.1, 4.1).

    With ``avd`` the stride moves from the 3x3 conv to an average pool after it (PyTorch ``AvgPool2d(3, s, 1)``,
    padding counted in the mean, as the authors' code).
    """

    groups: int = 1
    base_width: int = 64
    radix: int = 2
    avd: bool = True

    expansion: ClassVar[int] = 4

    @nn.compact
    def __call__(self, x: Array, *, train: bool, drop_path_rate: float | Array | None = None) -> Array:
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        width = int(self.planes * self.base_width / 64) * self.groups
        pool_stride = self.strides if self.avd and self.strides > 1 else 1
        out = ConvNormAct(width, 1, name="conv1", **kw)(x, train=train)
        out = SplitAttention(width, self.strides // pool_stride, self.groups, self.radix, name="conv2", **kw)(
            out, train=train
        )
        if pool_stride > 1:
            out = Pool("avg", 3, pool_stride, padding=1, name="avd_pool")(out)
        out = ConvNormAct(self.out_channels, 1, act=None, zero_init_norm=self.zero_init_residual, name="conv3", **kw)(
            out, train=train
        )
        return self.merge(x, out, train=train, drop_path_rate=drop_path_rate)


class ResNeSt(ResNet):
    """``ResNet`` with ``SplitAttentionBottleneck`` blocks, the deep stem and average-pool shortcuts by default.

    Attributes:
      radix: splits per cardinal group (2 in ResNeSt-50/101).
      avd: stride the block with a 3x3 average pool after the split-attention conv instead of the conv itself.
    """

    block: type[ResidualBlock] = SplitAttentionBottleneck
    stem: str = "c"
    shortcut: str = "avg"
    radix: int = 2
    avd: bool = True

    def block_options(self) -> dict[str, Any]:
        unsupported = {
            "reduce_first": (self.reduce_first, 1),
            "se_reduction": (self.se_reduction, 0),
            "stride_in_1x1": (self.stride_in_1x1, False),
        }
        for option, (value, default) in unsupported.items():
            if value != default:
                raise ValueError(f"ResNeSt's split-attention block has no {option} option; got {option}={value!r}")
        return dict(groups=self.groups, base_width=self.base_width, radix=self.radix, avd=self.avd)


PAPER = "Zhang et al. 2020, ResNeSt: Split-Attention Networks, arXiv:2004.08955"

register_model(
    "resnest50d",
    ResNeSt,
    ModelInfo(
        paper=PAPER,
        table="Sec. 3.1 + 4.1, ResNeSt-50 2s1x64d (deep stem 32-32-64, avd); timm resnest50d",
        resolution=224,
        crop_fraction=0.875,
        family="resnest",
        reference="resnest50d",
        min_resolution=32,
    ),
    stage_sizes=DEPTHS[50],
)
register_model(
    "resnest101e",
    ResNeSt,
    ModelInfo(
        paper=PAPER,
        table="Sec. 3.1 + 4.1, ResNeSt-101 2s1x64d (deep stem 64-64-128, avd); timm resnest101e",
        resolution=256,
        crop_fraction=0.875,
        family="resnest",
        reference="resnest101e",
        min_resolution=32,
    ),
    stage_sizes=DEPTHS[101],
    stem="s",
)
