"""EfficientNet B0-B7 and compound scaling, on the shared MBConv builder.

Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks", ICML 2019, arXiv:1905.11946.
Table 1 (the B0 baseline), Sec. 3.3 (compound scaling: depth alpha^phi, width beta^phi, resolution gamma^phi with
alpha * beta^2 * gamma^2 ~= 2, so FLOPs grow ~2^phi; grid search at phi = 1 gave alpha 1.2, beta 1.1, gamma 1.15).

Two modes, kept apart:
- ``efficientnet_b0`` ... ``efficientnet_b7``: the *published* per-model coefficients (tensorflow/tpu
  ``efficientnet_builder.py::efficientnet_params``; ``EFFICIENTNET_PARAMS``). They are not exact powers of
  1.2/1.1/1.15 (B1 keeps width 1.0; B7 depth 3.1 vs 1.2^7 = 3.58), so they are a lookup table, not a formula.
  Parameter counts equal torchvision/timm's.
- ``efficientnet_phi``: any real ``phi`` and any (alpha, beta, gamma) through :func:`compound_scale`, for scaling
  sweeps; its input size is :func:`efficientnet_phi_resolution` (``model_info("efficientnet_phi", phi=..,
  gamma=..)`` follows the arguments).

Blocks: MBConv (``mbconv.InvertedResidual``) with swish, squeeze-and-excitation with ``int(0.25 x block input)``
channels (``se_rule='input'``, the TF builder's; ``'expanded'`` would reduce from the expanded width) and a sigmoid
gate; drop-connect grows linearly over blocks as ``rate * i / n`` (``drop_path_rule='efficientnet'``). The
reference rate is ``DROP_CONNECT_RATE`` = 0.2 for every variant (official ``drop_connect_rate``; the early arXiv
text says 0.3); the class default stays 0.0 like every model's, so pass ``drop_path_rate=0.2`` for the paper's
recipe. Rounding: widths ``make_divisible(c * width, 8)`` (never more than 10% below), repeats ``ceil(r * depth)``.

Conventions as fields: ``norm_convention`` 'tf' (BN decay 0.99, eps 1e-3: paper and official code) or
'pytorch' (decay 0.9, eps 1e-5: torchvision 0.28's B0-B4 and timm's ``efficientnet_b*`` use PyTorch's BatchNorm
defaults; torchvision's B5-B7, ported from TF weights, use eps 1e-3 with PyTorch momentum 0.01, i.e. decay 0.99);
``padding`` 'symmetric' (torchvision/timm) or 'same' (the TF reference's "SAME", which pads stride-2 convs more at
the bottom/right: same shapes, shifted sampling grid); ``init_convention`` 'tf' (He-normal over the *per-group*
fan-out, so a kxk depthwise kernel has std sqrt(2 / k^2): the TF builder's ``conv_kernel_initializer`` and timm's
``_init_weight_goog``) or 'pytorch' (torchvision's ``kaiming_normal_(mode="fan_out")``, which ignores the groups:
std sqrt(2 / (k^2 C)) for C channels).

Why the init convention matters on short runs (under 'pytorch' the deep depthwise convs start with tiny output
variances, and BatchNorm's running variance keeps ``decay^t`` of its initial 1 for the first steps, so eval mode is
chance for a while): measured in BENCHMARKS.md ("EfficientNet's init convention on the proxy task").
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

from cnn_jax.layers.mbconv import MBConvNet, StageDef
from cnn_jax.registry import ModelInfo, register_model, small_image_info

# Table 1 (B0) after the 32-channel stem; MBConv1 is an ``e1`` group (no expansion conv).
EFFICIENTNET_B0_STAGES: tuple[StageDef, ...] = (
    "ir_r1_k3_s1_e1_c16_se0.25",
    "ir_r2_k3_s2_e6_c24_se0.25",
    "ir_r2_k5_s2_e6_c40_se0.25",
    "ir_r3_k3_s2_e6_c80_se0.25",
    "ir_r3_k5_s1_e6_c112_se0.25",
    "ir_r4_k5_s2_e6_c192_se0.25",
    "ir_r1_k3_s1_e6_c320_se0.25",
)


class EfficientNetParams(NamedTuple):
    width: float
    depth: float
    resolution: int
    dropout: float


# Published coefficients (official efficientnet_params): the canonical B0-B7.
EFFICIENTNET_PARAMS: dict[str, EfficientNetParams] = {
    "b0": EfficientNetParams(1.0, 1.0, 224, 0.2),
    "b1": EfficientNetParams(1.0, 1.1, 240, 0.2),
    "b2": EfficientNetParams(1.1, 1.2, 260, 0.3),
    "b3": EfficientNetParams(1.2, 1.4, 300, 0.3),
    "b4": EfficientNetParams(1.4, 1.8, 380, 0.4),
    "b5": EfficientNetParams(1.6, 2.2, 456, 0.4),
    "b6": EfficientNetParams(1.8, 2.6, 528, 0.5),
    "b7": EfficientNetParams(2.0, 3.1, 600, 0.5),
}
DROP_CONNECT_RATE = 0.2
BASE_RESOLUTION = 224
# Official eval preprocessing: centre crop of resolution / (resolution + 32).
CROP_PADDING = 32


class CompoundScale(NamedTuple):
    """Multipliers of Sec. 3.3, Eq. 3: depth d = alpha^phi, width w = beta^phi, resolution r = gamma^phi."""

    depth: float
    width: float
    resolution: float


def compound_scale(phi: float, alpha: float = 1.2, beta: float = 1.1, gamma: float = 1.15) -> CompoundScale:
    """The paper's compound scaling multipliers for coefficient ``phi`` (unrounded; see ``efficientnet_phi``)."""
    return CompoundScale(alpha**phi, beta**phi, gamma**phi)


