"""Pre-activation ResNets ("ResNet v2") and Wide ResNets.

- He, Zhang, Ren & Sun 2016, "Identity Mappings in Deep Residual Networks", arXiv:1603.05027: the full
  pre-activation unit of Fig. 4(e), BN -> ReLU -> conv, with an identity shortcut that is never followed by a ReLU.
  * ImageNet ``resnetv2_18/34/50/101/152`` (Table 5 uses 152/200) in timm's ``resnetv2_*`` layout: a 7x7/2 stem
    conv without BN-ReLU (the first unit pre-activates it) and the 3x3/2 max pool; stride on the bottleneck's 3x3;
    1x1 projection shortcuts on the pre-activated input in the first unit of every stage (basic blocks: only where
    the shape changes); a final BN-ReLU before the head. resnetv2_50 = 25,549,352 and resnetv2_101 = 44,541,480
    parameters, as timm.
  * CIFAR ``preact_resnet164/1001`` (Table 4): 3x3 conv 16, three stages of n = (depth - 2) / 9 bottleneck units
    with outputs 64/128/256 (inner widths 16/32/64), final BN-ReLU, global pool, FC. Stride on the first 1x1 as in
    the authors' code (KaimingHe/resnet-1k-layers ``resnet-pre-act.lua``): 244.5M / 1.488G MACs, where models.md's
    247.6M / 1.491G count the stride on the 3x3 (``stride_on_3x3=True``; same parameters). Pre-act ResNet-1001 has
    10,327,706 parameters here (= models.md), while Table 4 says 10.2M; this is the authors' code's layout (one
    projection per stage).
- Zagoruyko & Komodakis 2016, "Wide Residual Networks", arXiv:1605.07146, Table 1: WRN-d-k on CIFAR, 3x3 conv 16,
  three stages of (d - 4) / 6 pre-activation basic units 16k/32k/64k wide, 1x1 projections where the shape changes,
  dropout between the two convs of a unit (``block_dropout``; 0.3 in the paper's dropout runs, Sec. 2.4).

Stochastic depth (Huang et al. 2016, arXiv:1603.09382) on every unit via ``drop_path_rate``; ``drop_path_rule``
names how it decays with depth (timm's ``"linspace"`` for the ImageNet layouts, the paper's ``"huang"`` on CIFAR).

With ``scan_blocks=True`` a stage runs its identical units (all but the first) under ``nn.scan``, so compile
time does not grow with depth (ResNet-1001 has 111 units a stage): their parameters are stacked on a leading axis
under one module ``stage{i}_blocks``. The default ``False`` gives one module per unit (``stage{i}_block{j}``) with
the same parameters unstacked: XLA's CPU backend runs convolutions inside a scan loop far slower (BENCHMARKS.md,
"Scanned stages on XLA:CPU"), so only the 1001-layer net is
registered scanned.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax.numpy as jnp

from cnn_jax import layers
from cnn_jax.layers import (
    Array,
    ClassifierHead,
    Dtype,
    ModelOutput,
    Pool,
    check_images,
    conv,
    run_stage,
    stage_drop_path_rates,
)
from cnn_jax.registry import ModelInfo, register_model

# ---------------------------------------------------------------------------------------------------------------
# Pre-activation units (He et al. 2016 Fig. 4e). Where the shape changes, the BN-ReLU is shared by both branches
# and a 1x1 conv projects the pre-activated input (resnet-pre-act.lua, WRN and timm alike); otherwise the shortcut
# is the raw input.


class PreActBasicBlock(nn.Module):
    """BN-ReLU-conv3x3 twice (the first conv strided), with Wide ResNet's dropout between the convs."""

    features: int
    strides: int = 1
    dropout_rate: float = 0.0
    dtype: Dtype = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array, *, train: bool, drop_path_rate: float | Array = 0.0) -> Array:
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        bn = functools.partial(layers.batch_norm, "pytorch", train=train, **kw)
        preact = nn.relu(bn(name="bn1")(x))
        shortcut = x
        if self.strides != 1 or x.shape[-1] != self.features:
            shortcut = conv(self.features, 1, self.strides, name="downsample", **kw)(preact)
        y = conv(self.features, 3, self.strides, name="conv1", **kw)(preact)
        y = nn.relu(bn(name="bn2")(y))
        y = nn.Dropout(self.dropout_rate, deterministic=not train)(y)
        y = conv(self.features, 3, 1, name="conv2", **kw)(y)
        return shortcut + layers.DropPath(name="drop_path")(y, train=train, rate=drop_path_rate)


class PreActBottleneck(nn.Module):
    """BN-ReLU-conv1x1 -> BN-ReLU-conv3x3 -> BN-ReLU-conv1x1 (x4); ``features`` is the output width.

    ``stride_on_3x3`` strides the 3x3 (timm); False strides the first 1x1 (and the projection), as the authors'
    CIFAR code does. Same parameters either way.
    """

    features: int
    strides: int = 1
    stride_on_3x3: bool = True
    dtype: Dtype = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array, *, train: bool, drop_path_rate: float | Array = 0.0) -> Array:
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        bn = functools.partial(layers.batch_norm, "pytorch", train=train, **kw)
        width = self.features // 4
        stride_1x1, stride_3x3 = (1, self.strides) if self.stride_on_3x3 else (self.strides, 1)
        preact = nn.relu(bn(name="bn1")(x))
        shortcut = x
        if self.strides != 1 or x.shape[-1] != self.features:
            shortcut = conv(self.features, 1, self.strides, name="downsample", **kw)(preact)
        y = conv(width, 1, stride_1x1, name="conv1", **kw)(preact)
        y = conv(width, 3, stride_3x3, name="conv2", **kw)(nn.relu(bn(name="bn2")(y)))
        y = conv(self.features, 1, 1, name="conv3", **kw)(nn.relu(bn(name="bn3")(y)))
        return shortcut + layers.DropPath(name="drop_path")(y, train=train, rate=drop_path_rate)


