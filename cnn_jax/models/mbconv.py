"""The inverted-residual (MBConv) block and the stage-string builder shared by MobileNet v1/v2/v3, MnasNet and
EfficientNet.

Architectures are data: a network body is a tuple of *stages*, each a block-group string (or a tuple of them when a
stage mixes block shapes, as MobileNet v3's does), decoded by :func:`decode_block_group` and expanded into one
:class:`BlockSpec` per block by :func:`build_blocks`; :class:`InvertedResidual` builds any of them.

Block-group grammar (tokens joined by ``_``; the block kind first, the rest in any order)::

    ir_r2_k3_s2_e6_c24_se0.25        2 inverted residuals, 3x3 depthwise, stride 2 on the first, expansion 6,
                                     24 output channels, squeeze-and-excitation with ratio 0.25
    ir_r1_k5_s2_x72_c40_se0.25_relu  expanded width given in channels (MobileNet v3 tables' "exp size"), ReLU
    ds_r6_k3_s2_c512                 6 MobileNet v1 depthwise-separable convs

    kind   ir   inverted residual with linear bottleneck (Sandler et al. 2018): [1x1 expand -> act] -> kxk
                depthwise -> act -> [SE] -> 1x1 linear projection, plus the identity when shapes allow. The
                expansion conv is omitted when the expanded width equals the input width (MBConv1, SepConv).
           ds   depthwise-separable conv (Howard et al. 2017, Fig. 3): kxk depthwise -> act -> 1x1 -> act, never
                a residual.
    r<n>   repeats (scaled by the depth multiplier, rounded up)
    k<n>   depthwise kernel size
    s<n>   stride of the group's first block (the others have stride 1)
    e<f>   expanded width = input width x f          } ``ir`` needs exactly one of the two
    x<n>   expanded width = n (x the width multiplier) }
    c<n>   output channels (x the width multiplier)
    se<f>  squeeze-and-excitation with ratio f; what f multiplies is the network's ``se_rule`` (``SE_RULES``)
    relu | relu6 | swish | hswish   activation of this group (default: the network's)
    noskip no identity shortcut even where shapes match

Channel rounding is the MobileNet/EfficientNet rule ``layers.make_divisible(c * width, 8)`` (nearest multiple of 8,
never more than 10% below); repeats are ``ceil(r * depth)`` (EfficientNet's ``round_repeats``).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_jax.models import layers

Array = jax.Array
StageDef = str | tuple[str, ...]

ACTIVATIONS: dict[str, layers.Activation] = {
    "relu": nn.relu,
    "relu6": jax.nn.relu6,
    "swish": nn.swish,
    "hswish": layers.hard_swish,
}

# What the squeeze-and-excitation ratio multiplies: (block input, expanded width, ratio) -> reduced channels.
SE_RULES: dict[str, Callable[[int, int, float], int]] = {
    # EfficientNet / MnasNet-A1 (TF builders: max(1, int(input_filters * se_ratio))): the block *input*.
    "input": lambda inp, expanded, ratio: max(1, int(inp * ratio)),
    # MobileNet v3 (Howard et al. 2019 Sec. 5.3): the expanded width, rounded to a multiple of 8.
    "expanded": lambda inp, expanded, ratio: layers.make_divisible(expanded * ratio, 8),
}


_NUMERIC_TOKENS: dict[str, tuple[str, type]] = {
    "r": ("repeats", int),
    "k": ("kernel", int),
    "s": ("stride", int),
    "e": ("expansion", float),
    "x": ("expanded_channels", int),
    "c": ("out_channels", int),
    "se": ("se_ratio", float),
}


@dataclasses.dataclass(frozen=True)
class BlockGroup:
    """One decoded block-group string (see the module docstring for the grammar)."""

    kind: str
    repeats: int
    kernel: int
    stride: int
    out_channels: int
    expansion: float | None = None
    expanded_channels: int | None = None
    se_ratio: float = 0.0
    act: str | None = None
    skip: bool = True


@dataclasses.dataclass(frozen=True)
class BlockSpec:
    """Everything one block needs, after width/depth scaling and rounding."""

    kind: str
    in_channels: int
    out_channels: int
    expanded_channels: int
    kernel: int
    stride: int
    se_channels: int
    act: str
    skip: bool = True

    @property
    def residual(self) -> bool:
        return self.skip and self.kind == "ir" and self.stride == 1 and self.in_channels == self.out_channels

    @property
    def project_act(self) -> bool:
        return self.kind == "ds"


def decode_block_group(text: str) -> BlockGroup:
    """Parses a block-group string such as ``"ir_r2_k3_s2_e6_c24_se0.25"``."""
    kind, *tokens = text.split("_")
    if kind not in ("ir", "ds"):
        raise ValueError(f"block group {text!r}: unknown block kind {kind!r}; expected 'ir' or 'ds'")
    fields: dict[str, Any] = {}
    for token in tokens:
        if token in ACTIVATIONS:
            fields["act"] = token
        elif token == "noskip":
            fields["skip"] = False
        elif match := re.fullmatch(r"(se|r|k|s|e|x|c)(\d+|\d*\.\d+)", token):
            name, cast = _NUMERIC_TOKENS[match[1]]
            if cast is int and not match[2].isdigit():
                raise ValueError(f"block group {text!r}: {token!r} needs an integer")
            fields[name] = cast(match[2])
        else:
            raise ValueError(f"block group {text!r}: unknown token {token!r}")
    missing = [n for n in ("repeats", "kernel", "stride", "out_channels") if n not in fields]
    if missing:
        raise ValueError(f"block group {text!r} lacks {missing} (tokens r<n>, k<n>, s<n>, c<n>)")
    widths = ("expansion" in fields) + ("expanded_channels" in fields)
    if kind == "ir" and widths != 1:
        raise ValueError(f"block group {text!r}: 'ir' needs exactly one of e<ratio> or x<channels>")
    if kind == "ds" and widths:
        raise ValueError(f"block group {text!r}: 'ds' has no expansion (drop the e/x token)")
    return BlockGroup(kind, **fields)


def round_channels(channels: float, width_mult: float = 1.0, divisor: int = 8) -> int:
    """``channels * width_mult`` rounded to a multiple of ``divisor``, never shrinking it by more than 10%."""
    return layers.make_divisible(channels * width_mult, divisor)


def round_repeats(repeats: int, depth_mult: float = 1.0) -> int:
    """``repeats * depth_mult`` rounded up (EfficientNet's ``round_repeats``)."""
    return int(math.ceil(repeats * depth_mult))


def build_blocks(
    stages: Sequence[StageDef],
    in_channels: int,
    *,
    act: str,
    width_mult: float = 1.0,
    depth_mult: float = 1.0,
    se_rule: str = "input",
) -> tuple[tuple[BlockSpec, ...], ...]:
    """Decodes ``stages`` and scales them: one tuple of :class:`BlockSpec` per stage.

    Args:
      stages: per stage, a block-group string or a tuple of them.
      in_channels: channels entering the first block (the stem's, already rounded).
      act: default activation name (a key of ``ACTIVATIONS``) for groups without their own.
      width_mult: channel multiplier applied to ``c``/``x`` widths (then rounded to multiples of 8).
      depth_mult: repeat multiplier (then rounded up).
      se_rule: what an ``se<ratio>`` multiplies, a key of ``SE_RULES``.
    """
    if se_rule not in SE_RULES:
        raise ValueError(f"unknown se_rule {se_rule!r}; expected one of {sorted(SE_RULES)}")
    if act not in ACTIVATIONS:
        raise ValueError(f"unknown activation {act!r}; expected one of {sorted(ACTIVATIONS)}")
    built = []
    for stage in stages:
        blocks = []
        for group in map(decode_block_group, (stage,) if isinstance(stage, str) else stage):
            out = round_channels(group.out_channels, width_mult)
            for i in range(round_repeats(group.repeats, depth_mult)):
                if group.kind == "ds":
                    expanded = in_channels
                elif group.expansion is not None:
                    expanded = round_channels(in_channels, group.expansion)
                else:
                    expanded = round_channels(group.expanded_channels, width_mult)
                se = SE_RULES[se_rule](in_channels, expanded, group.se_ratio) if group.se_ratio else 0
                blocks.append(BlockSpec(group.kind, in_channels, out, expanded, group.kernel,
                                        group.stride if i == 0 else 1, se, group.act or act, group.skip))
                in_channels = out
        built.append(tuple(blocks))
    return tuple(built)


class InvertedResidual(nn.Module):
    """One block of :func:`build_blocks`: an inverted residual (MBConv) or a MobileNet v1 separable conv.

    [1x1 expand -> BN -> act] -> kxk depthwise (stride) -> BN -> act -> [SE] -> 1x1 project -> BN [-> act]
    [+ drop-path(identity)]. The projection is linear for inverted residuals (the "linear bottleneck").
    """

    spec: BlockSpec
    se_act: layers.Activation = nn.relu
    se_gate: layers.Activation = nn.sigmoid
    padding: str = "symmetric"
    norm_convention: str = "pytorch"
    init_convention: str = "pytorch"  # fan-out of the depthwise conv (``layers.grouped_conv_kernel_init``)
    drop_path_rate: float = 0.0
    dtype: layers.Dtype = None
    param_dtype: layers.Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array, *, train: bool) -> Array:
        spec = self.spec
        act = ACTIVATIONS[spec.act]
        conv = dict(padding=self.padding, norm_convention=self.norm_convention, init_convention=self.init_convention,
                    dtype=self.dtype, param_dtype=self.param_dtype)
        shortcut = x
        if spec.expanded_channels != spec.in_channels:
            x = layers.ConvNormAct(spec.expanded_channels, 1, act=act, name="expand", **conv)(x, train=train)
        x = layers.ConvNormAct(spec.expanded_channels, spec.kernel, strides=spec.stride, groups=spec.expanded_channels,
                               act=act, name="depthwise", **conv)(x, train=train)
        if spec.se_channels:
            x = layers.SqueezeExcite(spec.se_channels, act=self.se_act, gate=self.se_gate, dtype=self.dtype,
                                     param_dtype=self.param_dtype, name="se")(x)
        x = layers.ConvNormAct(spec.out_channels, 1, act=act if spec.project_act else None, name="project",
                               **conv)(x, train=train)
        if spec.residual:
            x = shortcut + layers.DropPath(self.drop_path_rate, name="drop_path")(x, train=train)
        return x


def apply_blocks(
    x: Array,
    stages: tuple[tuple[BlockSpec, ...], ...],
    *,
    train: bool,
    drop_path_rate: float = 0.0,
    drop_path_rule: str = "efficientnet",
    **block_kwargs: Any,
) -> Array:
    """Runs the blocks of :func:`build_blocks` as submodules ``stage{s}_block{b}`` (1-based stages) of the module
    whose compact method calls it; drop-path rates grow linearly over all blocks under ``drop_path_rule``."""
    rates = iter(layers.drop_path_rates(drop_path_rate, sum(map(len, stages)), drop_path_rule))
    for s, blocks in enumerate(stages, start=1):
        for b, spec in enumerate(blocks):
            x = InvertedResidual(spec, drop_path_rate=next(rates), name=f"stage{s}_block{b}", **block_kwargs)(
                x, train=train)
    return x
