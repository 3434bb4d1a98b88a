"""The model contract: what every model returns, the fields every model has, the input check."""

from __future__ import annotations

import flax.linen as nn
import flax.struct
import jax.numpy as jnp

from cnn_jax.layers.types import Array, Dtype


@flax.struct.dataclass
class ModelOutput:
    """What every model returns.

    Attributes:
      logits: ``(batch, num_classes)`` classifier outputs.
      aux_logits: auxiliary-classifier logits by head name (e.g. ``{"aux1": ..., "aux2": ...}`` for GoogLeNet);
        present only in training mode, empty otherwise.
    """

    logits: Array
    aux_logits: dict[str, Array] = flax.struct.field(default_factory=dict)


class ClassifierModel(nn.Module):
    """The fields every registered model has (STYLE.md "one model contract"; ``registry.REQUIRED_FIELDS``): the
    model classes derive from this and override a default where their paper's differs (``drop_rate``)."""

    num_classes: int = 1000
    in_channels: int = 3
    dtype: Dtype = None
    param_dtype: Dtype = jnp.float32
    drop_rate: float = 0.0


def check_images(images: Array, in_channels: int, model: str) -> None:
    """Raises a ValueError unless ``images`` is a non-empty NHWC batch with ``in_channels`` channels."""
    shape = tuple(images.shape)
    if len(shape) != 4 or shape[-1] != in_channels:
        raise ValueError(
            f"{model} expects images of shape (batch, height, width, {in_channels}) (NHWC); got shape {shape}"
        )
    if shape[0] == 0:
        raise ValueError(f"{model} got an empty batch (images of shape {shape}); expected at least one image")
