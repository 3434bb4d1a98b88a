"""BatchNorm with named momentum/epsilon conventions."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from cnn_jax.layers.types import Dtype

# Flax's momentum is the decay of the running average: PyTorch's momentum=0.1 is 0.9 here.
BN_CONVENTIONS: dict[str, tuple[float, float]] = {
    "pytorch": (0.9, 1e-5),  # torchvision/timm (PyTorch momentum 0.1, eps 1e-5)
    "tf": (0.99, 1e-3),  # TensorFlow / Keras reference models (EfficientNet, MobileNet v3, MnasNet)
    # torchvision GoogLeNet/Inception-v3 and timm Inception-v4/Inception-ResNet-v2: PyTorch momentum 0.1 with the
    # eps 1e-3 of the TF checkpoints they were ported from.
    "inception": (0.9, 1e-3),
}


def bn_convention(convention: str) -> tuple[float, float]:
    """``(momentum, epsilon)`` of a named BatchNorm convention (``BN_CONVENTIONS``)."""
    if convention not in BN_CONVENTIONS:
        raise ValueError(f"unknown BatchNorm convention {convention!r}; expected one of {sorted(BN_CONVENTIONS)}")
    return BN_CONVENTIONS[convention]


def batch_norm(
    convention: str = "pytorch",
    *,
    train: bool,
    dtype: Dtype = None,
    param_dtype: Dtype = jnp.float32,
    zero_init: bool = False,
    name: str | None = None,
) -> nn.BatchNorm:
    """A BatchNorm with the named momentum/epsilon convention; ``zero_init`` starts gamma at zero."""
    momentum, epsilon = bn_convention(convention)
    return nn.BatchNorm(
        use_running_average=not train,
        momentum=momentum,
        epsilon=epsilon,
        dtype=dtype,
        param_dtype=param_dtype,
        scale_init=nn.initializers.zeros if zero_init else nn.initializers.ones,
        name=name,
    )
