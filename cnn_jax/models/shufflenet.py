"""ShuffleNet v1 and v2.

ShuffleNet v1 (Zhang, Zhou, Lin & Sun 2018, "ShuffleNet: An Extremely Efficient Convolutional Neural Network for
Mobile Devices", arXiv:1707.01083), Table 1 and Fig. 2: a 3x3/2 conv (24 channels) and 3x3/2 max-pool, then three
stages of 4/8/4 units. A unit is 1x1 group conv (bottleneck = output / 4) - BN - ReLU - channel shuffle - 3x3
depthwise conv (stride 1 or 2) - BN - 1x1 group conv - BN (Megvii's code shuffles after the depthwise conv instead,
which is equivalent: a depthwise conv acts per channel); stride-1 units add the identity, stride-2 units
concatenate a 3x3/2 average-pooled shortcut (so their convs produce ``output - input`` channels); ReLU after the
merge. Stage widths depend on the group count g (Table 1), the first pointwise conv of Stage 2 is not grouped (its
input has only 24 channels), and "ShuffleNet s x" multiplies every width, including the first conv's, by s.
Where ``24 * s`` does not divide into the groups, pass ``stem_features`` (Megvii's official models use 16 for
0.5x g=8 and 24 for 1.5x g=8; also 24 for 1.5x g=3, where 36 divides).
No reference library ships v1, so there is no exact parameter count. This layout gives 1,865,728 (1.0x g=3) and
2,434,768 (1.0x g=8) parameters with 1000 classes, against the official Megvii 1.9M and 2.4M (tests/
test_shufflenet.py checks every official scale); the Megvii classifier has no bias, this one has (the paper's FC).
Stride-1 units are additive residuals, so v1 takes ``drop_path_rate`` (Huang et al. 2016 linear rule over all
units; stride-2 units are never dropped).

ShuffleNet v2 (Ma, Zhang, Zheng & Sun 2018, "ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture
Design", arXiv:1807.11164), Table 5 and Fig. 3(c)/(d), torchvision layout: a stride-1 unit splits the channels in
half, passes one half through, runs 1x1-BN-ReLU, 3x3 depthwise-BN, 1x1-BN-ReLU on the other, concatenates and
shuffles with 2 groups; a stride-2 unit feeds the whole input to both branches (the left one a 3x3/2 depthwise-BN,
1x1-BN-ReLU). A final 1x1 conv (1024 or 2048 channels) precedes global pooling. Units concatenate rather than add,
so v2 has no residual to drop and no ``drop_path_rate``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cnn_jax import layers
from cnn_jax.registry import ModelInfo, register_model, small_image_info

Array = layers.Array


def channel_shuffle(x: Array, groups: int) -> Array:
    """Channel shuffle (Zhang et al. 2018, Sec. 3.1): view the channels as ``(groups, n)``, transpose, flatten.

    Output channel ``j`` is input channel ``(j % groups) * n + j // groups``, so consecutive output channels come
    from different input groups; shuffling again with ``n`` groups undoes it.
    """
    channels = x.shape[-1]
    if groups < 1 or channels % groups:
        raise ValueError(f"channel_shuffle: {channels} channels do not split into {groups} equal groups")
    x = x.reshape(*x.shape[:-1], groups, channels // groups)
    x = jnp.swapaxes(x, -1, -2)
    return x.reshape(*x.shape[:-2], channels)


# ---------------------------------------------------------------------------------------------------------------
# ShuffleNet v1


class ShuffleUnitV1(nn.Module):
    """ShuffleNet unit (Fig. 2b: stride 1, additive; Fig. 2c: stride 2, concatenated avg-pool shortcut)."""

    features: int
    groups: int
    strides: int = 1
    group_first_conv: bool = True
    drop_path_rate: float = 0.0
    norm_convention: str = "pytorch"
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array, *, train: bool) -> Array:
        in_channels = x.shape[-1]
        mid = self.features // 4
        out = self.features - in_channels if self.strides == 2 else self.features
        if self.strides == 1 and in_channels != self.features:
            raise ValueError(
                f"{self.name}: a stride-1 unit needs input = output channels; got {in_channels} -> {self.features}"
            )
        first_groups = self.groups if self.group_first_conv else 1
        for what, channels, groups in (
            ("input", in_channels, first_groups),
            ("bottleneck", mid, self.groups),
            ("output", out, self.groups),
        ):
            if channels <= 0 or channels % groups:
                raise ValueError(
                    f"{self.name}: {what} channels {channels} do not divide into {groups} groups "
                    f"(unit width {self.features}); choose a scale/stem_features that does"
                )

        conv = dict(norm_convention=self.norm_convention, dtype=self.dtype, param_dtype=self.param_dtype)
        y = layers.ConvNormAct(mid, 1, groups=first_groups, **conv, name="conv1")(x, train=train)
        if self.groups > 1:
            y = channel_shuffle(y, self.groups)
        y = layers.ConvNormAct(mid, 3, strides=self.strides, groups=mid, act=None, **conv, name="conv2_dw")(
            y, train=train
        )
        y = layers.ConvNormAct(out, 1, groups=self.groups, act=None, **conv, name="conv3")(y, train=train)
        if self.strides == 1:
            y = layers.DropPath(self.drop_path_rate, name="drop_path")(y, train=train)
            return nn.relu(x + y)
        shortcut = layers.Pool("avg", 3, strides=2, padding=1, name="shortcut_pool")(x)
        return nn.relu(jnp.concatenate([shortcut, y], axis=-1))


# Table 1 output channels of Stages 2-4 at 1x, by group count.
V1_STAGE_WIDTHS: dict[int, tuple[int, int, int]] = {
    1: (144, 288, 576),
    2: (200, 400, 800),
    3: (240, 480, 960),
    4: (272, 544, 1088),
    8: (384, 768, 1536),
}


class ShuffleNetV1(layers.ClassifierModel):
    """ShuffleNet v1 (Table 1).

    Attributes:
      groups: g of the pointwise group convolutions (1, 2, 3, 4 or 8; Table 1).
      scale: width multiplier s ("ShuffleNet s x": 0.25, 0.5, 1, 1.5, 2 in the paper/official models).
      stem_features: channels of the first conv; None means ``24 * scale``.
      stage_repeats: units per stage (the first of each has stride 2).
      drop_path_rate: stochastic depth on the residual branch of stride-1 units.
    """

    groups: int = 3
    scale: float = 1.0
    stem_features: int | None = None
    stage_repeats: Sequence[int] = (4, 8, 4)
    drop_path_rate: float = 0.0
    norm_convention: str = "pytorch"

    @nn.compact
    def __call__(self, images: Array, *, train: bool) -> layers.ModelOutput:
        layers.check_images(images, self.in_channels, "ShuffleNetV1")
        if self.groups not in V1_STAGE_WIDTHS:
            raise ValueError(
                f"ShuffleNetV1: groups must be one of {sorted(V1_STAGE_WIDTHS)} (Table 1); got {self.groups}"
            )
        if len(self.stage_repeats) != 3:
            raise ValueError(f"ShuffleNetV1: stage_repeats needs 3 entries (Stages 2-4); got {self.stage_repeats}")
        dt = dict(norm_convention=self.norm_convention, dtype=self.dtype, param_dtype=self.param_dtype)
        widths = [int(w * self.scale) for w in V1_STAGE_WIDTHS[self.groups]]
        stem_features = self.stem_features or int(24 * self.scale)

        x = layers.ConvNormAct(stem_features, 3, strides=2, **dt, name="stem")(images, train=train)
        x = layers.Pool("max", 3, strides=2, padding=1, name="stem_pool")(x)
        rates = iter(layers.drop_path_rates(self.drop_path_rate, sum(self.stage_repeats)))
        for s, (width, repeats) in enumerate(zip(widths, self.stage_repeats, strict=True), start=2):
            for i in range(repeats):
                x = ShuffleUnitV1(
                    width,
                    self.groups,
                    strides=2 if i == 0 else 1,
                    # Sec. 3.3: no group conv on Stage 2's first pointwise layer (only 24 input channels).
                    group_first_conv=not (s == 2 and i == 0),
                    drop_path_rate=next(rates),
                    **dt,
                    name=f"stage{s}_block{i}",
                )(x, train=train)
        logits = layers.ClassifierHead(
            self.num_classes, self.drop_rate, dtype=self.dtype, param_dtype=self.param_dtype, name="head"
        )(x, train=train)
        return layers.ModelOutput(logits=logits)


# ---------------------------------------------------------------------------------------------------------------
# ShuffleNet v2


class ShuffleUnitV2(nn.Module):
    """ShuffleNet v2 unit (Fig. 3c: stride 1 with channel split; Fig. 3d: stride 2, both branches see the input)."""

    features: int
    strides: int = 1
    norm_convention: str = "pytorch"
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array, *, train: bool) -> Array:
        in_channels = x.shape[-1]
        if self.features % 2:
            raise ValueError(f"{self.name}: output channels {self.features} must be even (two equal branches)")
        branch = self.features // 2
        conv = dict(norm_convention=self.norm_convention, dtype=self.dtype, param_dtype=self.param_dtype)
        if self.strides == 1:
            if in_channels != self.features:
                raise ValueError(
                    f"{self.name}: a stride-1 unit needs input = output channels; got {in_channels} -> {self.features}"
                )
            left, right = jnp.split(x, 2, axis=-1)
        else:
            left = layers.ConvNormAct(
                in_channels, 3, strides=self.strides, groups=in_channels, act=None, **conv, name="branch1_dw"
            )(x, train=train)
            left = layers.ConvNormAct(branch, 1, **conv, name="branch1_conv")(left, train=train)
            right = x
        right = layers.ConvNormAct(branch, 1, **conv, name="branch2_conv1")(right, train=train)
        right = layers.ConvNormAct(branch, 3, strides=self.strides, groups=branch, act=None, **conv, name="branch2_dw")(
            right, train=train
        )
        right = layers.ConvNormAct(branch, 1, **conv, name="branch2_conv2")(right, train=train)
        return channel_shuffle(jnp.concatenate([left, right], axis=-1), 2)


class ShuffleNetV2(layers.ClassifierModel):
    """ShuffleNet v2 (Table 5).

    Attributes:
      stage_widths: output channels of Stages 2-4.
      final_features: channels of the last 1x1 conv (Conv5).
      stem_features: channels of the first conv (Conv1).
      stage_repeats: units per stage (the first of each has stride 2).
      stem_strides: stride of Conv1 (2 in Table 5).
      stem_pool: whether the 3x3/2 max pool follows Conv1 (Table 5: yes).
    """

    stage_widths: Sequence[int] = (116, 232, 464)
    final_features: int = 1024
    stem_features: int = 24
    stem_strides: int = 2
    stem_pool: bool = True
    stage_repeats: Sequence[int] = (4, 8, 4)
    norm_convention: str = "pytorch"

    @nn.compact
    def __call__(self, images: Array, *, train: bool) -> layers.ModelOutput:
        layers.check_images(images, self.in_channels, "ShuffleNetV2")
        dt = dict(norm_convention=self.norm_convention, dtype=self.dtype, param_dtype=self.param_dtype)
        x = layers.ConvNormAct(self.stem_features, 3, strides=self.stem_strides, **dt, name="stem")(images, train=train)
        if self.stem_pool:
            x = layers.Pool("max", 3, strides=2, padding=1, name="stem_pool")(x)
        for s, (width, repeats) in enumerate(zip(self.stage_widths, self.stage_repeats, strict=True), start=2):
            for i in range(repeats):
                x = ShuffleUnitV2(width, strides=2 if i == 0 else 1, **dt, name=f"stage{s}_block{i}")(x, train=train)
        x = layers.ConvNormAct(self.final_features, 1, **dt, name="conv5")(x, train=train)
        logits = layers.ClassifierHead(
            self.num_classes, self.drop_rate, dtype=self.dtype, param_dtype=self.param_dtype, name="head"
        )(x, train=train)
        return layers.ModelOutput(logits=logits)


# ---------------------------------------------------------------------------------------------------------------
# Registrations. Every stride is a ceil-mode halving (padded 3x3), so any input size runs; 33 -> 17 -> 9 -> 5 -> 3 -> 2
# is the smallest whose last stage still sees 2x2 maps (on 1x1 maps a batch-2 BatchNorm after the linear depthwise
# conv outputs +-1, so the next BatchNorm's batch mean is exactly 0 and training degenerates).

_MIN_RESOLUTION = 33
_V1_PAPER = (
    "Zhang, Zhou, Lin & Sun 2018, ShuffleNet: An Extremely Efficient Convolutional Neural Network for "
    "Mobile Devices, arXiv:1707.01083"
)
for _g in V1_STAGE_WIDTHS:
    register_model(
        f"shufflenet_v1_g{_g}",
        ShuffleNetV1,
        ModelInfo(
            paper=_V1_PAPER,
            table=f"Table 1 (1x, g={_g}), Fig. 2",
            family="shufflenet",
            reference=None,
            min_resolution=_MIN_RESOLUTION,
        ),
        groups=_g,
    )

_V2_PAPER = (
    "Ma, Zhang, Zheng & Sun 2018, ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture "
    "Design, arXiv:1807.11164"
)
# name: (Stage 2-4 widths, Conv5 width), Table 5.
_V2 = {
    "shufflenet_v2_x0_5": ((48, 96, 192), 1024),
    "shufflenet_v2_x1_0": ((116, 232, 464), 1024),
    "shufflenet_v2_x1_5": ((176, 352, 704), 1024),
    "shufflenet_v2_x2_0": ((244, 488, 976), 2048),
}
for _name, (_widths, _final) in _V2.items():
    register_model(
        _name,
        ShuffleNetV2,
        ModelInfo(
            paper=_V2_PAPER,
            table="Table 5, Fig. 3(c)/(d); torchvision layout",
            family="shufflenet",
            reference=_name,
            min_resolution=_MIN_RESOLUTION,
        ),
        stage_widths=_widths,
        final_features=_final,
    )

# Small images (28-32 px): Conv1 at stride 1 and no max pool, the CIFAR ResNets' stem rule (He et al. 2015 Sec. 4.2),
# so Stages 2-4 run at 16/8/4 px for a 32x32 input and Conv5 sees a 4x4 map (at stride 32 it would see 1x1, where
# the 0.5x model underfits Fashion-MNIST). Same parameters as the ImageNet layouts.
for _name, (_widths, _final) in _V2.items():
    register_model(
        f"{_name}_cifar",
        ShuffleNetV2,
        small_image_info(_V2_PAPER, "Table 5, Conv1 at stride 1 without MaxPool (total stride 8, 28-32 px inputs)",
                         "shufflenet", min_resolution=9),
        stage_widths=_widths,
        final_features=_final,
        stem_strides=1,
        stem_pool=False,
    )
