"""Inception v3, Inception v4 and Inception-ResNet-v2.

- Inception v3: Szegedy et al. 2015, "Rethinking the Inception Architecture for Computer Vision", arXiv:1512.00567,
  Table 1 (factorised 7x7 as 1x7/7x1, Figs. 5-7 modules, Fig. 10 grid-size reductions, one auxiliary classifier on
  the last 17x17 map, 299x299 input). The layout is the released TF-slim one that torchvision's ``inception_v3``
  ports (23,834,568 parameters, 27,161,264 with the auxiliary head): the 35x35 modules keep a 5x5 branch next to the
  double-3x3 one, and the aux head is avg-pool 5/3 -> 1x1 conv 128 -> 5x5 conv 768 -> linear (no BN in the FC).
  The paper gives no head dropout; 0.5 is torchvision's (TF-slim keeps 0.8).
- Inception v4 and Inception-ResNet-v2: Szegedy et al. 2016, "Inception-v4, Inception-ResNet and the Impact of
  Residual Connections on Learning", arXiv:1602.07261. Inception-v4 is Fig. 9 (stem Fig. 3, Inception-A/B/C
  Figs. 4-6, Reduction-A/B Figs. 7-8 with Table 1's k, l, m, n = 192, 224, 256, 384), dropout keep 0.8.
  Inception-ResNet-v2 follows the TF-slim checkpoint that timm ports (55,843,464 parameters), which differs from
  the paper's Figs. 15-19: its stem is Inception-v3's plus a 35x35 Inception module ("mixed_5b"), and its blocks
  are 320 / 1088 / 2080 channels wide (the paper's figures: 384 / 1154 / 2048, which do not add up across its
  Reduction-B). Residual branches end in a linear 1x1 conv
  (with bias) and are scaled before the addition (Sec. 3.3, Fig. 20) by 0.17 / 0.1 / 0.2 for the 35x35 / 17x17 /
  8x8 blocks (``residual_scales``); the last 8x8 block is unscaled and has no ReLU (TF-slim).

Every conv is conv (no bias) -> BatchNorm (eps 1e-3, the "inception" convention) -> ReLU. Modules are data: a
branch is a sequence of ``Conv`` / ``PoolOp`` / ``Split`` specs, and a module is a tuple of branches concatenated
on channels in the reference order (so imported weights line up). Stems and Inception v3 use TF-slim's names
(``conv2d_1a``, ``mixed_5b`` ...), the Inception-v4 / Inception-ResNet-v2 bodies the paper's (``inception_a``,
``reduction_a``, ``inception_resnet_b`` ...); inside a module, op ``j`` of branch ``i`` is ``branch{i}_{j}``
(timm's numbering) and the two halves of a ``Split`` are ``branch{i}_{j}a`` / ``b``. The repeated identical
modules of Inception-v4 (4 / 7 / 3) and Inception-ResNet-v2 (10 / 20 / 9) can run under ``nn.scan``
(``scan_blocks=True``): one compiled body per stage, parameters stacked on a leading axis in timm's order. It is off
by default because XLA's CPU backend runs convolutions inside the scan loop far slower (BENCHMARKS.md, "Scanned
stages on XLA:CPU").

Average pooling inside the modules (3x3, stride 1, padding 1) has two conventions, the ``count_include_pad`` field:
torchvision's Inception v3 counts the zero padding in the divisor (``avg_pool2d`` default), so its ported weights
are evaluated that way; timm's Inception v4 / Inception-ResNet-v2 (like TF "SAME" pooling) do not. At a corner of
a constant map the first gives 4/9 of the value, the second the value itself.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_jax import layers
from cnn_jax.layers import (
    ClassifierHead,
    ConvNormAct,
    ModelOutput,
    Pool,
    check_images,
    conv_kernel_init,
    drop_path_rates,
)
from cnn_jax.models.googlenet import require_feature_map
from cnn_jax.registry import ModelInfo, register_model

Array = jax.Array


class Conv(NamedTuple):
    """Conv -> BN -> ReLU; ``padding`` "symmetric" keeps the size at stride 1, "valid" pads nothing."""

    features: int
    kernel: int | tuple[int, int] = 1
    stride: int = 1
    padding: str = "symmetric"


class PoolOp(NamedTuple):
    kind: str
    window: int = 3
    stride: int = 1
    padding: int = 0


class Split(NamedTuple):
    """Parallel convs on the same input, concatenated: the expanded 1x3 / 3x1 outputs of Fig. 7."""

    parts: tuple[Conv, ...]


Op = Conv | PoolOp | Split
Branch = tuple[Op, ...]
Branches = tuple[Branch, ...]

AVG_POOL = PoolOp("avg", 3, 1, 1)
MAX_POOL_S2 = PoolOp("max", 3, 2)


def reduce(features: int) -> Conv:
    """3x3 stride-2 conv without padding: the grid-size reductions (35 -> 17 -> 8)."""
    return Conv(features, 3, 2, "valid")


def _split3(features: int) -> Split:
    return Split((Conv(features, (1, 3)), Conv(features, (3, 1))))


# ---- Inception v3 (torchvision InceptionA-E) --------------------------------------------------------------------
def _v3_a(pool_features: int) -> Branches:  # 35x35 (Fig. 5 as released: a 5x5 branch besides the double 3x3)
    return (
        (Conv(64),),
        (Conv(48), Conv(64, 5)),
        (Conv(64), Conv(96, 3), Conv(96, 3)),
        (AVG_POOL, Conv(pool_features)),
    )


def _v3_c(c7: int) -> Branches:  # 17x17 (Fig. 6, n = 7)
    return (
        (Conv(192),),
        (Conv(c7), Conv(c7, (1, 7)), Conv(192, (7, 1))),
        (Conv(c7), Conv(c7, (7, 1)), Conv(c7, (1, 7)), Conv(c7, (7, 1)), Conv(192, (1, 7))),
        (AVG_POOL, Conv(192)),
    )


_V3_REDUCTION_A: Branches = ((reduce(384),), (Conv(64), Conv(96, 3), reduce(96)), (MAX_POOL_S2,))
_V3_REDUCTION_B: Branches = (
    (Conv(192), reduce(320)),
    (Conv(192), Conv(192, (1, 7)), Conv(192, (7, 1)), reduce(192)),
    (MAX_POOL_S2,),
)
_V3_E: Branches = (  # 8x8 (Fig. 7)
    (Conv(320),),
    (Conv(384), _split3(384)),
    (Conv(448), Conv(384, 3), _split3(384)),
    (AVG_POOL, Conv(192)),
)

# The TF-slim stem shared by Inception v3 and Inception-ResNet-v2 (299 -> 35).
SLIM_STEM: tuple[tuple[str, Op], ...] = (
    ("conv2d_1a", reduce(32)),
    ("conv2d_2a", Conv(32, 3, 1, "valid")),
    ("conv2d_2b", Conv(64, 3)),
    ("maxpool_3a", MAX_POOL_S2),
    ("conv2d_3b", Conv(80, 1)),
    ("conv2d_4a", Conv(192, 3, 1, "valid")),
    ("maxpool_5a", MAX_POOL_S2),
)
INCEPTION_V3: tuple[tuple[str, Op | Branches], ...] = SLIM_STEM + (
    ("mixed_5b", _v3_a(32)),
    ("mixed_5c", _v3_a(64)),
    ("mixed_5d", _v3_a(64)),
    ("mixed_6a", _V3_REDUCTION_A),
    ("mixed_6b", _v3_c(128)),
    ("mixed_6c", _v3_c(160)),
    ("mixed_6d", _v3_c(160)),
    ("mixed_6e", _v3_c(192)),
    ("mixed_7a", _V3_REDUCTION_B),
    ("mixed_7b", _V3_E),
    ("mixed_7c", _V3_E),
)
V3_AUX_AFTER = "mixed_6e"

# ---- Inception v4 (Figs. 3-9) ------------------------------------------------------------------------------------
_V4_A: Branches = ((Conv(96),), (Conv(64), Conv(96, 3)), (Conv(64), Conv(96, 3), Conv(96, 3)), (AVG_POOL, Conv(96)))
_V4_B: Branches = (
    (Conv(384),),
    (Conv(192), Conv(224, (1, 7)), Conv(256, (7, 1))),
    (Conv(192), Conv(192, (7, 1)), Conv(224, (1, 7)), Conv(224, (7, 1)), Conv(256, (1, 7))),
    (AVG_POOL, Conv(128)),
)
_V4_C: Branches = (
    (Conv(256),),
    (Conv(384), _split3(256)),
    (Conv(384), Conv(448, (3, 1)), Conv(512, (1, 3)), _split3(256)),
    (AVG_POOL, Conv(256)),
)
INCEPTION_V4_STEM: tuple[tuple[str, Op | Branches], ...] = (  # Fig. 3 (299 -> 35)
    ("conv2d_1a", reduce(32)),
    ("conv2d_2a", Conv(32, 3, 1, "valid")),
    ("conv2d_2b", Conv(64, 3)),
    ("mixed_3a", ((MAX_POOL_S2,), (reduce(96),))),
    (
        "mixed_4a",
        (
            (Conv(64), Conv(96, 3, 1, "valid")),
            (Conv(64), Conv(64, (1, 7)), Conv(64, (7, 1)), Conv(96, 3, 1, "valid")),
        ),
    ),
    ("mixed_5a", ((reduce(192),), (MAX_POOL_S2,))),
)


class Stage(NamedTuple):
    """``depth`` identical modules (or Inception-ResNet blocks where ``residual``) named ``name``."""

    name: str
    branches: Branches
    depth: int = 1
    residual: bool = False


INCEPTION_V4_BODY: tuple[Stage, ...] = (  # Fig. 9
    Stage("inception_a", _V4_A, 4),
    # Reduction-A with Table 1's (k, l, m, n) = (192, 224, 256, 384).
    Stage("reduction_a", ((reduce(384),), (Conv(192), Conv(224, 3), reduce(256)), (MAX_POOL_S2,))),
    Stage("inception_b", _V4_B, 7),
    Stage(
        "reduction_b",
        ((Conv(192), reduce(192)), (Conv(256), Conv(256, (1, 7)), Conv(320, (7, 1)), reduce(320)), (MAX_POOL_S2,)),
    ),
    Stage("inception_c", _V4_C, 3),
)

# ---- Inception-ResNet-v2 (TF-slim layout) ----------------------------------------------------------------------
IR_V2_STEM: tuple[tuple[str, Op | Branches], ...] = SLIM_STEM + (
    ("mixed_5b", ((Conv(96),), (Conv(48), Conv(64, 5)), (Conv(64), Conv(96, 3), Conv(96, 3)), (AVG_POOL, Conv(64)))),
)
_IR_C: Branches = ((Conv(192),), (Conv(192), Conv(224, (1, 3)), Conv(256, (3, 1))))
IR_V2_BODY: tuple[Stage, ...] = (
    Stage("inception_resnet_a", ((Conv(32),), (Conv(32), Conv(32, 3)), (Conv(32), Conv(48, 3), Conv(64, 3))), 10,
          residual=True),
    # Reduction-A with Table 1's (k, l, m, n) = (256, 256, 384, 384).
    Stage("reduction_a", ((reduce(384),), (Conv(256), Conv(256, 3), reduce(384)), (MAX_POOL_S2,))),
    Stage("inception_resnet_b", ((Conv(192),), (Conv(128), Conv(160, (1, 7)), Conv(192, (7, 1)))), 20, residual=True),
    Stage(
        "reduction_b",
        ((Conv(256), reduce(384)), (Conv(256), reduce(288)), (Conv(256), Conv(288, 3), reduce(320)), (MAX_POOL_S2,)),
    ),
    Stage("inception_resnet_c", _IR_C, 9, residual=True),
)
# TF-slim's last 8x8 block: unscaled and without ReLU, before the final 1x1 conv.
IR_V2_LAST = Stage("inception_resnet_c_last", _IR_C, 1, residual=True)


# ---- Builders ----------------------------------------------------------------------------------------------------
# The functions below create submodules inside the calling module's compact ``__call__``; ``kw`` / ``dtypes``
# forward ``train``, ``count_include_pad`` and the ``dtype`` / ``param_dtype`` pair.
def apply_op(op: Op, x: Array, name: str, *, train: bool, count_include_pad: bool, **dtypes: Any) -> Array:
    """Applies one op spec as a submodule named ``name`` (a ``Split``'s parts get ``name`` + a, b, ...)."""
    if isinstance(op, Conv):
        conv = ConvNormAct(op.features, op.kernel, op.stride, padding=op.padding, norm_convention="inception",
                           name=name, **dtypes)
        return conv(x, train=train)
    if isinstance(op, PoolOp):
        return Pool(op.kind, op.window, op.stride, op.padding, count_include_pad=count_include_pad, name=name)(x)
    kw = dict(train=train, count_include_pad=count_include_pad, **dtypes)
    parts = [apply_op(part, x, f"{name}{'abcdefgh'[k]}", **kw) for k, part in enumerate(op.parts)]
    return jnp.concatenate(parts, axis=-1)


def apply_branches(branches: Branches, x: Array, **kw: Any) -> Array:
    """Runs each branch (``branch{i}_{j}`` submodules) on ``x`` and concatenates their outputs on channels."""
    outputs = []
    for i, branch in enumerate(branches):
        y = x
        for j, op in enumerate(branch):
            y = apply_op(op, y, f"branch{i}_{j}", **kw)
        outputs.append(y)
    return jnp.concatenate(outputs, axis=-1)


def apply_layer(name: str, spec: Op | Branches, x: Array, *, train: bool, count_include_pad: bool,
                **dtypes: Any) -> Array:
    """A named entry of a layer table: a stem op, or an Inception module (``Mixed``) of branches."""
    if isinstance(spec, Conv | PoolOp):
        return apply_op(spec, x, name, train=train, count_include_pad=count_include_pad, **dtypes)
    return Mixed(spec, count_include_pad, name=name, **dtypes)(x, train=train)


class Mixed(nn.Module):
    """An Inception module: parallel branches concatenated on channels."""

    branches: Branches
    count_include_pad: bool = True
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array, *, train: bool) -> Array:
        return apply_branches(self.branches, x, train=train, count_include_pad=self.count_include_pad,
                              dtype=self.dtype, param_dtype=self.param_dtype)


