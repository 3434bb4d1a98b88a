"""The conv factory every family's convolutions go through (:class:`Conv`: the CPU formulations of
``cnn_jax.ops.conv_ops`` when lowered for CPU), its initialisers and padding conventions, conv-norm-act, and the
channel rounding of the MobileNet/EfficientNet families."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cnn_jax.layers.norm import batch_norm
from cnn_jax.layers.types import Activation, Array, Dtype
from cnn_jax.ops import conv_ops

# He-normal over fan-out, the initialiser of the torchvision/timm conv layers these families are compared with.
conv_kernel_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")

# The fan-out of He et al. 2015 (Sec. 2.2, backward case) for a grouped conv: each input unit feeds
# kh * kw * out / groups outputs. PyTorch's kaiming_normal_(mode="fan_out") (torchvision) ignores the groups and
# uses kh * kw * out; the TensorFlow EfficientNet/MnasNet builders (conv_kernel_initializer on a [k, k, C, 1]
# depthwise kernel) and timm's _init_weight_goog(fix_group_fanout=True) divide by the groups. The two agree for
# ordinary convs; for a depthwise conv of C channels the PyTorch rule's weights are sqrt(C) times smaller, so the
# conv's outputs start with a variance ~1/C of the TF rule's, far below BatchNorm's initial running variance of 1
# (which then dominates the running statistics of short runs; see cnn_jax/models/efficientnet.py).
INIT_CONVENTIONS: tuple[str, ...] = ("pytorch", "tf")


def grouped_conv_kernel_init(groups: int, convention: str = "pytorch") -> nn.initializers.Initializer:
    """He-normal over fan-out for a conv with ``groups`` groups under an init convention of ``INIT_CONVENTIONS``:
    ``'pytorch'`` is :data:`conv_kernel_init` whatever the groups, ``'tf'`` uses the per-group fan-out."""
    if convention not in INIT_CONVENTIONS:
        raise ValueError(f"unknown init convention {convention!r}; expected one of {list(INIT_CONVENTIONS)}")
    if convention == "pytorch" or groups == 1:
        return conv_kernel_init
    # Flax's fan_out for an HWIO kernel is kh * kw * out; scaling the variance by ``groups`` divides it by them.
    return nn.initializers.variance_scaling(2.0 * groups, "fan_out", "normal")


class Conv(nn.Conv):
    """``flax.linen.Conv`` through :func:`conv_ops.conv_general_dilated`: every convolution of every family takes
    the CPU formulations (matmul 1x1s, tap-loop depthwise, oneDNN dense convs) when lowered for CPU. Same
    parameters and auto-names (``Conv_0``) as ``nn.Conv``."""

    conv_general_dilated: Callable[..., Array] | None = conv_ops.conv_general_dilated


def conv_padding(
    kernel_size: int | tuple[int, int], stride: int = 1, dilation: int = 1, mode: str = "symmetric"
) -> Any:
    """Padding of a conv with a square (``k``) or rectangular (``(kh, kw)``) kernel.

    ``"symmetric"`` pads ``dilation * (k - 1) // 2`` on both sides of each axis (PyTorch); ``"same"`` is
    TensorFlow's "SAME", which pads asymmetrically (more at the bottom/right) when the stride is 2; ``"valid"``
    pads nothing (PyTorch ``padding=0``, the Inception stems and grid reductions).
    """
    kernel = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
    if mode == "symmetric":
        return tuple((dilation * (k - 1) // 2,) * 2 for k in kernel)
    if mode == "same":
        return "SAME"
    if mode == "valid":
        return ((0, 0), (0, 0))
    raise ValueError(f"unknown padding mode {mode!r}; expected 'symmetric', 'same' or 'valid'")


class ConvNormAct(nn.Module):
    """Conv (no bias) -> BatchNorm -> activation, the unit most families are built from.

    ``act=None`` leaves the output linear (the projection of an inverted residual); ``norm=False`` gives a plain
    conv with bias (for the pre-BatchNorm families).
    """

    features: int
    kernel_size: int | tuple[int, int] = 3  # (kh, kw) for the factorised 1x7 / 7x1 convs of Inception
    strides: int = 1
    groups: int = 1
    dilation: int = 1
    padding: str = "symmetric"
    act: Activation | None = nn.relu
    norm: bool = True
    norm_convention: str = "pytorch"
    init_convention: str = "pytorch"  # fan-out of grouped convs (``grouped_conv_kernel_init``)
    zero_init_norm: bool = False
    dtype: Dtype = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array, *, train: bool) -> Array:
        kernel = (self.kernel_size,) * 2 if isinstance(self.kernel_size, int) else tuple(self.kernel_size)
        x = Conv(
            self.features,
            kernel,
            strides=self.strides,
            padding=conv_padding(self.kernel_size, self.strides, self.dilation, self.padding),
            kernel_dilation=self.dilation,
            feature_group_count=self.groups,
            use_bias=not self.norm,
            kernel_init=grouped_conv_kernel_init(self.groups, self.init_convention),
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="conv",
        )(x)
        if self.norm:
            x = batch_norm(
                self.norm_convention,
                train=train,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                zero_init=self.zero_init_norm,
                name="bn",
            )(x)
        if self.act is not None:
            x = self.act(x)
        return x


def conv(features: int, kernel_size: int, strides: int, *, name: str, dtype: Dtype, param_dtype: Dtype) -> Conv:
    """A bias-free square conv with PyTorch's symmetric padding (every conv of a pre-activation unit)."""
    return Conv(
        features,
        (kernel_size, kernel_size),
        strides=strides,
        padding=conv_padding(kernel_size, strides),
        use_bias=False,
        kernel_init=conv_kernel_init,
        dtype=dtype,
        param_dtype=param_dtype,
        name=name,
    )


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None, round_limit: float = 0.9) -> int:
    """Rounds ``value`` to the nearest multiple of ``divisor``, never below ``min_value`` (default ``divisor``)
    and never shrinking by more than ``1 - round_limit`` (the MobileNet/EfficientNet channel rule)."""
    min_value = min_value or divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < round_limit * value:
        rounded += divisor
    return rounded
