"""GoogLeNet (Inception v1): Szegedy et al. 2014, "Going Deeper with Convolutions", arXiv:1409.4842.

Table 1 gives the layout: a stem (conv 7x7/2, max-pool, conv 1x1 + 3x3, max-pool), nine Inception modules
(Fig. 2b: 1x1 | 1x1 -> 3x3 | 1x1 -> 5x5 | 3x3 max-pool -> 1x1) with 3x3/2 max-pools between stages 3, 4 and 5,
global average pooling, dropout 40 % and a linear classifier. Section 5 adds two auxiliary classifiers on the
outputs of inception (4a) and (4d): 5x5/3 average pool (4x4 from the 14x14 map), 1x1 conv with 128 filters + ReLU,
FC 1024 + ReLU, dropout 70 %, linear. They are used only in training (the paper weights their losses by 0.3).

Two layouts, selected by the ``layout`` field (``LAYOUTS``):

- ``"paper"``: Table 1 / Fig. 3 as written. No BatchNorm (convs have biases), a true 5x5 conv in the third branch,
  LocalRespNorm after the first max-pool and after the 3x3 stem conv, 3x3/2 max-pool before stage 5, and the
  Sec. 5 aux heads. 6,998,552 parameters, 13,378,280 with the aux heads (the ``computed`` rows of
  ``param_counts.csv``). For inputs other than 224 the 5x5/3 pool does not give 4x4; the pooled map is then
  average-resampled to 4x4 so the aux FC (and the parameter tree) does not depend on the input size.
- ``"torchvision"``: torchvision's ``googlenet``, needed to import its (TF-ported) weights: BatchNorm
  (eps 1e-3) after every bias-free conv, a 3x3 conv in the "5x5" branch (torchvision's "known bug"), no LRN,
  2x2/2 max-pool before stage 5 and aux heads that adaptive-average-pool to 4x4. 6,624,904 / 13,004,888 parameters.
  Its head dropout is 0.2 (the registered variants set it); torchvision's ``transform_input`` is preprocessing and
  is not part of the model.

All max-pools round up (Caffe / torchvision ``ceil_mode=True``). The aux FC flattens (H, W, C), torchvision
(C, H, W): weight import permutes ``fc1``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_jax.layers import (
    ClassifierHead,
    ClassifierModel,
    ConvNormAct,
    ModelOutput,
    Pool,
    adaptive_avg_pool,
    check_images,
)
from cnn_jax.models.alexnet import LRN_CONVENTIONS, LocalResponseNorm
from cnn_jax.registry import ModelInfo, register_model

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class GoogLeNetLayout:
    """What differs between the paper's network and torchvision's port.

    Attributes:
      norm: BatchNorm after every (bias-free) conv; False gives convs with biases and no normalisation.
      wide_kernel: kernel of the third ("5x5") branch.
      lrn: LocalRespNorm after the first max-pool and after the 3x3 stem conv (Caffe's constants, as in
        bvlc_googlenet: size 5, alpha 1e-4 divided by the size, beta 0.75, k 1).
      pool4_window: window of the stride-2 max-pool between stages 4 and 5.
      aux_pool: ``"paper"`` (5x5/3 average pool) or ``"adaptive"`` (adaptive average pool to 4x4).
    """

    norm: bool
    wide_kernel: int
    lrn: bool
    pool4_window: int
    aux_pool: str


LAYOUTS: dict[str, GoogLeNetLayout] = {
    "paper": GoogLeNetLayout(norm=False, wide_kernel=5, lrn=True, pool4_window=3, aux_pool="paper"),
    "torchvision": GoogLeNetLayout(norm=True, wide_kernel=3, lrn=False, pool4_window=2, aux_pool="adaptive"),
}


class InceptionSpec(NamedTuple):
    """One row of Table 1: filters of each branch of an Inception module."""

    name: str
    ch1x1: int
    ch3x3_reduce: int
    ch3x3: int
    ch5x5_reduce: int
    ch5x5: int
    pool_proj: int


# Table 1, stages 3, 4 and 5; a stride-2 max-pool precedes stages 4 and 5.
INCEPTION_STAGES: tuple[tuple[InceptionSpec, ...], ...] = (
    (
        InceptionSpec("inception3a", 64, 96, 128, 16, 32, 32),
        InceptionSpec("inception3b", 128, 128, 192, 32, 96, 64),
    ),
    (
        InceptionSpec("inception4a", 192, 96, 208, 16, 48, 64),
        InceptionSpec("inception4b", 160, 112, 224, 24, 64, 64),
        InceptionSpec("inception4c", 128, 128, 256, 24, 64, 64),
        InceptionSpec("inception4d", 112, 144, 288, 32, 64, 64),
        InceptionSpec("inception4e", 256, 160, 320, 32, 128, 128),
    ),
    (
        InceptionSpec("inception5a", 256, 160, 320, 32, 128, 128),
        InceptionSpec("inception5b", 384, 192, 384, 48, 128, 128),
    ),
)
# Sec. 5: auxiliary classifiers on top of these modules (torchvision's names aux1 / aux2).
AUX_HEADS: dict[str, str] = {"inception4a": "aux1", "inception4d": "aux2"}


def require_feature_map(x: Array, model: str, where: str) -> None:
    """Raises a ValueError when the input was too small to leave a non-empty feature map at ``where``.

    XLA accepts windows larger than their input and returns empty arrays, which would only show up later as NaNs.
    """
    if min(x.shape[1:3]) < 1:
        raise ValueError(f"{model}: the input is too small, the feature map at {where} is empty (shape {x.shape})")


class InceptionModule(nn.Module):
    """Fig. 2(b): four parallel branches concatenated on channels (1x1 | 3x3 | "5x5" | max-pool projection)."""

    spec: InceptionSpec
    wide_kernel: int = 5
    norm: bool = False
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array, *, train: bool) -> Array:
        s = self.spec
        conv = functools.partial(
            ConvNormAct, norm=self.norm, norm_convention="inception", dtype=self.dtype, param_dtype=self.param_dtype
        )
        branch1 = conv(s.ch1x1, 1, name="branch1x1")(x, train=train)
        branch2 = conv(s.ch3x3_reduce, 1, name="branch3x3_reduce")(x, train=train)
        branch2 = conv(s.ch3x3, 3, name="branch3x3")(branch2, train=train)
        branch3 = conv(s.ch5x5_reduce, 1, name="branch5x5_reduce")(x, train=train)
        branch3 = conv(s.ch5x5, self.wide_kernel, name="branch5x5")(branch3, train=train)
        branch4 = Pool("max", 3, 1, padding=1, name="branch_pool")(x)
        branch4 = conv(s.pool_proj, 1, name="branch_pool_proj")(branch4, train=train)
        return jnp.concatenate([branch1, branch2, branch3, branch4], axis=-1)


class AuxClassifier(nn.Module):
    """Sec. 5 auxiliary classifier: avg-pool to 4x4 -> 1x1 conv 128 + ReLU -> FC 1024 + ReLU -> dropout -> linear."""

    num_classes: int
    pool: str = "paper"
    norm: bool = False
    drop_rate: float = 0.7
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array, *, train: bool) -> Array:
        if self.pool == "paper":
            x = Pool("avg", 5, 3, name="pool")(x)
            require_feature_map(x, "GoogLeNet", "the auxiliary head's 5x5/3 average pool")
        elif self.pool != "adaptive":
            raise ValueError(f"unknown auxiliary pooling {self.pool!r}; expected 'paper' or 'adaptive'")
        x = adaptive_avg_pool(x, 4)  # the identity where the paper's pool already gave 4x4 (input 224)
        x = ConvNormAct(
            128, 1, norm=self.norm, norm_convention="inception", dtype=self.dtype, param_dtype=self.param_dtype,
            name="conv",
        )(x, train=train)
        x = x.reshape(x.shape[0], -1)
        x = nn.relu(nn.Dense(1024, dtype=self.dtype, param_dtype=self.param_dtype, name="fc1")(x))
        x = nn.Dropout(self.drop_rate, deterministic=not train)(x)
        return nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=self.param_dtype, name="fc2")(x)


class GoogLeNet(ClassifierModel):
    """GoogLeNet (Table 1) with optional Sec. 5 auxiliary classifiers, in the paper's or torchvision's layout.

    Attributes:
      layout: ``"paper"`` or ``"torchvision"`` (see ``LAYOUTS`` and the module docstring).
      aux_logits: build the two auxiliary classifiers; their logits come back as ``aux_logits["aux1"]`` (after 4a)
        and ``aux_logits["aux2"]`` (after 4d) in training only.
      drop_rate: dropout before the classifier (paper 0.4; torchvision 0.2).
      aux_drop_rate: dropout in the auxiliary heads (paper 0.7).
    """

    drop_rate: float = 0.4
    aux_drop_rate: float = 0.7
    aux_logits: bool = True
    layout: str = "paper"

    @nn.compact
    def __call__(self, images: Array, *, train: bool) -> ModelOutput:
        check_images(images, self.in_channels, "GoogLeNet")
        if self.layout not in LAYOUTS:
            raise ValueError(f"unknown GoogLeNet layout {self.layout!r}; expected one of {sorted(LAYOUTS)}")
        layout = LAYOUTS[self.layout]
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        conv = functools.partial(ConvNormAct, norm=layout.norm, norm_convention="inception", **kw)

        x = conv(64, 7, strides=2, name="conv1")(images, train=train)
        x = Pool("max", 3, 2, ceil_mode=True, name="maxpool1")(x)
        if layout.lrn:
            x = LocalResponseNorm(**LRN_CONVENTIONS["caffe"], name="norm1")(x)
        x = conv(64, 1, name="conv2")(x, train=train)
        x = conv(192, 3, name="conv3")(x, train=train)
        if layout.lrn:
            x = LocalResponseNorm(**LRN_CONVENTIONS["caffe"], name="norm2")(x)
        x = Pool("max", 3, 2, ceil_mode=True, name="maxpool2")(x)

        aux: dict[str, Array] = {}
        # Max-pools maxpool3 / maxpool4 (torchvision's names) precede stages 4 and 5.
        pool_windows = (None, 3, layout.pool4_window)
        for stage, (specs, window) in enumerate(zip(INCEPTION_STAGES, pool_windows, strict=True), start=3):
            if window is not None:
                x = Pool("max", window, 2, ceil_mode=True, name=f"maxpool{stage - 1}")(x)
            for spec in specs:
                x = InceptionModule(spec, layout.wide_kernel, layout.norm, name=spec.name, **kw)(x, train=train)
                head = AUX_HEADS.get(spec.name)
                # Aux heads also run at init so their parameters exist after an eval-mode init.
                if head and self.aux_logits and (train or self.is_initializing()):
                    logits = AuxClassifier(
                        self.num_classes, layout.aux_pool, layout.norm, self.aux_drop_rate, name=head, **kw
                    )(x, train=train)
                    if train:
                        aux[head] = logits
        require_feature_map(x, "GoogLeNet", "inception5b")
        logits = ClassifierHead(self.num_classes, self.drop_rate, name="head", **kw)(x, train=train)
        return ModelOutput(logits=logits, aux_logits=aux)


_INFO = dict(
    paper="Szegedy et al. 2014, Going Deeper with Convolutions, arXiv:1409.4842",
    resolution=224,
    crop_fraction=0.875,
    family="googlenet",
)
# Smallest inputs: the ceil-mode pools never empty a map (15 -> 8 -> 4 -> 2 -> 1 -> 1), except the paper's 3x3
# pool before stage 5, which needs a 2x2 map (input >= 31), and the paper aux heads' 5x5/3 pool, which needs 5x5
# at inception 4a (input >= 79).
register_model(
    "googlenet",
    GoogLeNet,
    ModelInfo(table="Table 1, torchvision layout (BN; 3x3 in the 5x5 branch)", reference="googlenet",
              min_resolution=15, **_INFO),
    layout="torchvision",
    aux_logits=False,
    drop_rate=0.2,
)
register_model(
    "googlenet_aux",
    GoogLeNet,
    ModelInfo(table="Table 1 + Sec. 5 auxiliary classifiers, torchvision layout",
              reference="googlenet (with auxiliary heads)", min_resolution=15, **_INFO),
    layout="torchvision",
    aux_logits=True,
    drop_rate=0.2,
)
register_model(
    "googlenet_paper",
    GoogLeNet,
    ModelInfo(table="Table 1 / Fig. 3 (no BN, 5x5 branches, LRN)",
              reference="googlenet (paper layout: 5x5 branches, no BN)", min_resolution=31, **_INFO),
    layout="paper",
    aux_logits=False,
)
register_model(
    "googlenet_paper_aux",
    GoogLeNet,
    ModelInfo(table="Table 1 / Fig. 3 + Sec. 5 auxiliary classifiers (no BN, 5x5 branches, LRN)",
              reference="googlenet (paper layout, with auxiliary heads)", min_resolution=79, **_INFO),
    layout="paper",
    aux_logits=True,
)