class InceptionResidual(nn.Module):
    """Inception-ResNet block (Figs. 16, 17, 19, Fig. 20 scaling): relu(x + scale * conv1x1(branches(x))).

    ``drop_path_rate`` is a call argument so that scanned stages can pass each block's rate as an array.
    """

    branches: Branches
    scale: float
    activate: bool = True
    count_include_pad: bool = True
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array, *, train: bool, drop_path_rate: float | Array = 0.0) -> Array:
        y = apply_branches(self.branches, x, train=train, count_include_pad=self.count_include_pad,
                           dtype=self.dtype, param_dtype=self.param_dtype)
        # Linear 1x1 conv back to the input width, with bias and no BN (TF-slim / timm "conv2d").
        y = layers.Conv(x.shape[-1], (1, 1), kernel_init=conv_kernel_init, dtype=self.dtype,
                    param_dtype=self.param_dtype, name="conv2d")(y)
        y = y * self.scale
        y = layers.DropPath(name="drop_path")(y, train=train, rate=drop_path_rate)
        x = x + y
        return nn.relu(x) if self.activate else x


def run_stage(make_block: Callable[..., nn.Module], x: Array, name: str, rates: Sequence[float] | None, *,
              depth: int, train: bool, scan: bool) -> Array:
    """Runs ``depth`` identical blocks made by ``make_block(name=...)``; ``rates`` are per-block drop-path rates
    (residual blocks) or None.

    With ``scan`` they are one ``nn.scan`` module ``name`` whose parameters and BatchNorm statistics are stacked on a
    leading axis (one compiled body, whatever the depth); otherwise ``depth`` modules ``{name}_{i}``. A single block
    is always the module ``name``.
    """

    def call(block: nn.Module, h: Array, rate: float | Array) -> Array:
        return block(h, train=train) if rates is None else block(h, train=train, drop_path_rate=rate)

    per_block = [0.0] * depth if rates is None else list(rates)
    if depth == 1:
        return call(make_block(name=name), x, per_block[0])
    if not scan:
        for i, rate in enumerate(per_block):
            x = call(make_block(name=f"{name}_{i}"), x, rate)
        return x
    # Zero rates stay a Python 0.0, so training without drop-path needs no "dropout" PRNG stream.
    traced = any(rate > 0.0 for rate in per_block)

    def body(block: nn.Module, carry: Array, rate: Array) -> tuple[Array, None]:
        return call(block, carry, rate if traced else 0.0), None

    scanned = nn.scan(
        body, variable_axes={"params": 0, "batch_stats": 0}, split_rngs={"params": True, "dropout": True}, length=depth
    )
    x, _ = scanned(make_block(name=name), x, jnp.asarray(per_block, jnp.float32))
    return x


