"""ResNet and the families that are ResNets with another width, grouping or block option.

- ResNet-18/34/50/101/152: He, Zhang, Ren & Sun 2015, "Deep Residual Learning for Image Recognition",
  arXiv:1512.03385, Table 1, in torchvision's layout: option-B shortcuts (projection only where the shape changes),
  stride on the bottleneck's 3x3 ("v1.5"; ``stride_in_1x1=True`` is the paper's placement, same parameters,
  ResNet-50 3.86 instead of 4.09 GMACs).
- Stem/shortcut variants of He, Zhang, Zhang, Zhang, Xie & Li 2019, "Bag of Tricks for Image Classification with
  Convolutional Neural Networks", arXiv:1812.01187, Sec. 4.2, Fig. 2, named as in timm: ResNet-C (deep 3x3 stem
  32-32-64), ResNet-D (C + average-pool shortcut), ResNet-S (Gluon's deep stem 64-64-128).
- ResNeXt: Xie, Girshick, Dollar, Tu & He 2017, "Aggregated Residual Transformations for Deep Neural Networks",
  arXiv:1611.05431, Table 1 (grouped 3x3, form c); ``groups`` x ``base_width`` ("32x4d").
- Wide ResNet-50-2/101-2: Zagoruyko & Komodakis 2016, "Wide Residual Networks", arXiv:1605.07146, ImageNet section
  (bottleneck 3x3 twice as wide: ``base_width=128``).
- SE-ResNet/SE-ResNeXt/SENet-154: Hu, Shen, Albanie, Sun & Wu 2018, "Squeeze-and-Excitation Networks",
  arXiv:1709.01507, Table 1 and Appendix (SENet-154: ResNeXt-101 64x4d with SE, deep 3x3 stem, first 1x1 of each
  bottleneck halved, 3x3 stride-2 projections, dropout 0.2 before the classifier). SE reduction r = 16 of the block
  output channels. The paper's SE-ResNet-50 keeps the stride on the 1x1; the registration follows timm's
  ``seresnet50`` (v1.5), which has the same parameters.

Stochastic depth (Huang, Sun, Liu, Sedra & Weinberger 2016, arXiv:1603.09382) is available on every block via
``drop_path_rate``, decaying linearly with depth under ``drop_path_rule`` (default ``"huang"``: block i of N drops
with ``rate * (i + 1) / N``; timm's ResNets use ``"linspace"``, ``rate * i / (N - 1)``).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cnn_jax.layers import (
    Array,
    ClassifierHead,
    ClassifierModel,
    ConvNormAct,
    Dtype,
    ModelOutput,
    Pool,
    check_images,
    run_stage,
    stage_drop_path_rates,
)
from cnn_jax.layers.blocks import BasicBlock, Bottleneck, ResidualBlock
from cnn_jax.registry import ModelInfo, register_model

# Stems, before the 3x3/2 max pool: (kernel, widths); the first conv has stride 2, each conv is conv-BN-ReLU.
STEMS: dict[str, tuple[int, tuple[int, ...]]] = {
    "b": (7, (64,)),  # He et al. 2015 Table 1 conv1: 7x7, 64, stride 2 (kept by ResNet-B)
    "c": (3, (32, 32, 64)),  # ResNet-C (Bag of Tricks Fig. 2b): three 3x3 convs
    "s": (3, (64, 64, 128)),  # Gluon ResNet-S: the deep stem twice as wide (SENet-154, ResNeSt-101)
}
# The stem's 3x3/2 max pool: padded by 1 (torchvision, timm), or unpadded keeping a partial last window (the Caffe
# ports: Hu et al.'s released SENets, timm's legacy_senet154).
STEM_POOLS: dict[str, dict[str, Any]] = {"padded": dict(padding=1), "ceil": dict(padding=0, ceil_mode=True)}


class Stem(nn.Module):
    """The stem of ``STEMS[kind]`` followed by the 3x3 stride-2 max pool: output at 1/4 resolution."""

    kind: str = "b"
    pool: str = "padded"
    dtype: Dtype = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array, *, train: bool) -> Array:
        if self.kind not in STEMS:
            raise ValueError(f"unknown ResNet stem {self.kind!r}; expected one of {sorted(STEMS)}")
        if self.pool not in STEM_POOLS:
            raise ValueError(f"unknown ResNet stem_pool {self.pool!r}; expected one of {sorted(STEM_POOLS)}")
        kernel, widths = STEMS[self.kind]
        for i, width in enumerate(widths):
            x = ConvNormAct(
                width, kernel, 2 if i == 0 else 1, dtype=self.dtype, param_dtype=self.param_dtype, name=f"conv{i + 1}"
            )(x, train=train)
        return Pool("max", 3, 2, name="pool", **STEM_POOLS[self.pool])(x)


class ResNet(ClassifierModel):
    """The ResNet stage builder: stem, four stages of ``block`` (the first block of stages 2-4 strided), head.

    Attributes:
      stage_sizes: blocks per stage (Table 1: 2-2-2-2 for ResNet-18, 3-4-6-3 for ResNet-50, ...).
      block: the residual block class (``BasicBlock``, ``Bottleneck``, or another ``ResidualBlock``).
      stage_widths: the blocks' ``planes`` per stage; outputs are ``planes * block.expansion``.
      stem: a key of ``STEMS`` ("b" 7x7, "c" deep 32-32-64, "s" deep 64-64-128).
      stem_pool: a key of ``STEM_POOLS``, the stem's max pool ("padded", or "ceil" as the Caffe-ported SENets).
      shortcut: projection-shortcut form, "conv" (option B) or "avg" (ResNet-D); see ``ResidualBlock``.
      down_kernel_size: kernel of the strided projection convs (3 in SENet-154).
      groups, base_width, reduce_first, se_reduction, stride_in_1x1: block options (see ``Bottleneck``).
      zero_init_residual: zero-init the last BN gamma of every residual branch, so each block starts as its
        shortcut (Goyal et al. 2017, arXiv:1706.02677). Off by default (He et al. 2015's init, and so every
        parameter gets a gradient at step 0); the Goyal et al. large-batch recipe, torchvision's
        ``zero_init_residual=True`` and timm's default ``zero_init_last`` turn it on.
      drop_path_rule: how the drop-path rate grows with depth (a key of ``layers.DROP_PATH_RULES``).
      scan_blocks: run each stage's blocks after the first under ``nn.scan`` (``layers.run_stage``: parameters
        stacked under ``stage{i}_blocks``, compile time flat in depth); False gives ``stage{i}_block{j}``.
    """

    stage_sizes: Sequence[int] = (3, 4, 6, 3)
    block: type[ResidualBlock] = Bottleneck
    stage_widths: Sequence[int] = (64, 128, 256, 512)
    stem: str = "b"
    stem_pool: str = "padded"
    shortcut: str = "conv"
    down_kernel_size: int = 1
    groups: int = 1
    base_width: int = 64
    reduce_first: int = 1
    se_reduction: int = 0
    stride_in_1x1: bool = False
    zero_init_residual: bool = False
    drop_path_rule: str = "huang"
    drop_path_rate: float = 0.0
    scan_blocks: bool = False

    def block_options(self) -> dict[str, Any]:
        """The keyword arguments, beyond the structural ones, that this network gives each block."""
        return dict(
            groups=self.groups,
            base_width=self.base_width,
            reduce_first=self.reduce_first,
            se_reduction=self.se_reduction,
            stride_in_1x1=self.stride_in_1x1,
        )

    @nn.compact
    def __call__(self, images: Array, *, train: bool) -> ModelOutput:
        check_images(images, self.in_channels, type(self).__name__)
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        x = Stem(self.stem, self.stem_pool, name="stem", **kw)(images, train=train)
        rates = stage_drop_path_rates(self.drop_path_rate, list(self.stage_sizes), self.drop_path_rule)
        for stage, (planes, stage_rates) in enumerate(zip(self.stage_widths, rates, strict=True)):
            block = functools.partial(self.block, planes=planes, shortcut=self.shortcut,
                                      down_kernel_size=self.down_kernel_size,
                                      zero_init_residual=self.zero_init_residual, **self.block_options(), **kw)
            x = run_stage(block, x, stage_rates, strides=2 if stage > 0 else 1, prefix=f"stage{stage + 1}",
                          train=train, scan=self.scan_blocks)
        logits = ClassifierHead(self.num_classes, self.drop_rate, name="head", **kw)(x, train=train)
        return ModelOutput(logits)


# ---------------------------------------------------------------------------------------------------------------
# Registrations.
RESNET = "He, Zhang, Ren & Sun 2015, Deep Residual Learning for Image Recognition, arXiv:1512.03385"
TRICKS = "He, Zhang, Zhang, Zhang, Xie & Li 2019, Bag of Tricks for Image Classification with CNNs, arXiv:1812.01187"
RESNEXT = (
    "Xie, Girshick, Dollar, Tu & He 2017, Aggregated Residual Transformations for Deep Neural Networks, "
    "arXiv:1611.05431"
)
WRN = "Zagoruyko & Komodakis 2016, Wide Residual Networks, arXiv:1605.07146"
SENET = "Hu, Shen, Albanie, Sun & Wu 2018, Squeeze-and-Excitation Networks, arXiv:1709.01507"

BASIC = dict(block=BasicBlock)
DEPTHS: dict[int, tuple[int, ...]] = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
}

# name -> (ModelInfo fields, architecture arguments). Every row uses the ResNet builder above.
_VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    **{
        f"resnet{depth}": (
            dict(paper=RESNET, table="Table 1 (torchvision layout, stride on the 3x3)", family="resnet"),
            dict(stage_sizes=DEPTHS[depth], **(BASIC if depth < 50 else {})),
        )
        for depth in DEPTHS
    },
    "resnet50c": (
        dict(paper=TRICKS, table="Sec. 4.2 Fig. 2b ResNet-C (deep 3x3 stem 32-32-64); timm resnet50c", family="resnet"),
        dict(stage_sizes=DEPTHS[50], stem="c"),
    ),
    "resnet50d": (
        dict(
            paper=TRICKS,
            table="Sec. 4.2 Fig. 2c ResNet-D (ResNet-C + avg-pool shortcut); timm resnet50d",
            family="resnet",
        ),
        dict(stage_sizes=DEPTHS[50], stem="c", shortcut="avg"),
    ),
    "resnet50s": (
        dict(paper=TRICKS, table="Gluon ResNet-S (deep 3x3 stem 64-64-128) as timm resnet50s", family="resnet"),
        dict(stage_sizes=DEPTHS[50], stem="s"),
    ),
    "resnext50_32x4d": (
        dict(paper=RESNEXT, table="Table 1 (ResNeXt-50 32x4d); torchvision layout", family="resnext"),
        dict(stage_sizes=DEPTHS[50], groups=32, base_width=4),
    ),
    "resnext101_32x8d": (
        dict(paper=RESNEXT, table="Table 1 template at depth 101, 32x8d (torchvision)", family="resnext"),
        dict(stage_sizes=DEPTHS[101], groups=32, base_width=8),
    ),
    "resnext101_64x4d": (
        dict(paper=RESNEXT, table="Table 5 ResNeXt-101 64x4d; torchvision layout", family="resnext"),
        dict(stage_sizes=DEPTHS[101], groups=64, base_width=4),
    ),
    "wide_resnet50_2": (
        dict(paper=WRN, table="ImageNet WRN-50-2-bottleneck (Table 8); torchvision layout", family="wide_resnet"),
        dict(stage_sizes=DEPTHS[50], base_width=128),
    ),
    "wide_resnet101_2": (
        dict(paper=WRN, table="WRN-50-2 widening at depth 101 (torchvision)", family="wide_resnet"),
        dict(stage_sizes=DEPTHS[101], base_width=128),
    ),
    "seresnet50": (
        dict(paper=SENET, table="Table 1 SE-ResNet-50 (r=16); timm seresnet50 (stride on the 3x3)", family="senet"),
        dict(stage_sizes=DEPTHS[50], se_reduction=16),
    ),
    "seresnext50_32x4d": (
        dict(paper=SENET, table="Table 1 SE-ResNeXt-50 32x4d (r=16); timm seresnext50_32x4d", family="senet"),
        dict(stage_sizes=DEPTHS[50], groups=32, base_width=4, se_reduction=16),
    ),
    "senet154": (
        dict(paper=SENET, table="Appendix, SENet-154 (modified SE-ResNeXt-101 64x4d); timm senet154", family="senet"),
        dict(
            stage_sizes=DEPTHS[152],
            groups=64,
            base_width=4,
            stem="s",
            down_kernel_size=3,
            reduce_first=2,
            se_reduction=16,
            drop_rate=0.2,
        ),
    ),
}

for _name, (_info, _arguments) in _VARIANTS.items():
    register_model(
        _name,
        ResNet,
        ModelInfo(resolution=224, crop_fraction=0.875, reference=_name, min_resolution=32, **_info),
        **_arguments,
    )
