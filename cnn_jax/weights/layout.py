"""Tensor layout conversions from PyTorch and Keras checkpoints to Flax linen variables, each one named.

Flax stores a conv kernel as HWIO ``(kh, kw, in / groups, out)`` (``feature_group_count`` groups; a depthwise conv
is the case ``groups = in``: ``(kh, kw, 1, channels)``) and a dense kernel as ``(in, out)``; BatchNorm has
``params/{scale, bias}`` and ``batch_stats/{mean, var}``. PyTorch stores conv weights OIHW ``(out, in / groups,
kh, kw)`` and linear weights ``(out, in)``; Keras stores conv kernels HWIO already, depthwise kernels as
``(kh, kw, in, multiplier)`` and dense kernels ``(in, out)``.
"""

from __future__ import annotations

import numpy as np

# Conversion names, as counted in the import report.
CONV_OIHW = "conv OIHW -> HWIO"
GROUPED_OIHW = "grouped conv (O, I/g, kh, kw) -> (kh, kw, I/g, O)"
DEPTHWISE_OIHW = "depthwise (C, 1, kh, kw) -> (kh, kw, 1, C)"
CONV_HWIO = "conv HWIO (unchanged)"
DEPTHWISE_KERAS = "depthwise (kh, kw, C, m) -> (kh, kw, 1, C*m)"
DENSE_OUT_IN = "dense (out, in) -> (in, out)"
DENSE_IN_OUT = "dense (in, out) (unchanged)"
DENSE_FROM_1X1 = "1x1 conv (out, in, 1, 1) -> dense (in, out)"
DENSE_CHW_ROWS = "dense after flatten: rows (C, H, W) -> (H, W, C)"
BATCHNORM = "BatchNorm weight/bias/running_mean/running_var -> scale/bias/mean/var"
FOLD_CONV_BIAS = "conv bias folded into the next BatchNorm's mean"
FOLD_EPSILON = "BatchNorm epsilon difference folded into var"
BGR_TO_RGB = "input channels of the first conv reversed (BGR input -> RGB)"


def conv_oihw_to_hwio(weight: np.ndarray, groups: int = 1) -> tuple[np.ndarray, str]:
    """A PyTorch conv weight ``(out, in / groups, kh, kw)`` as a Flax kernel ``(kh, kw, in / groups, out)``.

    One transpose covers plain, grouped and depthwise convs because both frameworks keep the per-group input
    channels on one axis and order the outputs group by group; the returned name says which case it was.
    """
    if weight.ndim != 4:
        raise ValueError(f"expected a 4-d OIHW conv weight; got shape {weight.shape}")
    kernel = np.transpose(weight, (2, 3, 1, 0))
    if groups == 1:
        return kernel, CONV_OIHW
    if weight.shape[1] == 1 and groups == weight.shape[0]:
        return kernel, DEPTHWISE_OIHW
    return kernel, GROUPED_OIHW


def keras_depthwise_to_hwio(kernel: np.ndarray) -> np.ndarray:
    """A Keras ``DepthwiseConv2D`` kernel ``(kh, kw, C, multiplier)`` as a Flax ``feature_group_count=C`` kernel
    ``(kh, kw, 1, C * multiplier)``: output ``c * multiplier + j`` of both reads input channel ``c``."""
    kh, kw, channels, multiplier = kernel.shape
    return kernel.reshape(kh, kw, 1, channels * multiplier)


def dense_out_in_to_in_out(weight: np.ndarray) -> np.ndarray:
    """A PyTorch ``nn.Linear`` weight ``(out, in)`` as a Flax ``Dense`` kernel ``(in, out)``."""
    if weight.ndim != 2:
        raise ValueError(f"expected a 2-d (out, in) linear weight; got shape {weight.shape}")
    return weight.T


def dense_rows_chw_to_hwc(kernel: np.ndarray, channels: int) -> np.ndarray:
    """Reorders the input rows of a dense kernel ``(C*H*W, out)`` that read an NCHW-flattened map (PyTorch
    ``torch.flatten(x, 1)``) into the NHWC flattening order of cnn_jax (``x.reshape(batch, -1)``).

    Used for the first FC layer after a flatten: VGG's fc6 (512 x 7 x 7) and GoogLeNet's auxiliary fc1 (128 x 4 x 4).
    """
    rows, out = kernel.shape
    spatial = rows // channels
    side = int(round(spatial**0.5))
    if channels * side * side != rows:
        raise ValueError(f"dense kernel with {rows} input rows is not a flattened {channels} x H x H map")
    return kernel.reshape(channels, side, side, out).transpose(1, 2, 0, 3).reshape(rows, out)


def batchnorm(
    gamma: np.ndarray | None,
    beta: np.ndarray | None,
    mean: np.ndarray,
    var: np.ndarray,
    *,
    source_eps: float,
    target_eps: float,
    conv_bias: np.ndarray | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], list[str]]:
    """BatchNorm statistics of a source layer as Flax ``({scale, bias}, {mean, var}, conversions)``.

    Two exact rewrites keep inference identical where the source differs from the target model:
    - a conv bias before the BatchNorm (Keras ResNet50's convs have biases, cnn_jax's have none):
      ``BN(conv(x) + b)`` equals ``BN'(conv(x))`` with ``mean' = mean - b`` (in training the batch mean cancels
      the bias anyway);
    - another epsilon (Keras ResNet/DenseNet use 1.001e-5, the PyTorch convention 1e-5):
      ``var' = var + source_eps - target_eps`` gives the same ``sqrt(var + eps)``.
    ``gamma``/``beta`` None (Keras ``scale=False`` / ``center=False``) mean 1 / 0.
    """
    channels = mean.shape[0]
    conversions = [BATCHNORM]
    gamma = np.ones(channels, np.float32) if gamma is None else gamma
    beta = np.zeros(channels, np.float32) if beta is None else beta
    if conv_bias is not None:
        mean = mean - conv_bias
        conversions.append(FOLD_CONV_BIAS)
    if source_eps != target_eps:
        var = var + (source_eps - target_eps)
        conversions.append(FOLD_EPSILON)
        if np.any(var < 0):
            raise ValueError(f"cannot fold BatchNorm epsilon {source_eps} into a model using {target_eps}: a running "
                             "variance would become negative; pick the model's matching norm convention")
    return {"scale": gamma, "bias": beta}, {"mean": mean, "var": var}, conversions


# ---- The inverse conversions (export to PyTorch state dicts) -----------------------------------------------------
def conv_hwio_to_oihw(kernel: np.ndarray) -> np.ndarray:
    """A Flax conv kernel ``(kh, kw, in / groups, out)`` as a PyTorch weight ``(out, in / groups, kh, kw)``."""
    return np.ascontiguousarray(np.transpose(kernel, (3, 2, 0, 1)))


def dense_rows_hwc_to_chw(kernel: np.ndarray, channels: int) -> np.ndarray:
    """The inverse of :func:`dense_rows_chw_to_hwc`."""
    rows, out = kernel.shape
    side = int(round((rows // channels) ** 0.5))
    if channels * side * side != rows:
        raise ValueError(f"dense kernel with {rows} input rows is not a flattened H x H x {channels} map")
    return kernel.reshape(side, side, channels, out).transpose(2, 0, 1, 3).reshape(rows, out)
