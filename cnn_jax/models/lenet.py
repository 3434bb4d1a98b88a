"""LeNet-5: LeCun, Bottou, Bengio & Haffner 1998, "Gradient-based learning applied to document recognition",
Proc. IEEE 86(11). Layout of Sec. II.B / Fig. 2, C3 connections of Table I, squashing function of Appendix A.

One class, two registrations (32x32 grayscale input, ``in_channels=1``):

``lenet5_paper`` -- the paper's network (parameters for 10 classes):

======  =======================================================  =========
layer   what                                                     params
======  =======================================================  =========
C1      6 maps, 5x5 conv                                         156
S2      2x2 subsampling: sum x trainable coefficient + bias/map  12
C3      16 maps, 5x5 conv over Table I's subsets of S2 maps      1,516
S4      as S2 on 16 maps                                         32
C5      120 maps, 5x5 conv (1x1 output at 32x32 input)           48,120
F6      84 units, dense                                          10,164
output  Euclidean RBF: 84-dim centre per class, no bias          840
======  =======================================================  =========

C1..F6 sum to the paper's "60,000 trainable parameters"; the total here is **60,840** because the RBF centres
are parameters too. The paper fixed them by hand to +-1 codes (stylised 7x12 bitmaps of the digits; it notes
random +-1 codes would do): here they start as random +-1 codes and stay trainable (freeze them with an optimizer
mask to match the paper exactly). Every layer before the output is followed by f(a) = 1.7159 tanh(2a/3), S2/S4
included. The RBF output y_i = sum_j (x_j - w_ij)^2 is a penalty; the logits are -y, so softmax cross-entropy on them
is the paper's MAP criterion (Eq. 9) without its constant "rubbish class" term. C3's partial table is built as three
grouped convolutions (the six 3-input maps, the nine 4-input maps, the 6-input map) over gathered S2 maps, so only
connected weights exist: 6 x 76 + 9 x 101 + 151 = 1,516.

``lenet5`` -- the modern form: ReLU, 2x2 max-pooling, full C3 (2,416), dense output (850): **61,706** parameters
for 10 classes, the models.md "LeNet-5 modern" computed row (counted there at 28x28 with 2 pixels of conv1 padding,
which has the same layer sizes as 32x32 without: ``conv1_padding=2`` runs it on 28x28 MNIST-size images).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from cnn_jax.layers import Activation, Array, ClassifierModel, Conv, Dtype, ModelOutput, Pool, check_images
from cnn_jax.registry import ModelInfo, register_model

PAPER = "LeCun, Bottou, Bengio & Haffner 1998, Gradient-based learning applied to document recognition, Proc. IEEE"

# Table I: the S2 maps each C3 map reads (C3 maps 0-5 take 3 neighbouring maps, 6-11 four neighbouring maps,
# 12-14 four non-neighbouring maps, 15 all six).
LECUN_C3_TABLE: tuple[tuple[int, ...], ...] = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (4, 5, 0), (5, 0, 1),
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (3, 4, 5, 0), (4, 5, 0, 1), (5, 0, 1, 2),
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
)  # fmt: skip


def scaled_tanh(x: Array) -> Array:
    """LeCun's squashing function f(a) = A tanh(S a), A = 1.7159, S = 2/3 (Appendix A): f(+-1) = +-1."""
    return 1.7159 * jnp.tanh(x * (2.0 / 3.0))


ACTIVATIONS: dict[str, Activation] = {"relu": nn.relu, "scaled_tanh": scaled_tanh}


def _random_signs(key: jax.Array, shape: tuple[int, ...], dtype: Dtype = jnp.float32) -> Array:
    return jnp.where(jax.random.bernoulli(key, 0.5, shape), 1.0, -1.0).astype(dtype)


class Subsampling(nn.Module):
    """S2/S4: each unit adds a 2x2 window of its map, multiplies by the map's trainable coefficient and adds the
    map's trainable bias (2 parameters per map). Built as a 2x2 average pool and a depthwise 1x1 conv with bias;
    the pool's 1/4 is absorbed into the coefficient."""

    dtype: Dtype = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        x = Pool("avg", 2, name="pool")(x)
        channels = x.shape[-1]
        return Conv(
            channels,
            (1, 1),
            feature_group_count=channels,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="scale",
        )(x)


class PartialConv(nn.Module):
    """A VALID convolution in which output map ``i`` sees only the input maps ``table[i]``.

    Output maps with the same number of inputs form one grouped convolution over their gathered inputs, so the
    parameters are exactly the connected weights plus one bias per map.
    """

    table: tuple[tuple[int, ...], ...]
    kernel_size: int = 5
    dtype: Dtype = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        outputs, order = [], []
        for fan_in in sorted({len(inputs) for inputs in self.table}):
            maps = [i for i, inputs in enumerate(self.table) if len(inputs) == fan_in]
            gathered = jnp.take(x, np.array([c for i in maps for c in self.table[i]]), axis=-1)
            outputs.append(
                Conv(
                    len(maps),
                    (self.kernel_size, self.kernel_size),
                    padding="VALID",
                    feature_group_count=len(maps),
                    dtype=self.dtype,
                    param_dtype=self.param_dtype,
                    name=f"from{fan_in}",
                )(gathered)
            )
            order += maps
        y = jnp.concatenate(outputs, axis=-1)
        if order != sorted(order):  # back to table order
            y = jnp.take(y, np.argsort(order), axis=-1)
        return y


