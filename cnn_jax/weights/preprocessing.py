"""The input convention that imported weights were trained with, kept with them as data.

Every convention here is one per-channel affine map of RGB pixels ``p`` in 0..255: ``(p / 255 - mean) / std``, the
same arithmetic as the data pipeline's normalisation (``cnn_jax.data.transforms.normalize``), so a weights directory's
convention can replace a dataset's mean/std without touching anything else. Conventions that are not of that form
are reduced to it at import time, exactly:

- torchvision GoogLeNet / Inception v3 checkpoints are used with ``transform_input=True``, which re-normalises the
  ImageNet-normalised input to ``(p / 255 - 0.5) / 0.5``: that is their convention.
- Keras ``preprocess_input`` "caffe" mode (ResNet, VGG) feeds BGR pixels minus the BGR mean, unscaled: the importer
  reverses the input channels of the first convolution (a permutation, exact), which leaves
  ``p - mean_rgb``, i.e. ``mean = mean_rgb / 255``, ``std = 1 / 255``.
- Keras EfficientNet's in-model Rescaling / Normalization layers compose to one affine map per channel.

Each mapping states the convention of its source's default published weights (timm: the default tag's
``pretrained_cfg``); weights trained otherwise are imported with ``--mean/--std``. The models return logits: Keras
applications end in a softmax, which the importer leaves out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class InputConvention:
    """``(p / 255 - mean) / std`` per RGB channel of uint8 pixels ``p``; ``name`` says where it comes from."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    name: str

    def __post_init__(self):
        if len(self.mean) != len(self.std) or not self.mean or min(self.std) <= 0:
            raise ValueError(f"input convention {self.name!r}: mean {self.mean} and std {self.std} must have one "
                             "entry per channel, std > 0")

    def to_meta(self) -> dict[str, Any]:
        return {"mean": list(self.mean), "std": list(self.std), "channel_order": "RGB", "value_range": [0, 255],
                "formula": "(pixels / 255 - mean) / std", "name": self.name, "outputs": "logits"}

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> InputConvention:
        return cls(tuple(float(v) for v in meta["mean"]), tuple(float(v) for v in meta["std"]), meta.get("name", ""))

    def describe(self) -> str:
        def fmt(values):
            return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"

        return f"(RGB uint8 / 255 - {fmt(self.mean)}) / {fmt(self.std)} [{self.name}]"

    def preprocess(self, images: Any) -> np.ndarray:
        """uint8 (or float) ``(..., H, W, C)`` RGB images in 0..255 -> the float32 input the weights expect."""
        images = np.asarray(images)
        if images.shape[-1] != len(self.mean):
            raise ValueError(f"images of shape {images.shape}: expected {len(self.mean)} channels last (RGB, 0..255) "
                             f"for the input convention {self.name!r}")
        mean, std = np.asarray(self.mean, np.float32), np.asarray(self.std, np.float32)
        return ((images.astype(np.float32) / np.float32(255.0) - mean) / std).astype(np.float32)

    def renormalizer(self, mean: Sequence[float], std: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
        """``(scale, shift)`` with ``x * scale + shift`` taking images normalised with ``mean``/``std`` to this
        convention (per channel; exact wherever the image was not padded after normalising)."""
        mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
        own_mean, own_std = np.asarray(self.mean, np.float32), np.asarray(self.std, np.float32)
        return std / own_std, (mean - own_mean) / own_std


IMAGENET = InputConvention(IMAGENET_MEAN, IMAGENET_STD, "ImageNet mean/std (torchvision, timm default)")
INCEPTION = InputConvention((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "Inception: pixels scaled to [-1, 1]")
TORCHVISION_TRANSFORM_INPUT = InputConvention(
    (0.5, 0.5, 0.5), (0.5, 0.5, 0.5),
    "torchvision transform_input=True (as its pretrained GoogLeNet/Inception v3 are used): pixels scaled to [-1, 1]")
KERAS_TF = InputConvention((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "Keras preprocess_input mode 'tf': pixels / 127.5 - 1")
KERAS_TORCH = InputConvention(IMAGENET_MEAN, IMAGENET_STD, "Keras preprocess_input mode 'torch': ImageNet mean/std")
_CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
KERAS_CAFFE = InputConvention(
    tuple(v / 255.0 for v in reversed(_CAFFE_BGR_MEAN)), (1 / 255.0,) * 3,
    "Keras preprocess_input mode 'caffe': BGR minus the BGR mean, unscaled (BGR folded into the first conv)")


def from_keras_layers(layers: Sequence[dict[str, Any]], channels: int = 3) -> InputConvention:
    """The composition of Keras Rescaling / Normalization layers (as ``sources.read_keras`` records them), applied
    to pixels in 0..255, as one convention."""
    scale, shift = np.ones(channels, np.float64), np.zeros(channels, np.float64)  # x = scale * p + shift
    for layer in layers:
        if layer["class"] == "Rescaling":
            a = np.broadcast_to(np.asarray(layer.get("scale", 1.0), np.float64), (channels,))
            b = np.broadcast_to(np.asarray(layer.get("offset", 0.0), np.float64), (channels,))
            scale, shift = scale * a, shift * a + b
        elif layer["class"] == "Normalization":
            mean = np.broadcast_to(np.asarray(layer["mean"], np.float64).reshape(-1), (channels,))
            var = np.broadcast_to(np.asarray(layer["variance"], np.float64).reshape(-1), (channels,))
            root = np.maximum(np.sqrt(var), 1e-7)  # as Keras' Normalization divides
            scale, shift = scale / root, (shift - mean) / root
        else:
            raise ValueError(f"Keras preprocessing layer {layer.get('layer')} of class {layer['class']}: expected "
                             "Rescaling or Normalization")
    std = 1.0 / (255.0 * scale)
    mean = -shift * std
    names = "+".join(layer["class"] for layer in layers)
    return InputConvention(tuple(float(v) for v in mean), tuple(float(v) for v in std),
                           f"Keras in-model {names} layers")
