"""Host-side preprocessing ops (numpy + PIL; no JAX, no TensorFlow), composed from short spec strings.

A training spec is a comma-separated list of named ops with optional arguments, applied in order to one uint8
HxWxC image (C = 1 or 3)::

    random_resized_crop,flip,randaugment(2,9)
    random_resized_crop(scale=0.08),flip,color_jitter(0.4,0.4,0.4),lighting(0.1)
    resize,flip
    pad_crop(4),flip
    autoaugment,random_erasing(0.25)
    none

Ops work in one of two domains: uint8 images (PIL; crops, resizes, flips, colour and AutoAugment/RandAugment ops)
or normalised float32 (``(x / 255 - mean) / std``; zero padding, random erasing, lighting). The image is normalised
once, at the first op that needs it or at the end; a uint8 op after a float op is an error.

Two ways to bring an image to ``image_size``, chosen by the spec:
- resampling: ``resize`` (the whole image to ``image_size`` x ``image_size`` with the configured interpolation;
  ``resize(interpolation='nearest')`` picks another) or ``random_resized_crop``. A 28x28 Fashion-MNIST image at
  ``image_size=37`` then shows the same garment with more pixels: what EfficientNet's resolution axis scales.
- padding: after the last op the image is always centre zero-padded (zeros in the normalised domain, i.e. the
  dataset mean) or centre cropped to ``image_size``. Spec ``none`` is this alone, so ``none`` on a 28x28 image at
  ``image_size=32`` adds a 2-pixel empty border (LeNet-5's 32x32 input); ``pad_crop(4)`` pads this way before its
  random crop.

Every random draw comes from the ``np.random.Generator`` passed per call, so one seed gives one output.

Evaluation specs: ``resize_center_crop`` (resize the shorter side to ``round(image_size / crop_fraction)``, centre
crop ``image_size``), ``resize`` (the whole image to ``image_size`` x ``image_size``, as the training op) and
``none`` (centre zero-pad / crop only). Batch specs (mixup / cutmix) act on normalised batches and produce soft
targets.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

__all__ = [
    "make_train_transform", "make_eval_transform", "make_batch_transform", "open_image", "TRAIN_OPS", "EVAL_OPS",
    "BATCH_OPS", "IMAGENET_PCA_EIGVAL", "IMAGENET_PCA_EIGVEC", "AUTOAUGMENT_IMAGENET_POLICY", "RANDAUGMENT_OPS",
]

ImageLike = np.ndarray | Image.Image
TrainTransform = Callable[[ImageLike, np.random.Generator], np.ndarray]
EvalTransform = Callable[[ImageLike], np.ndarray]
BatchTransform = Callable[[np.ndarray, np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]]

_INTERPOLATIONS = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
                   "nearest": Image.Resampling.NEAREST, "lanczos": Image.Resampling.LANCZOS}

# PCA of ImageNet RGB pixel values in [0, 1] (AlexNet's lighting noise, Krizhevsky et al. 2012 Sec. 4.1, publishes
# the method but not the numbers). These are the values of fb.resnet.torch (datasets/imagenet.lua), the ones the
# ResNet-era recipes use; the columns of the matrix are the eigenvectors, in decreasing eigenvalue order.
IMAGENET_PCA_EIGVAL = np.array([0.2175, 0.0188, 0.0045])
IMAGENET_PCA_EIGVEC = np.array([[-0.5675, 0.7192, 0.4009],
                                [-0.5808, -0.0045, -0.8140],
                                [-0.5836, -0.6948, 0.4203]])

# AutoAugment's ImageNet policy (Cubuk et al. 2019, appendix Table 9): 25 sub-policies of two
# (op, probability, magnitude) steps; one sub-policy is drawn uniformly per image. Magnitudes are the paper's
# 10 uniformly spaced levels 0..9 over each op's range (see ``_op_argument``).
AUTOAUGMENT_IMAGENET_POLICY: tuple[tuple[tuple[str, float, int], tuple[str, float, int]], ...] = (
    (("posterize", 0.4, 8), ("rotate", 0.6, 9)),
    (("solarize", 0.6, 5), ("auto_contrast", 0.6, 5)),
    (("equalize", 0.8, 8), ("equalize", 0.6, 3)),
    (("posterize", 0.6, 7), ("posterize", 0.6, 6)),
    (("equalize", 0.4, 7), ("solarize", 0.2, 4)),
    (("equalize", 0.4, 4), ("rotate", 0.8, 8)),
    (("solarize", 0.6, 3), ("equalize", 0.6, 7)),
    (("posterize", 0.8, 5), ("equalize", 1.0, 2)),
    (("rotate", 0.2, 3), ("solarize", 0.6, 8)),
    (("equalize", 0.6, 8), ("posterize", 0.4, 6)),
    (("rotate", 0.8, 8), ("color", 0.4, 0)),
    (("rotate", 0.4, 9), ("equalize", 0.6, 2)),
    (("equalize", 0.0, 7), ("equalize", 0.8, 8)),
    (("invert", 0.6, 4), ("equalize", 1.0, 8)),
    (("color", 0.6, 4), ("contrast", 1.0, 8)),
    (("rotate", 0.8, 8), ("color", 1.0, 2)),
    (("color", 0.8, 8), ("solarize", 0.8, 7)),
    (("sharpness", 0.4, 7), ("invert", 0.6, 8)),
    (("shear_x", 0.6, 5), ("equalize", 1.0, 9)),
    (("color", 0.4, 0), ("equalize", 0.6, 3)),
    (("equalize", 0.4, 7), ("solarize", 0.2, 4)),
    (("solarize", 0.6, 5), ("auto_contrast", 0.6, 5)),
    (("invert", 0.6, 4), ("equalize", 1.0, 8)),
    (("color", 0.6, 4), ("contrast", 1.0, 8)),
    (("equalize", 0.8, 8), ("equalize", 0.6, 3)),
)

# RandAugment's op list as used by EfficientNet (Cubuk et al. 2020; TF EfficientNet's ``distort_image_with_
# randaugment``): each of N layers applies one op drawn uniformly, at magnitude M on a 0..10 scale.
RANDAUGMENT_OPS = ("auto_contrast", "equalize", "invert", "rotate", "posterize", "solarize", "color", "contrast",
                   "brightness", "sharpness", "shear_x", "shear_y", "translate_x", "translate_y", "cutout",
                   "solarize_add")

# Geometric ops fill uncovered pixels with mid-grey, as the TF AutoAugment/RandAugment code does.
_FILL = 128


# --------------------------------------------------------------------------------------------------------------
# Image <-> array helpers.


def open_image(data: bytes) -> Image.Image:
    """A lazily decoded PIL image from encoded bytes (JPEG/PNG): pass it to a train transform so that
    ``random_resized_crop(draft=True)`` can decode a JPEG at reduced scale (see :func:`random_resized_crop_box`)."""
    return Image.open(io.BytesIO(data))


def _to_pil(image: ImageLike, channels: int) -> Image.Image:
    if isinstance(image, Image.Image):
        mode = "L" if channels == 1 else "RGB"
        return image if image.mode == mode else image.convert(mode)
    _check_array(image, channels)
    return Image.fromarray(image[..., 0], "L") if channels == 1 else Image.fromarray(image, "RGB")


def _to_array(image: ImageLike) -> np.ndarray:
    if isinstance(image, Image.Image):
        array = np.asarray(image)
        return array[..., None] if array.ndim == 2 else array
    return image


def _check_array(image: np.ndarray, channels: int) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != channels:
        got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"expected one uint8 HxWx{channels} image (channels = len(mean)), got {got}")


def normalize(image: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """uint8 HxWxC -> float32 ``(x / 255 - mean) / std`` (the trainer's original arithmetic, bit for bit), in place
    on one fresh buffer rather than three temporaries."""
    out = image.astype(np.float32)
    out /= 255.0
    out -= mean
    out /= std
    return out


def center_pad_or_crop(image: np.ndarray, size: int) -> np.ndarray:
    """Centre crop or zero pad each spatial side to ``size`` (padding puts ``pad // 2`` before, the rest after)."""
    for axis in (0, 1):
        extent = image.shape[axis]
        if extent > size:
            start = (extent - size) // 2
            image = image[start : start + size] if axis == 0 else image[:, start : start + size]
        elif extent < size:
            pad = size - extent
            widths = [(0, 0)] * image.ndim
            widths[axis] = (pad // 2, pad - pad // 2)
            image = np.pad(image, widths)
    return image


# --------------------------------------------------------------------------------------------------------------
# The ops themselves: small functions of explicit arguments, tested one by one.


def random_resized_crop_box(height: int, width: int, rng: np.random.Generator, *, scale: tuple[float, float],
                            ratio: tuple[float, float], attempts: int = 10) -> tuple[int, int, int, int]:
    """``(top, left, crop_height, crop_width)`` of an Inception-style random crop (Szegedy et al. 2015).

    The crop covers a fraction of the image area drawn uniformly from ``scale`` and has an aspect ratio
    (width / height) drawn log-uniformly from ``ratio``; after ``attempts`` draws that do not fit, it falls back to
    the largest centred crop whose aspect ratio lies in ``ratio`` (the whole image when its own ratio does).
    """
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(attempts):
        target_area = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = round(math.sqrt(target_area * aspect))
        h = round(math.sqrt(target_area / aspect))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    image_ratio = width / height
    if image_ratio < ratio[0]:
        w, h = width, min(height, round(width / ratio[0]))
    elif image_ratio > ratio[1]:
        h, w = height, min(width, round(height * ratio[1]))
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


def resized_crop(image: Image.Image, box: tuple[int, int, int, int], size: int, interpolation: str,
                 draft: bool = False) -> Image.Image:
    """Crop ``box`` = (top, left, h, w) of ``image`` and resize it to ``size`` x ``size``.

    With ``draft=True`` and a not-yet-decoded JPEG, the decoder scales the image down by 2, 4 or 8 in the DCT
    (PIL ``Image.draft``), by the largest factor that still leaves the crop at least ``size`` pixels on each side;
    the crop box is mapped to the reduced image, so the crop covers the same region of the photograph (same crop
    semantics). Only the resampling filter differs: DCT downscaling followed by a shorter resize, instead of one
    resize from full resolution.
    """
    top, left, h, w = box
    coords = (left, top, left + w, top + h)
    # draft() is a no-op (returns None) once the image is decoded.
    if draft and getattr(image, "format", None) == "JPEG":
        factor = 1
        for f in (8, 4, 2):
            if min(h, w) >= f * size:
                factor = f
                break
        if factor > 1:
            width, height = image.size
            result = image.draft(image.mode, (width // factor, height // factor))
            if result is not None:
                scale = width / result[1][2]
                coords = tuple(c / scale for c in coords)
    resample = _INTERPOLATIONS[interpolation]
    return image.resize((size, size), resample, box=coords)


def hflip(image: ImageLike) -> ImageLike:
    """Exact left-right mirror of a PIL image or an HxWxC array."""
    if isinstance(image, Image.Image):
        return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return image[:, ::-1]


def pad_crop(image: np.ndarray, pad: int, rng: np.random.Generator) -> np.ndarray:
    """CIFAR augmentation (He et al. 2015 Sec. 4.2): zero pad ``pad`` pixels per side, random crop of the old size.

    Draws ``rng.integers(0, 2 * pad + 1, 2)`` (row, column offsets), as ``pipeline.preprocess`` does per image.
    """
    height, width = image.shape[:2]
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)))
    dy, dx = rng.integers(0, 2 * pad + 1, 2)
    return padded[dy : dy + height, dx : dx + width]


def lighting_shift(alphastd: float, rng: np.random.Generator) -> np.ndarray:
    """AlexNet PCA lighting noise (Krizhevsky et al. 2012 Sec. 4.1): the RGB shift ``sum_i alpha_i lambda_i p_i``
    with ``alpha_i ~ N(0, alphastd)``, in units of [0, 1] pixel values (ImageNet eigen-pairs above)."""
    alpha = rng.normal(0.0, alphastd, 3)
    return IMAGENET_PCA_EIGVEC @ (alpha * IMAGENET_PCA_EIGVAL)


def color_jitter(image: Image.Image, rng: np.random.Generator, brightness: float, contrast: float,
                 saturation: float) -> Image.Image:
    """Brightness, contrast and saturation scaled by factors uniform in ``[max(0, 1 - s), 1 + s]``, in random
    order (the ColorJitter of fb.resnet.torch / torchvision; a strength of 0 skips that adjustment)."""
    adjustments = [(ImageEnhance.Brightness, brightness), (ImageEnhance.Contrast, contrast),
                   (ImageEnhance.Color, saturation)]
    for index in rng.permutation(3):
        enhancer, strength = adjustments[index]
        if strength > 0:
            image = enhancer(image).enhance(rng.uniform(max(0.0, 1.0 - strength), 1.0 + strength))
    return image


def random_erasing(image: np.ndarray, rng: np.random.Generator, *, p: float, area: tuple[float, float],
                   min_aspect: float, attempts: int = 10) -> np.ndarray:
    """Random erasing (Zhong et al. 2020, Alg. 1): with probability ``p``, a rectangle of area fraction in ``area``
    and aspect ratio in ``[min_aspect, 1 / min_aspect]`` (log-uniform) is filled with N(0, 1) noise per pixel,
    i.e. random pixel values in the normalised domain. ``attempts`` draws that do not fit leave the image as is."""
    if rng.random() >= p:
        return image
    height, width = image.shape[:2]
    for _ in range(attempts):
        target = height * width * rng.uniform(*area)
        aspect = math.exp(rng.uniform(math.log(min_aspect), -math.log(min_aspect)))
        h = round(math.sqrt(target * aspect))
        w = round(math.sqrt(target / aspect))
        if 0 < h < height and 0 < w < width:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            image = image.copy()
            image[top : top + h, left : left + w] = rng.standard_normal((h, w, image.shape[2])).astype(image.dtype)
            return image
    return image


# AutoAugment / RandAugment image ops on PIL images: op(image, argument, rng) with the argument in the op's units.

def _affine(image: Image.Image, matrix: tuple[float, ...]) -> Image.Image:
    # PIL maps output (x, y) to input (a x + b y + c, d x + e y + f).
    fill = _FILL if image.mode == "L" else (_FILL,) * 3
    return image.transform(image.size, Image.Transform.AFFINE, matrix, Image.Resampling.NEAREST, fillcolor=fill)


def _cutout(image: Image.Image, half: int, rng: np.random.Generator) -> Image.Image:
    array = np.array(image)
    cy, cx = int(rng.integers(0, array.shape[0])), int(rng.integers(0, array.shape[1]))
    array[max(0, cy - half) : cy + half, max(0, cx - half) : cx + half] = _FILL
    return Image.fromarray(array, image.mode)


def _solarize_add(image: Image.Image, addition: int) -> Image.Image:
    # Adds ``addition`` to pixels below 128 (TF's solarize_add with threshold 128), clipping at 255.
    array = np.asarray(image).astype(np.int32)
    return Image.fromarray(np.where(array < 128, np.minimum(array + addition, 255), array).astype(np.uint8), image.mode)


IMAGE_OPS: dict[str, Callable[[Image.Image, Any, np.random.Generator], Image.Image]] = {
    "auto_contrast": lambda im, _, rng: ImageOps.autocontrast(im),
    "equalize": lambda im, _, rng: ImageOps.equalize(im),
    "invert": lambda im, _, rng: ImageOps.invert(im),
    "rotate": lambda im, deg, rng: im.rotate(deg, Image.Resampling.NEAREST,
                                             fillcolor=_FILL if im.mode == "L" else (_FILL,) * 3),
    "posterize": lambda im, bits, rng: ImageOps.posterize(im, bits),
    "solarize": lambda im, threshold, rng: ImageOps.solarize(im, threshold),
    "solarize_add": lambda im, addition, rng: _solarize_add(im, addition),
    "color": lambda im, f, rng: ImageEnhance.Color(im).enhance(f),
    "contrast": lambda im, f, rng: ImageEnhance.Contrast(im).enhance(f),
    "brightness": lambda im, f, rng: ImageEnhance.Brightness(im).enhance(f),
    "sharpness": lambda im, f, rng: ImageEnhance.Sharpness(im).enhance(f),
    "shear_x": lambda im, s, rng: _affine(im, (1, s, 0, 0, 1, 0)),
    "shear_y": lambda im, s, rng: _affine(im, (1, 0, 0, s, 1, 0)),
    "translate_x": lambda im, px, rng: _affine(im, (1, 0, px, 0, 1, 0)),
    "translate_y": lambda im, px, rng: _affine(im, (1, 0, 0, 0, 1, px)),
    "cutout": lambda im, half, rng: _cutout(im, half, rng),
}


def _op_argument(name: str, fraction: float, image: Image.Image, rng: np.random.Generator, *,
                 signed_enhance: bool) -> Any:
    """The argument of op ``name`` at magnitude ``fraction`` in [0, 1] of its range (AutoAugment Table 1 ranges).

    Strength grows with the magnitude for every op (RandAugment's premise): rotate 0-30 degrees, shear 0-0.3,
    translate 0-0.45 of the image side (150 px of 331 in AutoAugment, 100 of 224 in EfficientNet), both signs
    equally likely; posterize keeps 8 down to 4 bits; solarize inverts pixels >= a threshold from 256 (nothing)
    down to 0 (everything); solarize_add adds 0-110; cutout squares of side 0-80 px at 224 (EfficientNet's 40 px
    half-size). Enhance ops (color, contrast, brightness, sharpness): AutoAugment's range [0.1, 1.9] traversed
    linearly, as in the policy search (level 0 gives 0.1), or with ``signed_enhance`` the factor ``1 +- 0.9 f``.
    """
    sign = 1.0 if rng.random() < 0.5 else -1.0
    side = min(image.size)
    if name in ("auto_contrast", "equalize", "invert"):
        return None
    if name == "rotate":
        return sign * 30.0 * fraction
    if name in ("shear_x", "shear_y"):
        return sign * 0.3 * fraction
    if name in ("translate_x", "translate_y"):
        return sign * 0.45 * fraction * image.size[0 if name == "translate_x" else 1]
    if name == "posterize":
        return 8 - round(4 * fraction)
    if name == "solarize":
        return 256.0 * (1.0 - fraction)
    if name == "solarize_add":
        return round(110 * fraction)
    if name == "cutout":
        return round(fraction * 40 / 224 * side)
    if signed_enhance:
        return 1.0 + sign * 0.9 * fraction
    return 0.1 + 1.8 * fraction


def autoaugment(image: Image.Image, rng: np.random.Generator,
                policy: Sequence[Sequence[tuple[str, float, int]]] = AUTOAUGMENT_IMAGENET_POLICY) -> Image.Image:
    """AutoAugment (Cubuk et al. 2019): one sub-policy drawn uniformly, each step applied with its probability at
    its magnitude (levels 0..9 spread uniformly over the op's range: ``fraction = level / 9``)."""
    for name, probability, level in policy[int(rng.integers(len(policy)))]:
        if rng.random() < probability:
            image = IMAGE_OPS[name](image, _op_argument(name, level / 9, image, rng, signed_enhance=False), rng)
    return image


def randaugment(image: Image.Image, rng: np.random.Generator, num_layers: int, magnitude: float,
                ops: Sequence[str] = RANDAUGMENT_OPS) -> Image.Image:
    """RandAugment (Cubuk et al. 2020): ``num_layers`` ops drawn uniformly from ``ops`` (with replacement), each
    applied at ``magnitude`` on EfficientNet's 0..10 scale (``fraction = magnitude / 10``). Enhance ops use the
    signed factor ``1 +- 0.9 f`` so that strength grows with M (TF EfficientNet's ``0.1 + 1.8 f`` does not)."""
    for _ in range(num_layers):
        name = ops[int(rng.integers(len(ops)))]
        image = IMAGE_OPS[name](image, _op_argument(name, magnitude / 10, image, rng, signed_enhance=True), rng)
    return image


# --------------------------------------------------------------------------------------------------------------
# Spec strings -> ops.


@dataclasses.dataclass(frozen=True)
class _Context:
    image_size: int
    mean: np.ndarray
    std: np.ndarray
    channels: int
    interpolation: str  # the configured one (``config.data.interpolation``), the default of resize ops


@dataclasses.dataclass(frozen=True)
class _Op:
    """``apply(image, rng)``; ``domain`` is "uint8" (PIL image in, PIL image out), "float" (normalised float32
    array) or "any"."""

    name: str
    domain: str
    apply: Callable[[Any, np.random.Generator], Any]


def _check(op: str, condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(f"op {op!r}: {message}")


def _train_random_resized_crop(ctx: _Context, scale: float = 0.08, max_scale: float = 1.0, ratio: float = 3 / 4,
                               interpolation: str = "bilinear", draft: bool = False) -> _Op:
    """Area fraction in [scale, max_scale], aspect in [ratio, 1/ratio], output image_size x image_size."""
    _check("random_resized_crop", 0 < scale <= max_scale <= 1, f"need 0 < scale <= max_scale <= 1, got {scale}, "
           f"{max_scale}")
    _check("random_resized_crop", 0 < ratio <= 1, f"need 0 < ratio <= 1 (aspect range [ratio, 1/ratio]), got {ratio}")
    _check("random_resized_crop", interpolation in _INTERPOLATIONS,
           f"interpolation {interpolation!r} is not one of {sorted(_INTERPOLATIONS)}")

    def apply(image: Image.Image, rng: np.random.Generator) -> Image.Image:
        box = random_resized_crop_box(image.size[1], image.size[0], rng, scale=(scale, max_scale),
                                      ratio=(ratio, 1 / ratio))
        return resized_crop(image, box, ctx.image_size, interpolation, draft)

    return _Op("random_resized_crop", "uint8", apply)


def _train_resize(ctx: _Context, interpolation: str | None = None) -> _Op:
    """The whole image resized to image_size x image_size (aspect ratio not kept), with ``interpolation`` or, by
    default, the configured one."""
    interpolation = interpolation or ctx.interpolation
    _check("resize", interpolation in _INTERPOLATIONS,
           f"interpolation {interpolation!r} is not one of {sorted(_INTERPOLATIONS)}")
    return _Op("resize", "uint8", lambda image, rng: resize(image, ctx.image_size, interpolation))


def _train_flip(ctx: _Context, p: float = 0.5) -> _Op:
    _check("flip", 0 <= p <= 1, f"probability p={p} is not in [0, 1]")
    return _Op("flip", "any", lambda image, rng: hflip(image) if rng.random() < p else image)


def _train_pad_crop(ctx: _Context, pad: int = 4) -> _Op:
    _check("pad_crop", isinstance(pad, int) and pad >= 0, f"pad must be a non-negative int, got {pad!r}")
    return _Op("pad_crop", "float",
               lambda image, rng: pad_crop(center_pad_or_crop(image, ctx.image_size), pad, rng))


def _train_color_jitter(ctx: _Context, brightness: float = 0.4, contrast: float = 0.4,
                        saturation: float = 0.4) -> _Op:
    _check("color_jitter", min(brightness, contrast, saturation) >= 0, "strengths must be >= 0")
    return _Op("color_jitter", "uint8",
               lambda image, rng: color_jitter(image, rng, brightness, contrast, saturation))


def _train_lighting(ctx: _Context, alphastd: float = 0.1) -> _Op:
    _check("lighting", ctx.channels == 3, f"needs RGB images, got {ctx.channels} channel(s)")
    _check("lighting", alphastd >= 0, f"alphastd must be >= 0, got {alphastd}")
    # The shift is in [0, 1] pixel units; in the normalised domain it is divided by std.
    return _Op("lighting", "float",
               lambda image, rng: image + (lighting_shift(alphastd, rng) / ctx.std).astype(np.float32))


def _train_autoaugment(ctx: _Context, policy: str = "imagenet") -> _Op:
    _check("autoaugment", policy == "imagenet", f"policy {policy!r} is not known; expected 'imagenet'")
    return _Op("autoaugment", "uint8", lambda image, rng: autoaugment(image, rng))


def _train_randaugment(ctx: _Context, num_layers: int = 2, magnitude: float = 9) -> _Op:
    _check("randaugment", isinstance(num_layers, int) and num_layers >= 0,
           f"num_layers must be a non-negative int, got {num_layers!r}")
    _check("randaugment", 0 <= magnitude <= 10, f"magnitude must be in [0, 10] (EfficientNet's scale), got {magnitude}")
    return _Op("randaugment", "uint8", lambda image, rng: randaugment(image, rng, num_layers, magnitude))


def _train_random_erasing(ctx: _Context, p: float = 0.5, min_area: float = 0.02, max_area: float = 0.4,
                          min_aspect: float = 0.3) -> _Op:
    """Defaults are the paper's s_l = 0.02, s_h = 0.4, r_1 = 0.3 (Zhong et al. 2020 Sec. 4)."""
    _check("random_erasing", 0 <= p <= 1, f"probability p={p} is not in [0, 1]")
    _check("random_erasing", 0 < min_area <= max_area < 1, f"need 0 < min_area <= max_area < 1, got {min_area}, "
           f"{max_area}")
    _check("random_erasing", 0 < min_aspect <= 1, f"min_aspect must be in (0, 1], got {min_aspect}")
    return _Op("random_erasing", "float", lambda image, rng: random_erasing(
        image, rng, p=p, area=(min_area, max_area), min_aspect=min_aspect))


TRAIN_OPS: dict[str, Callable[..., _Op]] = {
    "random_resized_crop": _train_random_resized_crop,
    "resize": _train_resize,
    "flip": _train_flip,
    "pad_crop": _train_pad_crop,
    "color_jitter": _train_color_jitter,
    "lighting": _train_lighting,
    "autoaugment": _train_autoaugment,
    "randaugment": _train_randaugment,
    "random_erasing": _train_random_erasing,
}
EVAL_OPS = ("resize_center_crop", "resize", "none")
BATCH_OPS = ("mixup", "cutmix")

_OP_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*(?:\((.*)\))?$", re.S)


def _split_top_level(spec: str, separator: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, char in enumerate(spec):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced ')' at position {i} in spec {spec!r}")
        elif char == separator and depth == 0:
            parts.append(spec[start:i].strip())
            start = i + 1
    if depth:
        raise ValueError(f"unbalanced '(' in spec {spec!r}")
    parts.append(spec[start:].strip())
    return parts


def _parse_op(text: str, known: Sequence[str], kind: str) -> tuple[str, list[Any], dict[str, Any]]:
    """``"name(1, x=2)"`` -> ("name", [1], {"x": 2}); arguments are Python literals."""
    match = _OP_RE.match(text)
    if not match:
        raise ValueError(f"cannot parse {kind} op {text!r}; expected name or name(args); known ops: "
                         f"{', '.join(known)}")
    name, inner = match.group(1), match.group(2)
    if name not in known:
        raise ValueError(f"unknown {kind} op {name!r}; known ops: {', '.join(known)} (or 'none' alone)")
    if not inner or not inner.strip():
        return name, [], {}
    try:
        call = ast.parse(f"_({inner})", mode="eval").body
        assert isinstance(call, ast.Call)
        args = [ast.literal_eval(a) for a in call.args]
        kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
    except (SyntaxError, ValueError, AssertionError) as error:
        raise ValueError(f"{kind} op {name!r}: arguments {inner!r} are not Python literals ({error})") from None
    if None in kwargs:
        raise ValueError(f"{kind} op {name!r}: '**' arguments are not supported")
    return name, args, kwargs


def _build(factory: Callable[..., Any], name: str, leading: Sequence[Any], args: list[Any],
           kwargs: dict[str, Any]) -> Any:
    """Calls ``factory(*leading, *args, **kwargs)``, turning a signature mismatch into a ValueError for ``name``."""
    signature = inspect.signature(factory)
    params = list(signature.parameters.values())[len(leading):]
    try:
        signature.replace(parameters=params).bind(*args, **kwargs)
    except TypeError as error:
        expected = ", ".join(p.name if p.default is p.empty else f"{p.name}={p.default!r}" for p in params)
        raise ValueError(f"op {name!r}: bad arguments ({error}); expected {name}({expected})") from None
    return factory(*leading, *args, **kwargs)


def _context(image_size: int, mean: Sequence[float], std: Sequence[float], interpolation: str) -> _Context:
    if not isinstance(image_size, int) or image_size <= 0:
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")
    if len(mean) != len(std) or len(mean) not in (1, 3):
        raise ValueError(f"mean and std must both have 1 or 3 entries (one per channel), got {mean!r} and {std!r}")
    if min(std) <= 0:
        raise ValueError(f"std must be positive, got {std!r}")
    if interpolation not in _INTERPOLATIONS:
        raise ValueError(f"interpolation {interpolation!r} is not one of {', '.join(map(repr, _INTERPOLATIONS))}")
    return _Context(image_size, np.asarray(mean, np.float32), np.asarray(std, np.float32), len(mean), interpolation)


def make_train_transform(spec: str, *, image_size: int, mean: Sequence[float], std: Sequence[float],
                         interpolation: str = "bicubic") -> TrainTransform:
    """One training image ``uint8 HxWxC`` (C = len(mean); or a PIL image, e.g. from :func:`open_image`) plus a
    ``np.random.Generator`` -> float32 ``(image_size, image_size, C)``, normalised with mean/std.

    ``spec``: comma-separated ops from :data:`TRAIN_OPS` with optional Python-literal arguments, or "none"/"".
    Normalisation happens before the first float op (pad_crop, lighting, random_erasing) or at the end; the result
    is centre zero-padded or centre cropped to ``image_size``. ``interpolation`` (PIL: "nearest", "bilinear",
    "bicubic", "lanczos") is the default of the ``resize`` op; ``random_resized_crop`` keeps its own argument.
    """
    ctx = _context(image_size, mean, std, interpolation)
    ops: list[_Op] = []
    if spec.strip() not in ("", "none"):
        for text in _split_top_level(spec, ","):
            name, args, kwargs = _parse_op(text, list(TRAIN_OPS), "train")
            ops.append(_build(TRAIN_OPS[name], name, [ctx], args, kwargs))
    seen_float = None
    for op in ops:
        if op.domain == "float":
            seen_float = seen_float or op.name
        elif op.domain == "uint8" and seen_float:
            raise ValueError(f"op {op.name!r} works on uint8 images and must come before {seen_float!r}, which "
                             f"works on normalised floats (spec {spec!r})")
    any_uint8 = any(op.domain == "uint8" for op in ops)

    def transform(image: ImageLike, rng: np.random.Generator) -> np.ndarray:
        # uint8 ops run on a PIL image; an array input with no uint8 ops never goes through PIL.
        if any_uint8 or isinstance(image, Image.Image):
            image = _to_pil(image, ctx.channels)
        else:
            _check_array(image, ctx.channels)
        floating = False
        for op in ops:
            if op.domain == "float" and not floating:
                image, floating = normalize(_to_array(image), ctx.mean, ctx.std), True
            image = op.apply(image, rng)
        if not floating:
            image = normalize(_to_array(image), ctx.mean, ctx.std)
        return np.ascontiguousarray(center_pad_or_crop(image, ctx.image_size), dtype=np.float32)

    return transform


def resize(image: Image.Image, size: int, interpolation: str) -> Image.Image:
    """The whole image resized to ``size`` x ``size`` (PIL ``interpolation``; a non-square image is stretched)."""
    return image.resize((size, size), _INTERPOLATIONS[interpolation])


def resize_shorter_side(image: Image.Image, size: int, interpolation: str) -> Image.Image:
    """Resize so the shorter side is ``size``; the longer side keeps the aspect ratio (rounded)."""
    width, height = image.size
    if width <= height:
        new = (size, max(1, round(height * size / width)))
    else:
        new = (max(1, round(width * size / height)), size)
    return image.resize(new, _INTERPOLATIONS[interpolation])


def make_eval_transform(spec: str, *, image_size: int, crop_fraction: float, mean: Sequence[float],
                        std: Sequence[float], interpolation: str = "bicubic") -> EvalTransform:
    """One evaluation image (uint8 HxWxC array or PIL image) -> float32 ``(image_size, image_size, C)``.

    ``resize_center_crop``: resize the shorter side to ``round(image_size / crop_fraction)`` with PIL
    ``interpolation`` ("nearest", "bilinear", "bicubic", "lanczos"), centre crop ``image_size`` (offsets
    ``(extent - size) // 2``), normalise. ``crop_fraction`` 0.875 is the ResNet/Inception convention (224 of 256).
    EfficientNet's TF code crops ``image_size / (image_size + CROP_PADDING)`` of the shorter side with
    ``CROP_PADDING = 32`` and resizes that to ``image_size``; the same region comes from
    ``crop_fraction = image_size / (image_size + 32)`` here (B0: 224/256, B3: 300/332, B7: 600/632), which resizes
    to ``image_size + 32`` and then crops.
    ``resize``: resize the whole image to ``image_size`` x ``image_size`` with ``interpolation`` (the training
    op ``resize``), normalise; ``crop_fraction`` is not used.
    ``none``: normalise, then centre zero-pad / centre crop to ``image_size`` (28x28 Fashion-MNIST at 32, CIFAR).
    """
    ctx = _context(image_size, mean, std, interpolation)
    if spec not in EVAL_OPS:
        raise ValueError(f"unknown eval op {spec!r}; known ops: {', '.join(EVAL_OPS)}")
    if not 0 < crop_fraction <= 1:
        raise ValueError(f"crop_fraction must be in (0, 1], got {crop_fraction}")
    resize_to = round(image_size / crop_fraction)

    def transform(image: ImageLike) -> np.ndarray:
        if spec == "resize_center_crop":
            image = resize_shorter_side(_to_pil(image, ctx.channels), resize_to, interpolation)
        elif spec == "resize":
            image = resize(_to_pil(image, ctx.channels), image_size, interpolation)
        elif isinstance(image, Image.Image):
            image = _to_pil(image, ctx.channels)
        else:
            _check_array(image, ctx.channels)
        # Normalise before padding: the padding is zeros in the normalised domain, as in training.
        array = center_pad_or_crop(normalize(_to_array(image), ctx.mean, ctx.std), image_size)
        return np.ascontiguousarray(array, dtype=np.float32)

    return transform


# --------------------------------------------------------------------------------------------------------------
# Batch ops: mixup and cutmix on normalised batches, one-hot soft targets.


def mixup(images: np.ndarray, targets: np.ndarray, rng: np.random.Generator, alpha: float
          ) -> tuple[np.ndarray, np.ndarray]:
    """mixup (Zhang et al. 2018): ``lam ~ Beta(alpha, alpha)``, each example mixed with a random permutation of the
    batch, images and one-hot targets with the same ``lam``."""
    lam = rng.beta(alpha, alpha)
    perm = rng.permutation(len(images))
    mixed = np.float32(lam) * images + np.float32(1 - lam) * images[perm]
    return mixed.astype(np.float32), (lam * targets + (1 - lam) * targets[perm]).astype(np.float32)


def cutmix_box(height: int, width: int, lam: float, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """CutMix box (Yun et al. 2019 Sec. 3.1): sides ``H sqrt(1 - lam)`` x ``W sqrt(1 - lam)`` around a uniformly
    drawn centre, clipped to the image: ``(y0, y1, x0, x1)``."""
    cut = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * cut), int(width * cut)
    cy, cx = int(rng.integers(0, height)), int(rng.integers(0, width))
    y0, y1 = max(cy - cut_h // 2, 0), min(cy + cut_h - cut_h // 2, height)
    x0, x1 = max(cx - cut_w // 2, 0), min(cx + cut_w - cut_w // 2, width)
    return y0, y1, x0, x1


def cutmix(images: np.ndarray, targets: np.ndarray, rng: np.random.Generator, alpha: float
           ) -> tuple[np.ndarray, np.ndarray]:
    """CutMix (Yun et al. 2019): paste a box from a permuted batch; the pasted example's target weight is the exact
    area fraction of the box after clipping."""
    lam = rng.beta(alpha, alpha)
    perm = rng.permutation(len(images))
    height, width = images.shape[1:3]
    y0, y1, x0, x1 = cutmix_box(height, width, lam, rng)
    mixed = images.copy()
    mixed[:, y0:y1, x0:x1] = images[perm, y0:y1, x0:x1]
    pasted = (y1 - y0) * (x1 - x0) / (height * width)
    return mixed, ((1 - pasted) * targets + pasted * targets[perm]).astype(np.float32)


def _batch_alpha(name: str, alpha: float) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or alpha <= 0:
        raise ValueError(f"op {name!r}: alpha must be a positive number, got {alpha!r}")
    return float(alpha)


def make_batch_transform(spec: str, *, num_classes: int) -> BatchTransform | None:
    """``(images (B,H,W,C) float32, labels (B,) int, rng) -> (images, targets (B, num_classes) float32)``.

    ``spec``: ``mixup(alpha)``, ``cutmix(alpha)``, or alternatives separated by ``|`` (one drawn uniformly per batch,
    e.g. ``mixup(0.8)|cutmix(1.0)``, DeiT/timm's switch with p = 0.5). ``none`` or ``""`` -> None.
    """
    if spec.strip() in ("", "none"):
        return None
    if num_classes <= 0:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    functions = {"mixup": mixup, "cutmix": cutmix}
    choices = []
    for text in _split_top_level(spec, "|"):
        name, args, kwargs = _parse_op(text, BATCH_OPS, "batch")
        choices.append((functions[name], _build(_batch_alpha, name, [name], args, kwargs)))

    def transform(images: np.ndarray, labels: np.ndarray, rng: np.random.Generator
                  ) -> tuple[np.ndarray, np.ndarray]:
        labels = np.asarray(labels)
        if images.ndim != 4 or labels.shape != images.shape[:1]:
            raise ValueError(f"expected images (B,H,W,C) and labels (B,), got {images.shape} and {labels.shape}")
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"labels must lie in [0, {num_classes}), got range [{labels.min()}, {labels.max()}]")
        targets = np.eye(num_classes, dtype=np.float32)[labels]
        function, alpha = choices[int(rng.integers(len(choices)))] if len(choices) > 1 else choices[0]
        return function(images, targets, rng, alpha)

    return transform