class InceptionV3Aux(nn.Module):
    """Inception v3 auxiliary classifier on the last 17x17 map (torchvision / TF-slim layout)."""

    num_classes: int
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array, *, train: bool) -> Array:
        kw = dict(norm_convention="inception", dtype=self.dtype, param_dtype=self.param_dtype)
        x = Pool("avg", 5, 3, name="pool")(x)
        x = ConvNormAct(128, 1, name="conv0", **kw)(x, train=train)
        x = ConvNormAct(768, 5, padding="valid", name="conv1", **kw)(x, train=train)
        require_feature_map(x, "InceptionV3", "the auxiliary head's 5x5 conv (input >= 299 needed)")
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=self.param_dtype, name="fc")(x)


class InceptionV3(layers.ClassifierModel):
    """Inception v3 (Table 1, TF-slim / torchvision layout) with an optional auxiliary classifier.

    Attributes:
      aux_logits: build the auxiliary classifier on ``mixed_6e``; its logits come back as ``aux_logits["aux"]`` in
        training only (TF-slim's recipe weights its loss by 0.4). It needs inputs of at least 299.
      count_include_pad: whether the modules' 3x3 average pools count zero padding (torchvision: True).
    """

    drop_rate: float = 0.5
    aux_logits: bool = True
    count_include_pad: bool = True

    @nn.compact
    def __call__(self, images: Array, *, train: bool) -> ModelOutput:
        check_images(images, self.in_channels, "InceptionV3")
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        x, aux = images, {}
        for name, spec in INCEPTION_V3:
            x = apply_layer(name, spec, x, train=train, count_include_pad=self.count_include_pad, **kw)
            # The aux head also runs at init so its parameters exist after an eval-mode init.
            if name == V3_AUX_AFTER and self.aux_logits and (train or self.is_initializing()):
                logits = InceptionV3Aux(self.num_classes, name="aux", **kw)(x, train=train)
                if train:
                    aux["aux"] = logits
        require_feature_map(x, "InceptionV3", "mixed_7c")
        logits = ClassifierHead(self.num_classes, self.drop_rate, name="head", **kw)(x, train=train)
        return ModelOutput(logits=logits, aux_logits=aux)


