"""Residual blocks shared by the ResNet-style families.

Each section below is one kind of block; the stage builders (``resnet.py``, ``resnest.py``, ...) pick a block
class and pass it the same structural arguments, so a family changes the block, not the builder.
"""

from __future__ import annotations

from typing import ClassVar

import flax.linen as nn
import jax.numpy as jnp

from cnn_jax.layers.conv import ConvNormAct
from cnn_jax.layers.pooling import Pool
from cnn_jax.layers.se import SqueezeExcite
from cnn_jax.layers.stochastic_depth import DropPath
from cnn_jax.layers.types import Array, Dtype

# ---------------------------------------------------------------------------------------------------------------
# Post-activation (v1) residual blocks: He et al. 2015, "Deep Residual Learning for Image Recognition",
# arXiv:1512.03385, Fig. 5 (basic block left, bottleneck right), with the ResNeXt grouped 3x3 (Xie et al. 2017,
# arXiv:1611.05431, Fig. 3c), the wide bottleneck (Zagoruyko & Komodakis 2016, arXiv:1605.07146) and
# squeeze-and-excitation (Hu et al. 2018, arXiv:1709.01507, Fig. 3) as options.

SHORTCUTS = ("conv", "avg")


class ResidualBlock(nn.Module):
    """Arguments every block of a ResNet-style stage builder takes, and the shortcut/merge they share.

    Attributes:
      planes: the stage's base width; the block outputs ``planes * expansion`` channels.
      strides: spatial stride of the block (2 in the first block of stages 2-4).
      shortcut: form of the projection used where the shortcut changes shape. ``"conv"`` is He et al.'s option B
        (strided 1x1 conv + BN); ``"avg"`` is ResNet-D (He et al. 2019, "Bag of Tricks", arXiv:1812.01187, Sec. 4.2):
        2x2 average pool with the stride, then a 1x1 conv + BN, so the projection sees every input pixel.
      down_kernel_size: kernel of a strided ``"conv"`` projection (3 in SENet-154; 1x1 wherever the stride is 1).
      drop_path_rate: stochastic-depth rate of the residual branch (Huang et al. 2016).
      zero_init_residual: start the last BN gamma of the branch at zero, so a fresh block is its shortcut
        (Goyal et al. 2017, arXiv:1706.02677; torchvision's ``zero_init_residual``, on by default in timm).
    """

    planes: int
    strides: int = 1
    shortcut: str = "conv"
    down_kernel_size: int = 1
    drop_path_rate: float = 0.0
    zero_init_residual: bool = False
    dtype: Dtype = None
    param_dtype: Dtype = jnp.float32

    expansion: ClassVar[int] = 1

    @property
    def out_channels(self) -> int:
        return self.planes * self.expansion

    def merge(self, x: Array, branch: Array, *, train: bool, drop_path_rate: float | Array | None = None) -> Array:
        """relu(drop_path(branch) + shortcut(x)); the shortcut is projected only where the shape changes.
        ``drop_path_rate``: the call's rate (a stage runner's, possibly traced), else the block's own."""
        if self.shortcut not in SHORTCUTS:
            raise ValueError(f"unknown shortcut {self.shortcut!r}; expected one of {SHORTCUTS}")
        branch = DropPath(self.drop_path_rate, name="drop_path")(branch, train=train, rate=drop_path_rate)
        if x.shape[-1] != self.out_channels or self.strides != 1:
            strides, kernel = self.strides, (self.down_kernel_size if self.strides > 1 else 1)
            if self.shortcut == "avg":
                if strides > 1:
                    x = Pool("avg", 2, strides, ceil_mode=True, count_include_pad=False, name="downsample_pool")(x)
                strides, kernel = 1, 1
            x = ConvNormAct(
                self.out_channels,
                kernel,
                strides,
                act=None,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                name="downsample",
            )(x, train=train)
        return nn.relu(branch + x)

    def squeeze_excite(self, x: Array, reduction: int) -> Array:
        """SE on the branch output, ``channels // reduction`` wide (Hu et al. 2018 Sec. 3.2); 0 disables it."""
        if not reduction:
            return x
        return SqueezeExcite(x.shape[-1] // reduction, dtype=self.dtype, param_dtype=self.param_dtype, name="se")(x)


class BasicBlock(ResidualBlock):
    """Two 3x3 convs (He et al. 2015 Fig. 5 left; ResNet-18/34), the first one strided.

    ``groups``/``base_width`` exist so every block takes the builder's options, but a basic block has no grouped
    variant (torchvision raises too). ``stride_in_1x1`` changes nothing here: the first conv is the strided 3x3
    under both conventions. ``reduce_first`` divides the first conv's width; ``se_reduction`` adds SE (0: none).
    """

    groups: int = 1
    base_width: int = 64
    reduce_first: int = 1
    se_reduction: int = 0
    stride_in_1x1: bool = False

    expansion: ClassVar[int] = 1

    @nn.compact
    def __call__(self, x: Array, *, train: bool, drop_path_rate: float | Array | None = None) -> Array:
        if self.groups != 1 or self.base_width != 64:
            raise ValueError(
                f"BasicBlock supports only groups=1 and base_width=64; got groups={self.groups}, "
                f"base_width={self.base_width} (use Bottleneck for ResNeXt / wide variants)"
            )
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        out = ConvNormAct(self.planes // self.reduce_first, 3, self.strides, name="conv1", **kw)(x, train=train)
        out = ConvNormAct(self.out_channels, 3, act=None, zero_init_norm=self.zero_init_residual, name="conv2", **kw)(
            out, train=train
        )
        out = self.squeeze_excite(out, self.se_reduction)
        return self.merge(x, out, train=train, drop_path_rate=drop_path_rate)


class Bottleneck(ResidualBlock):
    """1x1 reduce -> 3x3 (grouped) -> 1x1 expand x4 (He et al. 2015 Fig. 5 right; ResNeXt Fig. 3c).

    The inner width is ``int(planes * base_width / 64) * groups``: ResNet ``groups=1, base_width=64``; ResNeXt
    32x4d ``groups=32, base_width=4``; Wide ResNet-50-2 ``base_width=128``. ``reduce_first`` divides the width of
    the first 1x1 only (2 in SENet-154). ``stride_in_1x1`` puts the stride on the first 1x1 as in the paper
    ("v1"); the default strides the 3x3 ("v1.5", torchvision/timm), same parameters, more compute.
    ``se_reduction`` adds SE on the block output (r = 16 in SENet; 0: none).
    """

    groups: int = 1
    base_width: int = 64
    reduce_first: int = 1
    se_reduction: int = 0
    stride_in_1x1: bool = False

    expansion: ClassVar[int] = 4

    @nn.compact
    def __call__(self, x: Array, *, train: bool, drop_path_rate: float | Array | None = None) -> Array:
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        width = int(self.planes * self.base_width / 64) * self.groups
        stride_1x1, stride_3x3 = (self.strides, 1) if self.stride_in_1x1 else (1, self.strides)
        out = ConvNormAct(width // self.reduce_first, 1, stride_1x1, name="conv1", **kw)(x, train=train)
        out = ConvNormAct(width, 3, stride_3x3, groups=self.groups, name="conv2", **kw)(out, train=train)
        out = ConvNormAct(self.out_channels, 1, act=None, zero_init_norm=self.zero_init_residual, name="conv3", **kw)(
            out, train=train
        )
        out = self.squeeze_excite(out, self.se_reduction)
        return self.merge(x, out, train=train, drop_path_rate=drop_path_rate)