# Stems: (kernel, stride, width, 3x3/2 max pool after). No BN-ReLU: the first unit pre-activates the stem output.
STEMS: dict[str, tuple[int, int, int, bool]] = {
    "imagenet": (7, 2, 64, True),  # timm resnetv2 (the v1 conv1 + pool of He et al. 2015 Table 1)
    "cifar": (3, 1, 16, False),  # He et al. 2015 Sec. 4.2; resnet-pre-act.lua; WRN Table 1 conv1
}


class PreActResNet(layers.ClassifierModel):
    """Stem, stages of pre-activation units (stride 2 from the second stage on), final BN-ReLU, head.

    Attributes:
      stages: (units, output channels) per stage.
      block: ``"basic"`` (two 3x3) or ``"bottleneck"`` (1x1-3x3-1x1, inner width = output / 4).
      stem: a key of ``STEMS``.
      stride_on_3x3: bottleneck stride placement (see ``PreActBottleneck``).
      block_dropout: dropout between the convs of a basic unit (Wide ResNet; 0.3 in the paper's dropout runs).
      drop_path_rule: drop-path decay over the units (a key of ``layers.DROP_PATH_RULES``).
      scan_blocks: run each stage's identical units under ``nn.scan`` (stacked parameters; see module docstring).
    """

    stages: Sequence[tuple[int, int]] = ((3, 256), (4, 512), (6, 1024), (3, 2048))
    block: str = "bottleneck"
    stem: str = "imagenet"
    stride_on_3x3: bool = True
    block_dropout: float = 0.0
    drop_path_rule: str = "linspace"
    scan_blocks: bool = False
    drop_path_rate: float = 0.0

    def drop_path_schedule(self) -> list[list[float]]:
        """The drop-path rate of every unit, per stage."""
        return stage_drop_path_rates(self.drop_path_rate, [depth for depth, _ in self.stages], self.drop_path_rule)

    def make_block(self) -> Callable[..., nn.Module]:
        """The unit constructor with this network's options; stages add ``features``, ``strides`` and ``name``."""
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        if self.block == "basic":
            return functools.partial(PreActBasicBlock, dropout_rate=self.block_dropout, **kw)
        if self.block == "bottleneck":
            if self.block_dropout:
                raise ValueError("block_dropout (dropout between the convs, Wide ResNet) needs block='basic'")
            return functools.partial(PreActBottleneck, stride_on_3x3=self.stride_on_3x3, **kw)
        raise ValueError(f"unknown pre-activation block {self.block!r}; expected 'basic' or 'bottleneck'")

    @nn.compact
    def __call__(self, images: Array, *, train: bool) -> ModelOutput:
        check_images(images, self.in_channels, type(self).__name__)
        if self.stem not in STEMS:
            raise ValueError(f"unknown pre-activation ResNet stem {self.stem!r}; expected one of {sorted(STEMS)}")
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        kernel, stride, width, pool = STEMS[self.stem]
        x = conv(width, kernel, stride, name="stem_conv", **kw)(images)
        if pool:
            x = Pool("max", 3, 2, padding=1, name="stem_pool")(x)
        block = self.make_block()
        for index, ((_, features), rates) in enumerate(zip(self.stages, self.drop_path_schedule(), strict=True)):
            x = run_stage(
                functools.partial(block, features=features),
                x,
                rates,
                strides=1 if index == 0 else 2,
                prefix=f"stage{index + 1}",
                train=train,
                scan=self.scan_blocks,
            )
        x = nn.relu(layers.batch_norm("pytorch", train=train, name="norm", **kw)(x))
        logits = ClassifierHead(self.num_classes, self.drop_rate, name="head", **kw)(x, train=train)
        return ModelOutput(logits)


# ---------------------------------------------------------------------------------------------------------------
# Registrations (the CIFAR pre-activation and wide networks are registered in cifar_resnet.py).
IDENTITY_MAPPINGS = "He, Zhang, Ren & Sun 2016, Identity Mappings in Deep Residual Networks, arXiv:1603.05027"

# depth -> (units per stage, block); output widths 64-512 (basic) or 256-2048 (bottleneck), as v1 Table 1.
IMAGENET_DEPTHS: dict[int, tuple[tuple[int, ...], str]] = {
    18: ((2, 2, 2, 2), "basic"),
    34: ((3, 4, 6, 3), "basic"),
    50: ((3, 4, 6, 3), "bottleneck"),
    101: ((3, 4, 23, 3), "bottleneck"),
    152: ((3, 8, 36, 3), "bottleneck"),
}
IMAGENET_WIDTHS = {"basic": (64, 128, 256, 512), "bottleneck": (256, 512, 1024, 2048)}

for _depth, (_units, _block) in IMAGENET_DEPTHS.items():
    register_model(
        f"resnetv2_{_depth}",
        PreActResNet,
        ModelInfo(
            paper=IDENTITY_MAPPINGS,
            table="Fig. 4(e) full pre-activation unit; timm resnetv2 layout (BatchNorm, stride on the 3x3)",
            resolution=224,
            crop_fraction=0.875,
            family="preact_resnet",
            reference="resnetv2_50" if _depth == 50 else None,
            min_resolution=32,
        ),
        stages=tuple(zip(_units, IMAGENET_WIDTHS[_block], strict=True)),
        block=_block,
    )