def efficientnet_phi_resolution(phi: float, gamma: float = 1.15) -> int:
    """Input size of ``efficientnet_phi``: ``224 * gamma^phi`` rounded to the nearest integer (halves up)."""
    return math.floor(BASE_RESOLUTION * gamma**phi + 0.5)


class EfficientNet(MBConvNet):
    """Any EfficientNet by explicit multipliers: ``EfficientNet(width_mult=1.4, depth_mult=1.8)`` is B4's body:
    stem -> MBConv stages (Table 1) -> 1x1 conv -> pool -> dropout -> FC.

    The network is fully convolutional; the resolution is the input size (``EFFICIENTNET_PARAMS`` and the registry
    hold the published one per variant).
    """

    stages: tuple[StageDef, ...] = EFFICIENTNET_B0_STAGES
    act: str = "swish"
    norm_convention: str = "tf"
    init_convention: str = "tf"


class EfficientNetPhi(EfficientNet):
    """EfficientNet scaled from B0 by :func:`compound_scale` (``phi``, ``alpha``, ``beta``, ``gamma``); feed it
    ``efficientnet_phi_resolution(phi, gamma)`` images. ``width_mult`` / ``depth_mult`` stay 1: the coefficients
    set them."""

    phi: float = 1.0
    alpha: float = 1.2
    beta: float = 1.1
    gamma: float = 1.15

    def scaling(self) -> tuple[float, float]:
        if (self.width_mult, self.depth_mult) != (1.0, 1.0):
            raise ValueError(f"EfficientNetPhi: width_mult={self.width_mult}, depth_mult={self.depth_mult}; "
                             "expected 1 (phi, alpha, beta and gamma give the multipliers)")
        scale = compound_scale(self.phi, self.alpha, self.beta, self.gamma)
        return scale.width, scale.depth


_PAPER = "Tan & Le 2019, EfficientNet: Rethinking Model Scaling for CNNs, arXiv:1905.11946"


def _info(resolution: int, table: str, reference: str | None) -> ModelInfo:
    return ModelInfo(paper=_PAPER, table=table, resolution=resolution, eval_resolution=resolution,
                     crop_fraction=resolution / (resolution + CROP_PADDING), family="efficientnet",
                     reference=reference, min_resolution=32)


for _variant, _params in EFFICIENTNET_PARAMS.items():
    register_model(
        f"efficientnet_{_variant}",
        EfficientNet,
        _info(_params.resolution, "Table 1 (B0) scaled by the official efficientnet_params",
              f"efficientnet_{_variant}"),
        width_mult=_params.width,
        depth_mult=_params.depth,
        drop_rate=_params.dropout,
    )

# Small images (28-32 px): the stem at stride 1, Table 1's stages unchanged, so a 32x32 input reaches the last
# stages at 2x2 (total stride 16; He et al. 2015 Sec. 4.2's CIFAR nets likewise drop the downsampling stem). B0's
# parameters; the paper itself fine-tunes on CIFAR at 224 px (Sec. 5.2). Also making the c24 stage stride 1 (4x4 at
# the end) costs 3.7x the multiply-adds (BENCHMARKS.md, "Small-image layouts").
register_model(
    "efficientnet_b0_cifar",
    EfficientNet,
    small_image_info(_PAPER, "Table 1 (B0), stem at stride 1 (total stride 16, 28-32 px inputs)", "efficientnet",
                     min_resolution=16),
    stem_strides=1,
)


def _phi_info(arguments: Mapping[str, Any]) -> ModelInfo:
    """``efficientnet_phi``'s metadata follows its ``phi`` and ``gamma``: input size ``224 * gamma^phi``."""
    return _info(efficientnet_phi_resolution(arguments["phi"], arguments["gamma"]),
                 "Table 1 (B0) scaled by Sec. 3.3 Eq. 3 (phi = 1 by default)", None)


register_model("efficientnet_phi", EfficientNetPhi, _phi_info)