class InceptionV4(layers.ClassifierModel):
    """Inception-v4 (Fig. 9).

    Attributes:
      count_include_pad: see the module docstring (timm / TF-slim: False).
      scan_blocks: run the 4 / 7 / 3 identical Inception-A/B/C modules under ``nn.scan`` (parameters stacked under
        ``inception_a`` ...); False gives one module each (``inception_a_0`` ...).
    """

    drop_rate: float = 0.2
    count_include_pad: bool = False
    scan_blocks: bool = False

    @nn.compact
    def __call__(self, images: Array, *, train: bool) -> ModelOutput:
        check_images(images, self.in_channels, "InceptionV4")
        kw = dict(count_include_pad=self.count_include_pad, dtype=self.dtype, param_dtype=self.param_dtype)
        x = images
        for name, spec in INCEPTION_V4_STEM:
            x = apply_layer(name, spec, x, train=train, **kw)
        for stage in INCEPTION_V4_BODY:
            x = run_stage(functools.partial(Mixed, stage.branches, **kw), x, stage.name, None, depth=stage.depth,
                          train=train, scan=self.scan_blocks)
        require_feature_map(x, "InceptionV4", "inception_c")
        logits = ClassifierHead(self.num_classes, self.drop_rate, dtype=self.dtype, param_dtype=self.param_dtype,
                                name="head")(x, train=train)
        return ModelOutput(logits=logits)


