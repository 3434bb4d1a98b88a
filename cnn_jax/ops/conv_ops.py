"""Convolution and max-pool formulations that XLA:CPU runs fast; drop-in for ``lax.conv_general_dilated``.

On XLA:CPU (jaxlib 0.10) a convolution becomes a YNNPACK or Eigen convolution kernel, and its backward pass two
more: the input gradient, and the filter gradient, which XLA expresses as a convolution of the transposed
activations with the transposed output gradient; both gradients run at a fraction of the hardware's rate
(BENCHMARKS.md, "Train step vs peers" and "CIFAR-scale training"). Equivalent formulations with the same
parameters that are much faster:

- Dense convolutions (one group, any kernel size; 1x1s over at least ``ONEDNN_MIN_POINTWISE_ROWS`` output
  positions): oneDNN, the library PyTorch runs on, through FFI
  custom calls for the forward pass and both gradients (:mod:`cnn_jax.ops.onednn`), where it is installed. A 3x3
  conv on 128x32x32x16 trains in ~7 ms against ~30 ms as XLA's convolutions; a 1x1 in 1.3-4x less time than as
  the matmul below.
- Without oneDNN, 1x1 convolutions (ResNet bottlenecks, MBConv expand/project, DenseNet bottlenecks) are matrix
  products over the channel axis: as ``dot_general`` they and both gradients go to XLA's matmul path (YNNPACK
  dots), and a hand-written VJP keeps the filter gradient in the form YNNPACK takes. Other dense convolutions
  stay XLA's.
- Depthwise convolutions (``feature_group_count == channels``): XLA:CPU's grouped convolution, and above all
  its filter gradient, is slow (BENCHMARKS.md, MobileNet v2 / EfficientNet-B0 section). Written as ``kh * kw``
  shifted multiply-adds with a hand-written VJP (the input gradient is the same tap loop over the output gradient,
  the filter gradient ``kh * kw`` multiply-reductions), forward and both gradients become loops XLA fuses.
- Max pooling: the gradient of ``reduce_window`` max is a ``select_and_scatter``, which XLA:CPU expands with a
  padded index array (the stem pool of a 224x224 ResNet-50 was ~5% of the step). A maximum over the
  ``kh * kw`` strided window views has an elementwise select as gradient.

The rewrites are keyed on the platform the program is lowered for, not the host: each is a
``lax.platform_dependent`` whose ``cpu`` branch is the rewrite and whose default is XLA's own convolution /
``reduce_window``, so a step exported for ``cuda`` or ``tpu`` from a CPU host (``jax.export``) carries native
convolutions and pooling (cuDNN and the TPU convolution units handle these shapes well), and none of the CPU code.
Outputs equal the plain formulation up to float rounding (summation order); parameters are untouched.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from cnn_jax.ops import onednn

Array = jax.Array

# What flax.linen.Conv passes for a 2-D NHWC input: lhs (N, C, H, W) = (0, 3, 1, 2), rhs (O, I, H, W) = (3, 2, 0, 1).
_NHWC = lax.ConvDimensionNumbers(lhs_spec=(0, 3, 1, 2), rhs_spec=(3, 2, 0, 1), out_spec=(0, 3, 1, 2))


# A 1x1 conv over fewer output positions (batch x height x width) stays a matmul: there oneDNN's per-call cost and
# its kernels for tiny maps lose (BENCHMARKS.md, "CIFAR-scale training").
ONEDNN_MIN_POINTWISE_ROWS = 2048

_ENABLED = [(True, True)]  # (any rewrite, oneDNN for dense convolutions), innermost block last


@contextlib.contextmanager
def rewrites(enabled: bool, *, onednn_convs: bool = True) -> Iterator[None]:
    """Within the block, models trace with (``True``) or without the rewrites, and with or without the oneDNN dense
    convolutions; ``cnn_jax.tools.bench`` uses it to time the formulations against each other in the same run."""
    _ENABLED.append((enabled, enabled and onednn_convs))
    try:
        yield
    finally:
        _ENABLED.pop()


def _is_nhwc(lhs: Array, rhs: Array, dimension_numbers: Any) -> bool:
    if lhs.ndim != 4 or rhs.ndim != 4:
        return False
    if dimension_numbers is None:  # lax's default is NCHW/OIHW
        return False
    if isinstance(dimension_numbers, lax.ConvDimensionNumbers):
        return dimension_numbers == _NHWC
    return tuple(dimension_numbers) == ("NHWC", "HWIO", "NHWC")


def _unit(value: Sequence[int] | None) -> bool:
    return value is None or all(v == 1 for v in value)


def _explicit_padding(padding: str | Sequence[tuple[int, int]], in_hw: Sequence[int], window: Sequence[int],
                      strides: Sequence[int]) -> list[tuple[int, int]]:
    if isinstance(padding, str):
        return [tuple(p) for p in lax.padtype_to_pads(tuple(in_hw), tuple(window), tuple(strides), padding)]
    return [tuple(p) for p in padding]


def _window_views(x: Array, window: Sequence[int], strides: Sequence[int], dilation: Sequence[int],
                  out_hw: Sequence[int]) -> list[tuple[tuple[int, int], Array]]:
    """The ``kh * kw`` strided views ``x[:, i*dh :: sh, j*dw :: sw, :]`` of an already padded NHWC ``x``."""
    views = []
    for i in range(window[0]):
        for j in range(window[1]):
            start = (0, i * dilation[0], j * dilation[1], 0)
            limit = (x.shape[0], start[1] + (out_hw[0] - 1) * strides[0] + 1,
                     start[2] + (out_hw[1] - 1) * strides[1] + 1, x.shape[3])
            views.append(((i, j), lax.slice(x, start, limit, (1, strides[0], strides[1], 1))))
    return views


def conv_general_dilated(lhs: Array, rhs: Array, window_strides: Sequence[int],
                         padding: str | Sequence[tuple[int, int]], lhs_dilation: Sequence[int] | None = None,
                         rhs_dilation: Sequence[int] | None = None, dimension_numbers: Any = None,
                         feature_group_count: int = 1, batch_group_count: int = 1, precision: Any = None,
                         preferred_element_type: Any = None) -> Array:
    """``lax.conv_general_dilated`` with NHWC convolutions rewritten when lowered for CPU (module docstring).

    Pass it as ``flax.linen.Conv(..., conv_general_dilated=conv_general_dilated)`` (``layers.Conv`` does). Anything
    else, and every convolution lowered for another platform, is ``lax.conv_general_dilated`` unchanged.
    """

    def native(lhs: Array, rhs: Array) -> Array:
        return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
                                        rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
                                        feature_group_count=feature_group_count,
                                        batch_group_count=batch_group_count, precision=precision,
                                        preferred_element_type=preferred_element_type)

    if (not _ENABLED[-1][0] or not _is_nhwc(lhs, rhs, dimension_numbers) or not _unit(lhs_dilation)
            or batch_group_count != 1 or preferred_element_type is not None):
        return native(lhs, rhs)
    kh, kw, in_per_group, out_channels = rhs.shape
    channels = lhs.shape[3]
    dilation = tuple(rhs_dilation or (1, 1))
    strides = tuple(window_strides)
    pads = tuple(_explicit_padding(padding, lhs.shape[1:3],
                                   ((kh - 1) * dilation[0] + 1, (kw - 1) * dilation[1] + 1), strides))

    pointwise = (kh, kw) == (1, 1) and all(p == (0, 0) for p in pads)
    small_pointwise = pointwise and (  # N * out H * out W
        lhs.shape[0] * -(-lhs.shape[1] // strides[0]) * -(-lhs.shape[2] // strides[1]) < ONEDNN_MIN_POINTWISE_ROWS)
    if feature_group_count == 1 and not small_pointwise and _ENABLED[-1][1] and onednn.supports(lhs, rhs):
        def cpu(lhs: Array, rhs: Array) -> Array:
            return onednn.conv(lhs, rhs, strides, pads, dilation)
    elif pointwise and feature_group_count == 1:
        def cpu(lhs: Array, rhs: Array) -> Array:
            x = lhs if strides == (1, 1) else lhs[:, ::strides[0], ::strides[1], :]
            return _pointwise(x, rhs[0, 0], precision)
    elif feature_group_count == channels and in_per_group == 1 and out_channels == channels and kh * kw > 1:
        def cpu(lhs: Array, rhs: Array) -> Array:
            return _depthwise(lhs, rhs, strides, pads, dilation)
    else:
        return native(lhs, rhs)
    return lax.platform_dependent(lhs, rhs, cpu=cpu, default=native)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _pointwise(x: Array, w: Array, precision: Any) -> Array:
    """A 1x1 convolution of NHWC ``x`` with ``w`` (in, out) as a matrix product over the channel axis.

    The hand-written VJP states the filter gradient as ``x`` contracted with the output gradient over (N, H, W),
    giving (in, out) directly. JAX's own transpose rule computes (out, in) and transposes it; XLA:CPU then copies
    the output gradient transposed and hands the product to Eigen instead of YNNPACK: MobileNet v2's train step
    1.33x, EfficientNet-B0's 1.18x slower that way (BENCHMARKS.md, attempts table).
    """
    return lax.dot_general(x, w, (((3,), (0,)), ((), ())), precision=precision)


def _pointwise_fwd(x, w, precision):
    return _pointwise(x, w, precision), (x, w)


def _pointwise_bwd(precision, residuals, g):
    x, w = residuals
    grad_x = lax.dot_general(g, w, (((3,), (1,)), ((), ())), precision=precision)
    grad_w = lax.dot_general(x, g, (((0, 1, 2), (0, 1, 2)), ((), ())), precision=precision)
    return grad_x.astype(x.dtype), grad_w.astype(w.dtype)


_pointwise.defvjp(_pointwise_fwd, _pointwise_bwd)


def _taps(xp: Array, w: Array, strides: Sequence[int], dilation: Sequence[int], out_hw: Sequence[int]) -> Array:
    """sum over taps (i, j) of the strided view of ``xp`` at offset (i*d, j*d) times ``w[i, j, 0]``, in float32."""
    acc = jnp.promote_types(xp.dtype, jnp.float32)  # low-precision inputs accumulate in float32, as conv kernels do
    out = None
    for (i, j), view in _window_views(xp, w.shape[:2], strides, dilation, out_hw):
        term = view.astype(acc) * w[i, j, 0].astype(acc)
        out = term if out is None else out + term
    return out


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _depthwise(x: Array, w: Array, strides: tuple[int, int], pads: tuple[tuple[int, int], ...],
               dilation: tuple[int, int]) -> Array:
    """Depthwise NHWC convolution as ``kh * kw`` shifted multiply-adds; its input gradient is the same loop over
    the (stride-dilated, padded) output gradient, its filter gradient ``kh * kw`` multiply-reductions. Written out
    rather than left to autodiff, whose input gradient pads every tap to the full input size (``kh * kw`` padded
    temporaries and a long chain of fusions that XLA compiles slowly)."""
    return _depthwise_fwd(x, w, strides, pads, dilation)[0]


def _depthwise_fwd(x, w, strides, pads, dilation):
    xp = lax.pad(x, jnp.array(0, x.dtype), [(0, 0, 0), (*pads[0], 0), (*pads[1], 0), (0, 0, 0)])
    out_hw = [(xp.shape[1 + a] - ((w.shape[a] - 1) * dilation[a] + 1)) // strides[a] + 1 for a in range(2)]
    return _taps(xp, w, strides, dilation, out_hw).astype(x.dtype), (xp, w)


def _depthwise_bwd(strides, pads, dilation, residuals, g):
    xp, w = residuals
    kh, kw = w.shape[:2]
    reach = [(w.shape[a] - 1) * dilation[a] for a in range(2)]
    # Output position o reads padded input p = o * s + t * d, so the padded input's gradient at p is the sum over taps
    # t of g[(p - t * d) / s] * w[t]: dilate g by the stride, pad it by the kernel's reach, read it at (reach - t*d).
    gpad = lax.pad(g, jnp.array(0, g.dtype), [(0, 0, 0)] + [
        (reach[a], xp.shape[1 + a] - (g.shape[1 + a] - 1) * strides[a] - 1, strides[a] - 1) for a in range(2)
    ] + [(0, 0, 0)])
    flipped = w[::-1, ::-1]  # tap t of the gradient loop reads offset (reach - t * d): the kernel reversed
    dxp = _taps(gpad, flipped, (1, 1), dilation, xp.shape[1:3])
    dx = dxp[:, pads[0][0]:xp.shape[1] - pads[0][1], pads[1][0]:xp.shape[2] - pads[1][1], :].astype(xp.dtype)
    acc = jnp.promote_types(g.dtype, jnp.float32)
    dw = jnp.stack([jnp.sum(view.astype(acc) * g.astype(acc), axis=(0, 1, 2))
                    for _, view in _window_views(xp, (kh, kw), strides, dilation, g.shape[1:3])])
    return dx, dw.reshape(kh, kw, 1, -1).astype(w.dtype)


_depthwise.defvjp(_depthwise_fwd, _depthwise_bwd)


def max_pool(x: Array, window: Sequence[int], strides: Sequence[int], padding: Sequence[tuple[int, int]]) -> Array:
    """NHWC max pooling with ``-inf`` padding, as ``flax.linen.max_pool``; a maximum of strided views on CPU."""
    out_hw = [(x.shape[1 + a] + sum(padding[a]) - window[a]) // strides[a] + 1 for a in range(2)]

    def native(x: Array) -> Array:
        # A literal init value: JAX recognises reduce_window_max (differentiable) only with a constant one.
        return lax.reduce_window(x, -jnp.inf, lax.max, (1, *window, 1), (1, *strides, 1), [(0, 0), *padding, (0, 0)])

    def cpu(x: Array) -> Array:
        padded = lax.pad(x, jnp.array(-jnp.inf, x.dtype), [(0, 0, 0), (*padding[0], 0), (*padding[1], 0), (0, 0, 0)])
        out = None
        for _, view in _window_views(padded, window, strides, (1, 1), out_hw):
            out = view if out is None else jnp.maximum(out, view)
        return out

    if not _ENABLED[-1][0] or min(out_hw) <= 0:  # smaller than the window: an empty map, as reduce_window gives
        return native(x)
    return lax.platform_dependent(x, cpu=cpu, default=native)
