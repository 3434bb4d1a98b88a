"""MobileNet v1, v2 and v3 on the shared MBConv builder (``cnn_jax.layers.mbconv``).

- v1: Howard, Zhu, Chen, Kalenichenko, Wang, Weyand, Andreetto, Adam, "MobileNets: Efficient Convolutional Neural
  Networks for Mobile Vision Applications", 2017, arXiv:1704.04861. Table 1 body (13 depthwise-separable convs, BN
  and ReLU after every conv), width multiplier alpha (Sec. 4.2, Table 6); the resolution multiplier (Sec. 4.3) is
  just the input size. Table 1's last depthwise conv reads "s2" on a 7x7 input: a typo, it has stride 1 (7x7 output
  feeds the 7x7 average pool), as in every reference implementation. timm ``mobilenetv1_100`` = 4,231,976 params.
- v2: Sandler, Howard, Zhu, Zhmoginov, Chen, "MobileNetV2: Inverted Residuals and Linear Bottlenecks", 2018,
  arXiv:1801.04381. Table 2 (t, c, n, s), ReLU6, linear bottlenecks; width multiplier as torchvision (the last conv
  keeps 1280 channels for multipliers below 1). Dropout 0.2 before the classifier (torchvision).
- v3: Howard, Sandler, Chu, Chen, Chen, Tan, Wang, Zhu, Pang, Vasudevan, Le, Adam, "Searching for MobileNetV3",
  2019, arXiv:1905.02244. Table 1 (Large) and Table 2 (Small) with their "exp size" columns; h-swish (Sec. 5.2);
  SE in the expanded space with ``make_divisible(exp/4, 8)`` channels, ReLU and a hard-sigmoid gate (Sec. 5.3);
  the last stage is pooled before a 1x1 conv that acts as a fully-connected layer with h-swish (Fig. 5), dropout 0.2
  (torchvision), BN decay 0.99 and eps 1e-3 (Sec. 6.1.1, torchvision).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cnn_jax import layers
from cnn_jax.layers.mbconv import ACTIVATIONS, MBConvNet, StageDef, apply_blocks, build_blocks, round_channels
from cnn_jax.registry import ModelInfo, register_model, small_image_info

# v1 Table 1 after the stem: (depthwise 3x3 -> 1x1) x 13.
MOBILENET_V1_STAGES: tuple[StageDef, ...] = (
    "ds_r1_k3_s1_c64",
    "ds_r2_k3_s2_c128",
    "ds_r2_k3_s2_c256",
    "ds_r6_k3_s2_c512",
    "ds_r2_k3_s2_c1024",
)

# v2 Table 2 rows (t, c, n, s) after the 32-channel stem.
MOBILENET_V2_STAGES: tuple[StageDef, ...] = (
    "ir_r1_k3_s1_e1_c16",
    "ir_r2_k3_s2_e6_c24",
    "ir_r3_k3_s2_e6_c32",
    "ir_r4_k3_s2_e6_c64",
    "ir_r3_k3_s1_e6_c96",
    "ir_r3_k3_s2_e6_c160",
    "ir_r1_k3_s1_e6_c320",
)

# v3 Table 1 (Large): one group per table row, stages split where the resolution halves. Default act h-swish.
MOBILENET_V3_LARGE_STAGES: tuple[StageDef, ...] = (
    "ir_r1_k3_s1_x16_c16_relu",
    ("ir_r1_k3_s2_x64_c24_relu", "ir_r1_k3_s1_x72_c24_relu"),
    ("ir_r1_k5_s2_x72_c40_se0.25_relu", "ir_r2_k5_s1_x120_c40_se0.25_relu"),
    ("ir_r1_k3_s2_x240_c80", "ir_r1_k3_s1_x200_c80", "ir_r2_k3_s1_x184_c80", "ir_r1_k3_s1_x480_c112_se0.25",
     "ir_r1_k3_s1_x672_c112_se0.25"),
    ("ir_r1_k5_s2_x672_c160_se0.25", "ir_r2_k5_s1_x960_c160_se0.25"),
)

# v3 Table 2 (Small).
MOBILENET_V3_SMALL_STAGES: tuple[StageDef, ...] = (
    "ir_r1_k3_s2_x16_c16_se0.25_relu",
    ("ir_r1_k3_s2_x72_c24_relu", "ir_r1_k3_s1_x88_c24_relu"),
    ("ir_r1_k5_s2_x96_c40_se0.25", "ir_r2_k5_s1_x240_c40_se0.25", "ir_r1_k5_s1_x120_c48_se0.25",
     "ir_r1_k5_s1_x144_c48_se0.25"),
    ("ir_r1_k5_s2_x288_c96_se0.25", "ir_r2_k5_s1_x576_c96_se0.25"),
)


def _conv_kwargs(module: Any) -> dict[str, Any]:
    return dict(padding=module.padding, norm_convention=module.norm_convention, dtype=module.dtype,
                param_dtype=module.param_dtype)


class MobileNetV1(layers.ClassifierModel):
    """MobileNet v1: 3x3 stem (stride 2) -> 13 depthwise-separable convs -> global pool -> FC.

    ``width_mult`` is the paper's alpha (0.25/0.5/0.75/1.0), applied to every layer with multiple-of-8 rounding.
    There are no residual blocks, so no ``drop_path_rate``. ``drop_rate`` 0.001 is TF-slim's
    ``dropout_keep_prob=0.999`` (the authors' release; the paper gives none).
    """

    drop_rate: float = 0.001
    width_mult: float = 1.0
    stages: tuple[StageDef, ...] = MOBILENET_V1_STAGES
    stem_channels: int = 32
    act: str = "relu"
    padding: str = "symmetric"
    norm_convention: str = "pytorch"

    @nn.compact
    def __call__(self, images: jnp.ndarray, *, train: bool) -> layers.ModelOutput:
        layers.check_images(images, self.in_channels, "MobileNetV1")
        stem = round_channels(self.stem_channels, self.width_mult)
        x = layers.ConvNormAct(stem, 3, strides=2, act=ACTIVATIONS[self.act], name="stem", **_conv_kwargs(self))(
            images, train=train)
        stages = build_blocks(self.stages, stem, act=self.act, width_mult=self.width_mult)
        x = apply_blocks(x, stages, train=train, **_conv_kwargs(self))
        logits = layers.ClassifierHead(self.num_classes, self.drop_rate, dtype=self.dtype,
                                       param_dtype=self.param_dtype, name="head")(x, train=train)
        return layers.ModelOutput(logits)


class MobileNetV2(MBConvNet):
    """MobileNet v2: 3x3 stem -> 17 inverted residuals (Table 2) -> 1x1 conv to 1280 (never thinned below it,
    Sec. 4) -> pool -> dropout -> FC.

    Stochastic depth (``drop_path_rate``, off by default as in the paper) follows ``drop_path_rule``.
    ``stem_strides`` 1 with a stage table whose strides are adapted is the small-image variant
    (``mobilenet_v2_cifar``).
    """

    stages: tuple[StageDef, ...] = MOBILENET_V2_STAGES
    act: str = "relu6"
    se_act: str | None = "relu"
    head_width_rule: str = "not_below"


class MobileNetV3(MBConvNet):
    """MobileNet v3 Large/Small: 3x3 stem (16, h-swish) -> bneck blocks -> 1x1 conv (6x last width) -> pool ->
    FC ``pre_logits_channels`` + h-swish -> dropout -> FC (Fig. 5 "efficient last stage")."""

    stages: tuple[StageDef, ...] = MOBILENET_V3_LARGE_STAGES
    stem_channels: int = 16
    act: str = "hswish"
    se_rule: str = "expanded"
    se_act: str | None = "relu"
    se_gate: str = "hard_sigmoid"
    head: str = "conv_fc"
    head_width_rule: str = "last_x6"
    norm_convention: str = "tf"


_V1_INFO = dict(
    paper="Howard et al. 2017, MobileNets, arXiv:1704.04861",
    table="Table 1 (width multiplier: Sec. 4.2, Table 6)",
    family="mobilenet",
)
for _alpha in ("025", "050", "075", "100"):
    register_model(
        f"mobilenet_v1_{_alpha}",
        MobileNetV1,
        ModelInfo(**_V1_INFO, reference="mobilenetv1_100" if _alpha == "100" else None, min_resolution=32),
        width_mult=int(_alpha) / 100,
    )

register_model(
    "mobilenet_v2",
    MobileNetV2,
    ModelInfo(
        paper="Sandler et al. 2018, MobileNetV2: Inverted Residuals and Linear Bottlenecks, arXiv:1801.04381",
        table="Table 2",
        family="mobilenet",
        reference="mobilenet_v2",
        min_resolution=32,
    ),
)

# Small images (28-32 px): the stem at stride 1, Table 2's rows unchanged, so a 32x32 input reaches the last rows
# at 2x2 (total stride 16; He et al. 2015 Sec. 4.2's CIFAR nets likewise drop the downsampling stem). Making the c24
# row stride 1 too (4x4 at the end) costs 3.7x the multiply-adds (BENCHMARKS.md, "Small-image layouts").
register_model(
    "mobilenet_v2_cifar",
    MobileNetV2,
    small_image_info("Sandler et al. 2018, MobileNetV2: Inverted Residuals and Linear Bottlenecks, arXiv:1801.04381",
                     "Table 2, stem at stride 1 (total stride 16, for 28-32 px inputs)", "mobilenet",
                     min_resolution=16),
    stem_strides=1,
)

_V3_PAPER = "Howard et al. 2019, Searching for MobileNetV3, arXiv:1905.02244"
register_model(
    "mobilenet_v3_large",
    MobileNetV3,
    ModelInfo(paper=_V3_PAPER, table="Table 1", family="mobilenet", reference="mobilenet_v3_large",
              min_resolution=32),
    stages=MOBILENET_V3_LARGE_STAGES,
    pre_logits_channels=1280,
)
register_model(
    "mobilenet_v3_small",
    MobileNetV3,
    ModelInfo(paper=_V3_PAPER, table="Table 2", family="mobilenet", reference="mobilenet_v3_small",
              min_resolution=32),
    stages=MOBILENET_V3_SMALL_STAGES,
    pre_logits_channels=1024,
)