class EuclideanRBF(nn.Module):
    """LeNet-5's output layer: y_i = ||x - w_i||^2 for one centre w_i per class; returns the logits -y.

    ||x - w||^2 = ||x||^2 - 2 x.w + ||w||^2: the x.w products are a bias-free dense layer holding the centres.
    """

    num_classes: int
    dtype: Dtype = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        dense = nn.Dense(
            self.num_classes,
            use_bias=False,
            kernel_init=_random_signs,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="centres",
        )
        dots = dense(x)
        centres = dense.variables["params"]["kernel"].astype(dots.dtype)
        distances = jnp.sum(x * x, axis=-1, keepdims=True) - 2.0 * dots + jnp.sum(centres * centres, axis=0)
        return -distances


class LeNet5(ClassifierModel):
    """LeNet-5 (see the module docstring for the two forms and their parameter counts).

    Attributes:
      activation: ``"scaled_tanh"`` (paper) or ``"relu"``.
      subsampling: ``"trainable"`` (paper S2/S4, followed by the activation) or ``"max"`` (2x2 max-pool).
      c3_table: Table I's partial C3 connections (``LECUN_C3_TABLE``), or None for a full 6->16 convolution.
      output: ``"rbf"`` (paper's Euclidean RBF units) or ``"dense"``.
      conv1_padding: zero padding of C1; 2 runs the 32x32 layout on 28x28 images.
      drop_rate: dropout before the output layer (the paper has none).
    """

    in_channels: int = 1
    activation: str = "relu"
    subsampling: str = "max"
    c3_table: tuple[tuple[int, ...], ...] | None = None
    output: str = "dense"
    conv1_padding: int = 0

    def _layer_options(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "param_dtype": self.param_dtype}

    def _subsample(self, x: Array, act: Callable[[Array], Array], name: str) -> Array:
        if self.subsampling == "trainable":
            return act(Subsampling(**self._layer_options(), name=name)(x))
        if self.subsampling == "max":
            return Pool("max", 2, name=name)(x)
        raise ValueError(f"unknown LeNet-5 subsampling {self.subsampling!r}; expected 'trainable' or 'max'")

    @nn.compact
    def __call__(self, images: Array, *, train: bool) -> ModelOutput:
        check_images(images, self.in_channels, "LeNet5")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown LeNet-5 activation {self.activation!r}; expected one of {sorted(ACTIVATIONS)}")
        act = ACTIVATIONS[self.activation]
        opts = self._layer_options()
        pad = self.conv1_padding
        x = act(Conv(6, (5, 5), padding=((pad, pad), (pad, pad)), **opts, name="c1")(images))
        x = self._subsample(x, act, "s2")
        if self.c3_table is None:
            x = Conv(16, (5, 5), padding="VALID", **opts, name="c3")(x)
        else:
            x = PartialConv(self.c3_table, **opts, name="c3")(x)
        x = self._subsample(act(x), act, "s4")
        if x.shape[1:3] != (5, 5):
            raise ValueError(
                f"LeNet5 needs 32x32 images (28x28 with conv1_padding=2): C5 expects 5x5 maps, got "
                f"{x.shape[1]}x{x.shape[2]} from {images.shape[1]}x{images.shape[2]} images"
            )
        x = act(Conv(120, (5, 5), padding="VALID", **opts, name="c5")(x))
        x = x.reshape(x.shape[0], -1)
        x = act(nn.Dense(84, **opts, name="f6")(x))
        x = nn.Dropout(self.drop_rate, deterministic=not train)(x)
        if self.output == "rbf":
            return ModelOutput(logits=EuclideanRBF(self.num_classes, **opts, name="output")(x))
        if self.output == "dense":
            return ModelOutput(logits=nn.Dense(self.num_classes, **opts, name="output")(x))
        raise ValueError(f"unknown LeNet-5 output {self.output!r}; expected 'rbf' or 'dense'")


_INFO = {
    "paper": PAPER,
    "resolution": 32,
    "crop_fraction": 1.0,
    "in_channels": 1,
    "family": "lenet",
    # The lenet5 reference row is the paper's rounded "60,000"; tests/test_plain.py checks the exact counts.
    "reference": None,
    "reference_classes": 10,
    "min_resolution": 32,
}

register_model(
    "lenet5",
    LeNet5,
    ModelInfo(table="Sec. II.B / Fig. 2 layout; modern ReLU, max-pool, full C3, dense output", **_INFO),
)
register_model(
    "lenet5_paper",
    LeNet5,
    ModelInfo(table="Sec. II.B / Fig. 2, Table I (C3 connections), Appendix A (scaled tanh)", **_INFO),
    activation="scaled_tanh",
    subsampling="trainable",
    c3_table=LECUN_C3_TABLE,
    output="rbf",
)