class InceptionResNetV2(layers.ClassifierModel):
    """Inception-ResNet-v2 (TF-slim / timm layout; see the module docstring).

    Attributes:
      residual_scales: the residual scaling of the 35x35, 17x17 and 8x8 blocks (Sec. 3.3).
      drop_path_rate: stochastic depth of the 40 residual branches, rising with depth by ``drop_path_rule`` (the
        paper and timm use none; ``"linspace"`` is timm's rule for its other models).
      count_include_pad: see the module docstring (TF-slim / timm: False).
      scan_blocks: run each stage's identical residual blocks under ``nn.scan`` (parameters stacked under
        ``inception_resnet_a`` ...); False gives one module each (``inception_resnet_a_0`` ...).
    """

    drop_rate: float = 0.2
    drop_path_rate: float = 0.0
    drop_path_rule: str = "linspace"
    residual_scales: tuple[float, float, float] = (0.17, 0.1, 0.2)
    count_include_pad: bool = False
    scan_blocks: bool = False

    @nn.compact
    def __call__(self, images: Array, *, train: bool) -> ModelOutput:
        check_images(images, self.in_channels, "InceptionResNetV2")
        kw = dict(count_include_pad=self.count_include_pad, dtype=self.dtype, param_dtype=self.param_dtype)
        x = images
        for name, spec in IR_V2_STEM:
            x = apply_layer(name, spec, x, train=train, **kw)
        stages = IR_V2_BODY + (IR_V2_LAST,)
        rates = drop_path_rates(self.drop_path_rate, sum(s.depth for s in stages if s.residual), self.drop_path_rule)
        scales = iter(self.residual_scales + (1.0,))
        for stage in stages:
            if stage.residual:
                make = functools.partial(InceptionResidual, stage.branches, next(scales),
                                         activate=stage is not IR_V2_LAST, **kw)
                stage_rates, rates = rates[: stage.depth], rates[stage.depth :]
            else:
                make, stage_rates = functools.partial(Mixed, stage.branches, **kw), None
            x = run_stage(make, x, stage.name, stage_rates, depth=stage.depth, train=train, scan=self.scan_blocks)
        x = ConvNormAct(1536, 1, norm_convention="inception", dtype=self.dtype, param_dtype=self.param_dtype,
                        name="conv2d_7b")(x, train=train)
        require_feature_map(x, "InceptionResNetV2", "conv2d_7b")
        logits = ClassifierHead(self.num_classes, self.drop_rate, dtype=self.dtype, param_dtype=self.param_dtype,
                                name="head")(x, train=train)
        return ModelOutput(logits=logits)


