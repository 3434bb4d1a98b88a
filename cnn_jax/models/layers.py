"""Layers shared by every family: the model output type, input checks, conv-norm-act, BatchNorm conventions,
squeeze-and-excitation, drop-path, channel rounding and the classifier head."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from cnn_jax.models import conv_ops

Array = jax.Array
Dtype = Any
Activation = Callable[[Array], Array]

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


@flax.struct.dataclass
class ModelOutput:
    """What every model returns.

    Attributes:
      logits: ``(batch, num_classes)`` classifier outputs.
      aux_logits: auxiliary-classifier logits by head name (e.g. ``{"aux1": ..., "aux2": ...}`` for GoogLeNet);
        present only in training mode, empty otherwise.
    """

    logits: Array
    aux_logits: dict[str, Array] = flax.struct.field(default_factory=dict)


class ClassifierModel(nn.Module):
    """The fields every registered model has (STYLE.md "one model contract"; ``registry.REQUIRED_FIELDS``): the
    model classes derive from this and override a default where their paper's differs (``drop_rate``)."""

    num_classes: int = 1000
    in_channels: int = 3
    dtype: Dtype = None
    param_dtype: Dtype = jnp.float32
    drop_rate: float = 0.0


def check_images(images: Array, in_channels: int, model: str) -> None:
    """Raises a ValueError unless ``images`` is a non-empty NHWC batch with ``in_channels`` channels."""
    shape = tuple(images.shape)
    if len(shape) != 4 or shape[-1] != in_channels:
        raise ValueError(
            f"{model} expects images of shape (batch, height, width, {in_channels}) (NHWC); got shape {shape}"
        )
    if shape[0] == 0:
        raise ValueError(f"{model} got an empty batch (images of shape {shape}); expected at least one image")


# ---------------------------------------------------------------------------------------------------------------
# BatchNorm conventions. Flax's momentum is the decay of the running average: PyTorch's momentum=0.1 is 0.9 here.
BN_CONVENTIONS: dict[str, tuple[float, float]] = {
    "pytorch": (0.9, 1e-5),  # torchvision/timm (PyTorch momentum 0.1, eps 1e-5)
    "tf": (0.99, 1e-3),  # TensorFlow / Keras reference models (EfficientNet, MobileNet v3, MnasNet)
    # torchvision GoogLeNet/Inception-v3 and timm Inception-v4/Inception-ResNet-v2: PyTorch momentum 0.1 with the
    # eps 1e-3 of the TF checkpoints they were ported from.
    "inception": (0.9, 1e-3),
}


def bn_convention(convention: str) -> tuple[float, float]:
    """``(momentum, epsilon)`` of a named BatchNorm convention (``BN_CONVENTIONS``)."""
    if convention not in BN_CONVENTIONS:
        raise ValueError(f"unknown BatchNorm convention {convention!r}; expected one of {sorted(BN_CONVENTIONS)}")
    return BN_CONVENTIONS[convention]


def batch_norm(
    convention: str = "pytorch",
    *,
    train: bool,
    dtype: Dtype = None,
    param_dtype: Dtype = jnp.float32,
    zero_init: bool = False,
    name: str | None = None,
) -> nn.BatchNorm:
    """A BatchNorm with the named momentum/epsilon convention; ``zero_init`` starts gamma at zero."""
    momentum, epsilon = bn_convention(convention)
    return nn.BatchNorm(
        use_running_average=not train,
        momentum=momentum,
        epsilon=epsilon,
        dtype=dtype,
        param_dtype=param_dtype,
        scale_init=nn.initializers.zeros if zero_init else nn.initializers.ones,
        name=name,
    )


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


class DropPath(nn.Module):
    """Stochastic depth on a residual branch (Huang et al. 2016): drops the branch for whole samples.

    In training each sample keeps its branch with probability ``1 - rate`` and kept branches are scaled by
    ``1 / (1 - rate)`` (so evaluation is the identity, instead of the paper's equivalent test-time scaling by the
    survival probability). Needs a ``"dropout"`` PRNG stream in training.
    """

    rate: float

    @nn.compact
    def __call__(self, x: Array, *, train: bool) -> Array:
        if not train or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        mask = jax.random.bernoulli(self.make_rng("dropout"), keep, (x.shape[0],) + (1,) * (x.ndim - 1))
        return jnp.where(mask, x / keep, jnp.zeros_like(x))


def drop_path(x: Array, rate: float | Array, rng: Array) -> Array:
    """:class:`DropPath` in training mode as a function of a rate that may be traced: blocks run under ``nn.scan``
    (stages of identical blocks, parameters stacked) receive their per-block rate as a scanned array."""
    keep = 1.0 - rate
    mask = jax.random.bernoulli(rng, keep, (x.shape[0],) + (1,) * (x.ndim - 1))
    return x * jnp.where(mask, 1.0 / keep, 0.0).astype(x.dtype)


# Linear-decay rules for the drop rate of block i of n (0-based): the rules in use differ only in the denominator.
DROP_PATH_RULES: dict[str, Callable[[int, int], float]] = {
    # Huang et al. 2016 Sec. 3: p_l = 1 - l/L (1 - p_L), l = 1..L, so the last block gets the full rate.
    "huang": lambda i, n: (i + 1) / n,
    # TF EfficientNet/MnasNet builders: rate * i / n; the first block is never dropped, the last gets (n-1)/n.
    "efficientnet": lambda i, n: i / n,
    # timm: linspace(0, rate, n); the first block is never dropped, the last gets the full rate.
    "linspace": lambda i, n: i / (n - 1) if n > 1 else 0.0,
}


def drop_path_rates(rate: float, num_blocks: int, rule: str = "huang") -> list[float]:
    """Per-block drop rates decaying linearly with depth under a named rule (see ``DROP_PATH_RULES``)."""
    if rule not in DROP_PATH_RULES:
        raise ValueError(f"unknown drop-path rule {rule!r}; expected one of {sorted(DROP_PATH_RULES)}")
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"drop_path_rate must be in [0, 1); got {rate}")
    return [rate * DROP_PATH_RULES[rule](i, num_blocks) for i in range(num_blocks)]


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None, round_limit: float = 0.9) -> int:
    """Rounds ``value`` to the nearest multiple of ``divisor``, never below ``min_value`` (default ``divisor``)
    and never shrinking by more than ``1 - round_limit`` (the MobileNet/EfficientNet channel rule)."""
    min_value = min_value or divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < round_limit * value:
        rounded += divisor
    return rounded


def hard_sigmoid(x: Array) -> Array:
    """relu6(x + 3) / 6 (Howard et al. 2019, Eq. 2 context)."""
    return jax.nn.relu6(x + 3.0) / 6.0


def hard_swish(x: Array) -> Array:
    """x * relu6(x + 3) / 6 (Howard et al. 2019, Sec. 5.2)."""
    return x * hard_sigmoid(x)


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
