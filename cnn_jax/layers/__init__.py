"""Layers shared by the families, apart from them: the model contract (``model``), BatchNorm conventions
(``norm``), the conv factory every convolution goes through (``conv``), squeeze-and-excitation (``se``),
stochastic depth (``stochastic_depth``), pooling, the classifier head, the stage runner (``stages``), the residual
blocks (``blocks``) and the MBConv network (``mbconv``, imported as ``cnn_jax.layers.mbconv``).

Everything is re-exported here: ``from cnn_jax import layers; layers.ConvNormAct(...)``.
"""

from __future__ import annotations

from cnn_jax.layers.blocks import SHORTCUTS, BasicBlock, Bottleneck, ResidualBlock
from cnn_jax.layers.conv import (
    INIT_CONVENTIONS,
    Conv,
    ConvNormAct,
    conv,
    conv_kernel_init,
    conv_padding,
    grouped_conv_kernel_init,
    make_divisible,
)
from cnn_jax.layers.heads import ClassifierHead
from cnn_jax.layers.model import ClassifierModel, ModelOutput, check_images
from cnn_jax.layers.norm import BN_CONVENTIONS, batch_norm, bn_convention
from cnn_jax.layers.pooling import Pool, adaptive_avg_pool
from cnn_jax.layers.se import SqueezeExcite, hard_sigmoid, hard_swish
from cnn_jax.layers.stages import run_stage
from cnn_jax.layers.stochastic_depth import (
    DROP_PATH_RULES,
    DropPath,
    drop_path,
    drop_path_rates,
    stage_drop_path_rates,
)
from cnn_jax.layers.types import Activation, Array, Dtype

__all__ = [
    "Activation",
    "Array",
    "BN_CONVENTIONS",
    "BasicBlock",
    "Bottleneck",
    "ClassifierHead",
    "ClassifierModel",
    "Conv",
    "ConvNormAct",
    "DROP_PATH_RULES",
    "DropPath",
    "Dtype",
    "INIT_CONVENTIONS",
    "ModelOutput",
    "Pool",
    "ResidualBlock",
    "SHORTCUTS",
    "SqueezeExcite",
    "adaptive_avg_pool",
    "batch_norm",
    "bn_convention",
    "check_images",
    "conv",
    "conv_kernel_init",
    "conv_padding",
    "drop_path",
    "drop_path_rates",
    "grouped_conv_kernel_init",
    "hard_sigmoid",
    "hard_swish",
    "make_divisible",
    "run_stage",
    "stage_drop_path_rates",
]