_V3_PAPER = "Szegedy et al. 2015, Rethinking the Inception Architecture for Computer Vision, arXiv:1512.00567"
_V4_PAPER = (
    "Szegedy et al. 2016, Inception-v4, Inception-ResNet and the Impact of Residual Connections on Learning, "
    "arXiv:1602.07261"
)
# Smallest inputs: the stems and reductions use unpadded 3x3 stride-2 convs (75 -> 37 -> 35 -> 17 -> 15 -> 7 -> 3
# -> 1 at the last grid); Inception v3's aux head needs the 17x17 map of a 299 input for its 5/3 pool + 5x5 conv.
_V3_INFO = dict(paper=_V3_PAPER, resolution=299, crop_fraction=0.875, family="inception")

register_model(
    "inception_v3",
    InceptionV3,
    ModelInfo(table="Table 1 (TF-slim / torchvision layout)", reference="inception_v3", min_resolution=75, **_V3_INFO),
    aux_logits=False,
)
register_model(
    "inception_v3_aux",
    InceptionV3,
    ModelInfo(table="Table 1 + auxiliary classifier (TF-slim / torchvision layout)",
              reference="inception_v3 (with auxiliary heads)", min_resolution=299, **_V3_INFO),
    aux_logits=True,
)
register_model(
    "inception_v4",
    InceptionV4,
    ModelInfo(paper=_V4_PAPER, table="Fig. 9 (Figs. 3-8, Table 1)", resolution=299, crop_fraction=0.875,
              family="inception", reference="inception_v4", min_resolution=75),
)
register_model(
    "inception_resnet_v2",
    InceptionResNetV2,
    ModelInfo(paper=_V4_PAPER, table="Fig. 15 / Figs. 16-19 (TF-slim / timm layout)", resolution=299,
              crop_fraction=0.8975, family="inception", reference="inception_resnet_v2", min_resolution=75),
)
