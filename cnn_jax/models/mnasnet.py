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

from cnn_jax.layers.mbconv import MBConvNet, StageDef
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


class MnasNet(MBConvNet):
    """MnasNet-B1 (see the module docstring)."""

    stages: tuple[StageDef, ...] = MNASNET_B1_STAGES
    act: str = "relu"
    se_act: str | None = "relu"
    head_width_rule: str = "fixed"
    norm_convention: str = "tf"


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
