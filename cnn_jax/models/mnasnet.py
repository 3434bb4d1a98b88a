"""MnasNet, the network found by platform-aware neural architecture search, on the shared MBConv builder.

Tan, Chen, Pang, Vasudevan, Sandler, Howard, Le, "MnasNet: Platform-Aware Neural Architecture Search for Mobile",
CVPR 2019, arXiv:1807.11626.

The registered ``mnasnet*`` models are the **B1** variant of the official code (tensorflow/tpu
``mnasnet_models.py::mnasnet_b1``), which is what torchvision's ``mnasnet0_5``/``mnasnet1_0`` implement: the
searched A1 of the paper's Fig. 7 has squeeze-and-excitation in some stages and a different stage table, B1 has
no SE and plain ReLU. Layout: 3x3 stem (32) -> SepConv (3x3 depthwise -> linear 1x1 to 16, never a residual) ->
six MBConv stages -> 1x1 conv to 1280 -> pool -> dropout 0.2 -> FC. ``width_mult`` (the depth multiplier alpha of
torchvision) scales every width but the 1280 of the last conv, with multiple-of-8 rounding.

BatchNorm: ``norm_convention`` 'tf' (decay 0.99, eps 1e-3) is the official code's; torchvision uses decay 0.9997
with PyTorch's eps 1e-5 (running statistics only, parameter counts are the same).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cnn_jax.models import layers
from cnn_jax.models.mbconv import ACTIVATIONS, StageDef, apply_blocks, build_blocks, round_channels
from cnn_jax.registry import ModelInfo, register_model

# mnasnet_b1 block strings of the official code, after the 32-channel stem.
MNASNET_B1_STAGES: tuple[StageDef, ...] = (
    "ir_r1_k3_s1_e1_c16_noskip",
    "ir_r3_k3_s2_e3_c24",
    "ir_r3_k5_s2_e3_c40",
    "ir_r3_k5_s2_e6_c80",
    "ir_r2_k3_s1_e6_c96",
    "ir_r4_k5_s2_e6_c192",
    "ir_r1_k3_s1_e6_c320_noskip",
)


class MnasNet(nn.Module):
    """MnasNet-B1 (see the module docstring)."""

    num_classes: int = 1000
    in_channels: int = 3
    dtype: Any = None
    param_dtype: Any = jnp.float32
    drop_rate: float = 0.2
    drop_path_rate: float = 0.0
    drop_path_rule: str = "efficientnet"
    width_mult: float = 1.0
    stages: tuple[StageDef, ...] = MNASNET_B1_STAGES
    stem_channels: int = 32
    head_channels: int = 1280
    act: str = "relu"
    padding: str = "symmetric"
    norm_convention: str = "tf"

    @nn.compact
    def __call__(self, images: jnp.ndarray, *, train: bool) -> layers.ModelOutput:
        layers.check_images(images, self.in_channels, "MnasNet")
        conv = dict(padding=self.padding, norm_convention=self.norm_convention, dtype=self.dtype,
                    param_dtype=self.param_dtype)
        act = ACTIVATIONS[self.act]
        stem = round_channels(self.stem_channels, self.width_mult)
        x = layers.ConvNormAct(stem, 3, strides=2, act=act, name="stem", **conv)(images, train=train)
        stages = build_blocks(self.stages, stem, act=self.act, width_mult=self.width_mult)
        x = apply_blocks(x, stages, train=train, drop_path_rate=self.drop_path_rate,
                         drop_path_rule=self.drop_path_rule, **conv)
        x = layers.ConvNormAct(self.head_channels, 1, act=act, name="head_conv", **conv)(x, train=train)
        logits = layers.ClassifierHead(self.num_classes, self.drop_rate, dtype=self.dtype,
                                       param_dtype=self.param_dtype, name="head")(x, train=train)
        return layers.ModelOutput(logits)


for _name, _alpha in (("mnasnet0_5", 0.5), ("mnasnet1_0", 1.0)):
    register_model(
        _name,
        MnasNet,
        ModelInfo(
            paper="Tan et al. 2019, MnasNet: Platform-Aware Neural Architecture Search for Mobile, arXiv:1807.11626",
            table="official code mnasnet_b1 (the B1 variant torchvision implements; not the paper's A1, Fig. 7)",
            family="mnasnet",
            reference=_name,
            min_resolution=32,
        ),
        width_mult=_alpha,
    )
