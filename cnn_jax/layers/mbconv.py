"""The inverted-residual (MBConv) block, the stage-string builder and :class:`MBConvNet`, the network of MobileNet
v2/v3, MnasNet and EfficientNet (each family is MBConvNet with its defaults; MobileNet v1 uses the builder alone).

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

from cnn_jax import layers

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


# The squeeze-and-excitation gates the MBConv families use.
GATES: dict[str, layers.Activation] = {"sigmoid": nn.sigmoid, "hard_sigmoid": layers.hard_sigmoid}

# Width of the 1x1 conv after the last stage, (head_channels, width multiplier, last stage's width) -> channels.
HEAD_WIDTH_RULES: dict[str, Callable[[int, float, int], int]] = {
    "scaled": lambda head, width, last: round_channels(head, width),  # EfficientNet
    "not_below": lambda head, width, last: round_channels(head, max(1.0, width)),  # MobileNet v2 (Sec. 4)
    "fixed": lambda head, width, last: head,  # MnasNet: 1280 at every depth multiplier
    "last_x6": lambda head, width, last: 6 * last,  # MobileNet v3 (Fig. 5): 6x the last stage's width
}
HEADS = ("conv", "conv_fc")


class MBConvNet(layers.ClassifierModel):
    """The network every MBConv family is: 3x3 stem -> the stages of :func:`build_blocks` -> head.

    The families (MobileNet v2 and v3, MnasNet, EfficientNet) are this class with their own defaults: stage
    strings, activation, squeeze-and-excitation form and head. ``head``: ``conv`` is a 1x1 conv (``head_channels``
    under ``head_width_rule``) -> pool -> dropout -> FC; ``conv_fc`` adds, after the pool, an FC of
    ``pre_logits_channels`` (x the width multiplier) with the activation (MobileNet v3's "efficient last stage").
    ``se_act`` is the squeeze-and-excitation activation (None: the network's), ``se_gate`` its gate (``GATES``).
    Width and depth multipliers come from :meth:`scaling` (``width_mult``, ``depth_mult`` here).
    """

    drop_rate: float = 0.2
    drop_path_rate: float = 0.0
    drop_path_rule: str = "efficientnet"
    width_mult: float = 1.0
    depth_mult: float = 1.0
    stages: tuple[StageDef, ...] = ()
    stem_channels: int = 32
    stem_strides: int = 2
    act: str = "relu6"
    se_rule: str = "input"
    se_act: str | None = None
    se_gate: str = "sigmoid"
    head: str = "conv"
    head_channels: int = 1280
    head_width_rule: str = "scaled"
    pre_logits_channels: int = 1280
    padding: str = "symmetric"
    norm_convention: str = "pytorch"
    init_convention: str = "pytorch"

    def scaling(self) -> tuple[float, float]:
        """(width multiplier, depth multiplier)."""
        return self.width_mult, self.depth_mult

    @nn.compact
    def __call__(self, images: Array, *, train: bool) -> layers.ModelOutput:
        layers.check_images(images, self.in_channels, type(self).__name__)
        if self.head not in HEADS:
            raise ValueError(f"{type(self).__name__}: head={self.head!r}; expected one of {HEADS}")
        width, depth = self.scaling()
        conv = dict(padding=self.padding, norm_convention=self.norm_convention, init_convention=self.init_convention,
                    dtype=self.dtype, param_dtype=self.param_dtype)
        act = ACTIVATIONS[self.act]
        stem = round_channels(self.stem_channels, width)
        x = layers.ConvNormAct(stem, 3, strides=self.stem_strides, act=act, name="stem", **conv)(images, train=train)
        stages = build_blocks(self.stages, stem, act=self.act, width_mult=width, depth_mult=depth,
                              se_rule=self.se_rule)
        se_act = act if self.se_act is None else ACTIVATIONS[self.se_act]
        x = apply_blocks(x, stages, train=train, drop_path_rate=self.drop_path_rate,
                         drop_path_rule=self.drop_path_rule, se_act=se_act, se_gate=GATES[self.se_gate], **conv)
        head = HEAD_WIDTH_RULES[self.head_width_rule](self.head_channels, width, stages[-1][-1].out_channels)
        x = layers.ConvNormAct(head, 1, act=act, name="head_conv", **conv)(x, train=train)
        if self.head == "conv_fc":
            x = jnp.mean(x, axis=(1, 2))
            pre_logits = round_channels(self.pre_logits_channels, width)
            x = act(nn.Dense(pre_logits, dtype=self.dtype, param_dtype=self.param_dtype, name="pre_logits")(x))
        logits = layers.ClassifierHead(self.num_classes, self.drop_rate, dtype=self.dtype,
                                       param_dtype=self.param_dtype, name="head")(x, train=train)
        return layers.ModelOutput(logits)
