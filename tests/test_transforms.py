"""Preprocessing ops of cnn_jax.data.transforms on real photographs (skimage.data) and Fashion-MNIST images."""

from __future__ import annotations

import gzip
import io
import math
import pathlib

import numpy as np
import pytest
from PIL import Image, ImageEnhance
from skimage import data

from cnn_jax.data import transforms as T

IMAGENET = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
FMNIST = {"mean": (0.2860,), "std": (0.3530,)}
PHOTOS = {name: getattr(data, name)() for name in ("astronaut", "coffee", "chelsea")}
FMNIST_TEST_IMAGES = pathlib.Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")


def fmnist_like(n: int = 64) -> np.ndarray:
    """Real 28x28x1 uint8 images: Fashion-MNIST test images when Debian's files are installed (CI installs
    them), followed by 28x28 greyscale thumbnails of the skimage photographs."""
    images = []
    if FMNIST_TEST_IMAGES.exists():
        with gzip.open(FMNIST_TEST_IMAGES) as f:
            images.append(np.frombuffer(f.read(16 + 28 * 28 * n), np.uint8, offset=16).reshape(-1, 28, 28, 1))
    thumbs = [np.asarray(Image.fromarray(p).convert("L").resize((28, 28), Image.Resampling.BILINEAR))[..., None]
              for p in PHOTOS.values()]
    images.append(np.stack(thumbs))
    return np.concatenate(images)


def trainer_preprocess(images, mean, std, image_size, augment, rng):
    """The trainer's batch preprocessing before issue 7 (cnn_jax/data/pipeline.py ``preprocess``), kept verbatim
    as the reference that spec "none" and "pad_crop(4),flip" must reproduce bit for bit."""
    x = (images.astype(np.float32) / 255.0 - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    pad = image_size - x.shape[1]
    if pad:
        x = np.pad(x, ((0, 0), (pad // 2, pad - pad // 2), (pad // 2, pad - pad // 2), (0, 0)))
    if augment == "none":
        return x
    padded = np.pad(x, ((0, 0), (4, 4), (4, 4), (0, 0)))
    out = np.empty_like(x)
    offsets = rng.integers(0, 9, (len(x), 2))
    flips = rng.random(len(x)) < 0.5
    for i, ((dy, dx), flip) in enumerate(zip(offsets, flips, strict=True)):
        crop = padded[i, dy : dy + image_size, dx : dx + image_size]
        out[i] = crop[:, ::-1] if flip else crop
    return out


def normalized(image: np.ndarray, stats=IMAGENET) -> np.ndarray:
    return (image.astype(np.float32) / 255.0 - np.float32(stats["mean"])) / np.float32(stats["std"])


# ---------------------------------------------------------------------------------------------------------------
# Whole specs.


@pytest.mark.parametrize("spec", ["random_resized_crop,flip,randaugment(2,9)",
                                  "random_resized_crop(scale=0.08),flip,color_jitter(0.4,0.4,0.4),lighting(0.1)",
                                  "pad_crop(4),flip", "autoaugment,random_erasing(0.25)", "none",
                                  "random_resized_crop(interpolation='bicubic', draft=True), flip"])
def test_train_specs_shapes_ranges_determinism(spec):
    transform = T.make_train_transform(spec, image_size=64, **IMAGENET)
    lo = (0 - max(IMAGENET["mean"])) / min(IMAGENET["std"]) - 0.5  # lighting shifts by a few hundredths
    hi = (1 - min(IMAGENET["mean"])) / min(IMAGENET["std"]) + 0.5
    for seed, image in enumerate(PHOTOS.values()):
        out = transform(image, np.random.default_rng(seed))
        assert out.shape == (64, 64, 3) and out.dtype == np.float32 and out.flags.c_contiguous
        if "random_erasing" not in spec:  # erasing writes N(0, 1) noise
            assert lo < out.min() and out.max() < hi
        np.testing.assert_array_equal(out, transform(image, np.random.default_rng(seed)))
    if spec != "none":
        image = PHOTOS["coffee"]
        outs = [transform(image, np.random.default_rng(seed)) for seed in range(4)]
        assert any(not np.array_equal(outs[0], other) for other in outs[1:])


def test_none_and_pad_crop_match_trainer_preprocess_bit_for_bit():
    images = fmnist_like()
    for augment, spec in (("none", "none"), ("crop_flip", "pad_crop(4),flip")):
        transform = T.make_train_transform(spec, image_size=32, **FMNIST)
        flipped = 0
        for i, image in enumerate(images):
            # One image per batch: the trainer's draws (2 offsets, then 1 flip) are this transform's draws.
            expected = trainer_preprocess(images[i : i + 1], FMNIST["mean"], FMNIST["std"], 32, augment,
                                          np.random.default_rng([7, i]))[0]
            out = T.make_train_transform(spec, image_size=32, **FMNIST)(image, np.random.default_rng([7, i]))
            np.testing.assert_array_equal(out, expected)
            np.testing.assert_array_equal(transform(image, np.random.default_rng([7, i])), expected)
            flipped += not np.array_equal(out, trainer_preprocess(images[i : i + 1], FMNIST["mean"],
                                                                  FMNIST["std"], 32, "none", None)[0])
        if augment == "crop_flip":
            assert flipped > len(images) // 2  # most crops move or mirror the image


def test_eval_none_pads_and_crops_centrally():
    image = fmnist_like(4)[0]
    out = T.make_eval_transform("none", image_size=32, crop_fraction=1.0, **FMNIST)(image)
    np.testing.assert_array_equal(out, trainer_preprocess(image[None], FMNIST["mean"], FMNIST["std"], 32, "none",
                                                          None)[0])
    out = T.make_eval_transform("none", image_size=24, crop_fraction=1.0, **FMNIST)(image)
    np.testing.assert_array_equal(out, normalized(image, FMNIST)[2:26, 2:26])


def test_grayscale_and_pil_inputs():
    gray = np.asarray(Image.fromarray(PHOTOS["chelsea"]).convert("L"))[..., None]
    spec = "random_resized_crop,flip,color_jitter,autoaugment,randaugment(2,5),random_erasing"
    out = T.make_train_transform(spec, image_size=48, **FMNIST)(gray, np.random.default_rng(0))
    assert out.shape == (48, 48, 1) and out.dtype == np.float32
    transform = T.make_train_transform("random_resized_crop,flip", image_size=48, **IMAGENET)
    from_pil = transform(Image.fromarray(PHOTOS["chelsea"]), np.random.default_rng(3))
    np.testing.assert_array_equal(from_pil, transform(PHOTOS["chelsea"], np.random.default_rng(3)))


@pytest.mark.parametrize("spec, message", [
    ("random_resize_crop", "unknown train op 'random_resize_crop'; known ops: random_resized_crop, resize, flip"),
    ("flip(q=1)", "op 'flip': bad arguments"),
    ("flip(2)", "op 'flip': probability p=2"),
    ("randaugment(2, 40)", "op 'randaugment': magnitude must be in [0, 10]"),
    ("random_resized_crop(interpolation='cubic')", "interpolation 'cubic'"),
    ("random_erasing,color_jitter", "op 'color_jitter' works on uint8 images and must come before"),
    ("flip(", "unbalanced '('"),
    ("pad_crop(x)", "are not Python literals"),
])
def test_train_spec_errors(spec, message):
    with pytest.raises(ValueError) as error:
        T.make_train_transform(spec, image_size=32, **IMAGENET)
    assert message in str(error.value)


def test_input_and_stats_errors():
    with pytest.raises(ValueError, match="lighting.*needs RGB"):
        T.make_train_transform("lighting", image_size=32, **FMNIST)
    transform = T.make_train_transform("flip", image_size=32, **IMAGENET)
    with pytest.raises(ValueError, match=r"uint8 HxWx3 image .*float32 \(28, 28, 3\)"):
        transform(np.zeros((28, 28, 3), np.float32), np.random.default_rng(0))
    with pytest.raises(ValueError, match="mean and std"):
        T.make_train_transform("none", image_size=32, mean=(0.5, 0.5), std=(0.5, 0.5))
    with pytest.raises(ValueError, match="unknown eval op 'center_crop'; known ops: resize_center_crop, resize, none"):
        T.make_eval_transform("center_crop", image_size=32, crop_fraction=0.875, **IMAGENET)


# ---------------------------------------------------------------------------------------------------------------
# Single ops.


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea"])
def test_random_resized_crop_box_area_and_aspect_in_range(name):
    height, width = PHOTOS[name].shape[:2]
    rng = np.random.default_rng(0)
    areas, aspects = [], []
    for _ in range(2000):
        top, left, h, w = T.random_resized_crop_box(height, width, rng, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3))
        assert 0 <= top <= height - h and 0 <= left <= width - w
        # Sides are rounded to whole pixels: allow half a pixel on each.
        assert (math.sqrt(0.08 * height * width) - 1) ** 2 <= h * w <= height * width
        assert 3 / 4 * (h - 0.5) / (h + 0.5) <= w / h <= 4 / 3 * (h + 0.5) / (h - 0.5) or (h, w) == (height, width)
        areas.append(h * w / (height * width))
        aspects.append(w / h)
    # The range is covered: small and near-full crops, both orientations, log-aspect centred on 0 (log-uniform).
    # (A 3:2 photo holds crops of aspect <= 4/3 up to 8/9 of its area.)
    assert min(areas) < 0.1 and max(areas) > 0.85
    assert min(aspects) < 0.8 and max(aspects) > 1.25


def test_random_resized_crop_box_distribution():
    # Where every draw fits (small areas of a square photo), the area is uniform in `scale` and the aspect ratio
    # log-uniform in `ratio`: compare empirical CDFs with the uniform one.
    rng = np.random.default_rng(1)
    boxes = np.array([T.random_resized_crop_box(512, 512, rng, scale=(0.08, 0.3), ratio=(3 / 4, 4 / 3))
                      for _ in range(2000)])
    area = boxes[:, 2] * boxes[:, 3] / 512**2
    log_aspect = np.log(boxes[:, 3] / boxes[:, 2])

    def cdf_distance(x, lo, hi):
        return np.abs(np.sort(x) - np.linspace(lo, hi, len(x))).max() / (hi - lo)

    assert cdf_distance(area, 0.08, 0.3) < 0.05
    assert cdf_distance(log_aspect, math.log(3 / 4), math.log(4 / 3)) < 0.05


def test_random_resized_crop_falls_back_to_center_crop_on_extreme_aspect():
    rng = np.random.default_rng(0)
    # 20x2000: no crop of area >= 8 % with aspect <= 4/3 fits in 20 rows, so all 10 attempts fail.
    assert T.random_resized_crop_box(20, 2000, rng, scale=(0.08, 1), ratio=(3 / 4, 4 / 3)) == (0, 986, 20, 27)
    assert T.random_resized_crop_box(2000, 20, rng, scale=(0.08, 1), ratio=(3 / 4, 4 / 3)) == (986, 0, 27, 20)
    strip = np.ascontiguousarray(np.resize(PHOTOS["astronaut"][200:220], (20, 2000, 3)))
    out = T.make_train_transform("random_resized_crop", image_size=32, **IMAGENET)(strip, np.random.default_rng(0))
    expected = np.asarray(Image.fromarray(strip).resize((32, 32), Image.Resampling.BILINEAR, box=(986, 0, 1013, 20)))
    np.testing.assert_array_equal(out, normalized(expected))


def test_random_resized_crop_draft_decodes_smaller_but_keeps_the_region():
    big = Image.fromarray(PHOTOS["astronaut"]).resize((1600, 1600), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    big.save(buffer, "JPEG", quality=90)
    box = (100, 200, 1000, 900)  # top, left, h, w: >= 4 x 224 on both sides -> decoded at 1/4 scale
    lazy = T.open_image(buffer.getvalue())
    drafted = T.resized_crop(lazy, box, 224, "bilinear", draft=True)
    assert lazy.size == (400, 400)
    full = T.resized_crop(T.open_image(buffer.getvalue()), box, 224, "bilinear", draft=False)
    diff = np.abs(np.asarray(drafted, np.float32) - np.asarray(full, np.float32))
    assert diff.mean() < 2.0  # same region; only the resampling filter differs
    shifted = T.resized_crop(T.open_image(buffer.getvalue()), (100, 240, 1000, 900), 224, "bilinear")
    assert np.abs(np.asarray(shifted, np.float32) - np.asarray(full, np.float32)).mean() > 3 * diff.mean()


def test_flip_is_exact_mirror():
    image = PHOTOS["chelsea"]
    out = T.make_train_transform("flip(1.0)", image_size=64, **IMAGENET)(image, np.random.default_rng(0))
    np.testing.assert_array_equal(out, T.center_pad_or_crop(normalized(image[:, ::-1]), 64))
    np.testing.assert_array_equal(np.asarray(T.hflip(Image.fromarray(image))), image[:, ::-1])
    same = T.make_train_transform("flip(0.0)", image_size=64, **IMAGENET)(image, np.random.default_rng(0))
    np.testing.assert_array_equal(same, T.center_pad_or_crop(normalized(image), 64))


def test_lighting_noise_follows_imagenet_pca():
    # Over many draws the RGB shift has covariance V diag((alphastd * eigval)^2) V^T (AlexNet Sec. 4.1).
    transform = T.make_train_transform("lighting(0.1)", image_size=4, **IMAGENET)
    image = np.full((4, 4, 3), 128, np.uint8)
    base = normalized(image)
    diffs = np.array([transform(image, np.random.default_rng(s)) - base for s in range(3000)])
    assert np.allclose(diffs, diffs[:, :1, :1], atol=1e-6)  # one RGB shift per image
    shifts = diffs[:, 0, 0] * np.float32(IMAGENET["std"])
    assert np.abs(shifts.mean(0)).max() < 0.002
    cov = np.cov(shifts.T)
    values, vectors = np.linalg.eigh(cov)
    assert abs(vectors[:, -1] @ T.IMAGENET_PCA_EIGVEC[:, 0]) > 0.999
    assert values[-1] == pytest.approx((0.1 * 0.2175) ** 2, rel=0.1)
    expected = T.IMAGENET_PCA_EIGVEC @ np.diag((0.1 * T.IMAGENET_PCA_EIGVAL) ** 2) @ T.IMAGENET_PCA_EIGVEC.T
    np.testing.assert_allclose(cov, expected, atol=0.05 * (0.1 * 0.2175) ** 2)


def test_color_jitter_factors():
    image = Image.fromarray(PHOTOS["coffee"])
    ratios = [np.asarray(T.color_jitter(image, np.random.default_rng(s), 0.4, 0, 0), np.float32).mean()
              / np.asarray(image, np.float32).mean() for s in range(30)]
    assert 0.55 < min(ratios) < 0.8 and 1.2 < max(ratios) < 1.45  # brightness factor in [0.6, 1.4]
    gray = Image.fromarray(PHOTOS["coffee"]).convert("L").convert("RGB")  # saturation cannot change grey
    np.testing.assert_array_equal(np.asarray(T.color_jitter(gray, np.random.default_rng(0), 0, 0, 0.4)), gray)
    colour_spread = [np.asarray(T.color_jitter(image, np.random.default_rng(s), 0, 0, 0.9), np.float32).std(-1)
                     .mean() for s in range(20)]
    reference = np.asarray(image, np.float32).std(-1).mean()
    assert min(colour_spread) < 0.6 * reference < reference * 1.3 < max(colour_spread)


def test_random_erasing_erases_one_rectangle():
    image = normalized(PHOTOS["astronaut"][::8, ::8])  # 64x64
    for seed in range(20):
        out = T.random_erasing(image, np.random.default_rng(seed), p=1.0, area=(0.02, 0.4), min_aspect=0.3)
        changed = np.argwhere((out != image).any(-1))
        (y0, x0), (y1, x1) = changed.min(0), changed.max(0) + 1
        area = (y1 - y0) * (x1 - x0)
        assert len(changed) == area  # a full rectangle of fresh noise
        assert 0.02 * 64 * 64 * 0.8 <= area <= 0.4 * 64 * 64 * 1.2
    np.testing.assert_array_equal(T.random_erasing(image, np.random.default_rng(0), p=0.0, area=(0.02, 0.4),
                                                   min_aspect=0.3), image)


def test_pad_crop_offsets():
    image = normalized(fmnist_like(1)[0], FMNIST)
    for seed in range(10):
        rng = np.random.default_rng(seed)
        dy, dx = np.random.default_rng(seed).integers(0, 9, 2)
        out = T.pad_crop(image, 4, rng)
        padded = np.pad(image, ((4, 4), (4, 4), (0, 0)))
        np.testing.assert_array_equal(out, padded[dy : dy + 28, dx : dx + 28])


# AutoAugment / RandAugment image ops.


def op(name, image, argument, seed=0):
    return np.asarray(T.IMAGE_OPS[name](Image.fromarray(image), argument, np.random.default_rng(seed)))


def test_geometric_ops():
    image = PHOTOS["astronaut"]
    for name in ("rotate", "shear_x", "shear_y", "translate_x", "translate_y"):
        np.testing.assert_array_equal(op(name, image, 0), image)  # magnitude 0 = identity
    np.testing.assert_array_equal(op("rotate", image, 90), np.rot90(image))  # counter-clockwise
    shifted = op("translate_x", image, 10)
    np.testing.assert_array_equal(shifted[:, :-10], image[:, 10:])
    assert (shifted[:, -10:] == 128).all()  # mid-grey fill
    sheared = op("shear_x", image, 0.1)
    np.testing.assert_array_equal(sheared[100, :-10], image[100, 10:])  # row y moves left by 0.1 y
    out = op("cutout", image, 20, seed=3)
    grey = (out == 128).all(-1)
    assert grey.sum() >= 30 * 20 and (out[~grey] == image[~grey]).all()


def test_pixel_ops():
    image = PHOTOS["coffee"]
    np.testing.assert_array_equal(op("invert", image, None), 255 - image)
    solarized = op("solarize", image, 100)
    np.testing.assert_array_equal(solarized, np.where(image >= 100, 255 - image, image))
    np.testing.assert_array_equal(op("solarize", image, 256), image)
    for bits in (8, 6, 4):
        posterized = op("posterize", image, bits)
        np.testing.assert_array_equal(posterized, image & (0xFF << (8 - bits) & 0xFF))
    added = op("solarize_add", image, 50)
    np.testing.assert_array_equal(added, np.where(image < 128, np.minimum(image.astype(int) + 50, 255), image))
    low = (image // 2 + 40).astype(np.uint8)  # values 40..167
    stretched = op("auto_contrast", low, None)
    assert (stretched.reshape(-1, 3).min(0) == 0).all() and (stretched.reshape(-1, 3).max(0) == 255).all()


def test_equalize_flattens_the_histogram():
    gray = np.asarray(Image.fromarray(PHOTOS["chelsea"]).convert("L"))
    gray = (gray // 3 + 60).astype(np.uint8)  # squeezed into 60..145
    out = np.asarray(T.IMAGE_OPS["equalize"](Image.fromarray(gray), None, np.random.default_rng(0)))

    def cdf_error(x):  # max distance of the CDF from the uniform one
        cdf = np.cumsum(np.bincount(x.ravel(), minlength=256)) / x.size
        return np.abs(cdf - np.arange(1, 257) / 256).max()

    assert cdf_error(out) < 0.05 < 0.3 < cdf_error(gray)


def test_enhance_ops():
    image = PHOTOS["chelsea"]
    for name in ("color", "contrast", "brightness", "sharpness"):
        np.testing.assert_array_equal(op(name, image, 1.0), image)  # factor 1 = identity
    desaturated = op("color", image, 0.1).astype(np.float32)
    assert desaturated.std(-1).mean() < 0.2 * image.astype(np.float32).std(-1).mean()
    expected = np.asarray(ImageEnhance.Contrast(Image.fromarray(image)).enhance(1.7))
    np.testing.assert_array_equal(op("contrast", image, 1.7), expected)


def test_magnitudes_grow_with_level():
    image = Image.fromarray(PHOTOS["astronaut"])  # 512 x 512
    rng = np.random.default_rng(0)

    def arg(name, fraction, signed=False):
        return T._op_argument(name, fraction, image, rng, signed_enhance=signed)

    assert [arg("posterize", f) for f in (0, 0.5, 1)] == [8, 6, 4]
    assert [arg("solarize", f) for f in (0, 0.5, 1)] == [256, 128, 0]
    assert {abs(arg("rotate", 1)) for _ in range(10)} == {30} and {np.sign(arg("rotate", 1)) for _ in range(40)} \
        == {-1, 1}
    assert abs(arg("translate_x", 1)) == pytest.approx(0.45 * 512)
    assert abs(arg("shear_y", 0.5)) == pytest.approx(0.15)
    assert arg("color", 0) == pytest.approx(0.1) and arg("color", 1) == pytest.approx(1.9)
    assert {round(abs(arg("color", 1, signed=True) - 1), 6) for _ in range(5)} == {0.9}


def test_autoaugment_policy_and_randaugment_ops():
    policy = T.AUTOAUGMENT_IMAGENET_POLICY
    assert len(policy) == 25 and all(len(sub) == 2 for sub in policy)
    assert policy[0] == (("posterize", 0.4, 8), ("rotate", 0.6, 9))
    assert all(name in T.IMAGE_OPS and 0 <= p <= 1 and 0 <= level <= 9 for sub in policy for name, p, level in sub)
    assert len(T.RANDAUGMENT_OPS) == 16 and set(T.RANDAUGMENT_OPS) == set(T.IMAGE_OPS)
    image = Image.fromarray(PHOTOS["chelsea"])
    np.testing.assert_array_equal(np.asarray(T.randaugment(image, np.random.default_rng(0), 0, 9)), image)
    # A single-op policy applied with probability 1 is exactly that op.
    out = T.autoaugment(image, np.random.default_rng(0), policy=[(("invert", 1.0, 0), ("equalize", 0.0, 0))])
    np.testing.assert_array_equal(np.asarray(out), 255 - np.asarray(image))
    # Every step of the ImageNet policy changes this photo, so it stays unchanged exactly when neither step of the
    # drawn sub-policy fires: probability mean((1 - p1)(1 - p2)) = 0.134.
    small = image.resize((96, 64))
    unchanged = np.mean([np.array_equal(np.asarray(T.autoaugment(small, np.random.default_rng(s))), small)
                         for s in range(300)])
    expected = np.mean([(1 - a[1]) * (1 - b[1]) for a, b in policy])
    assert abs(unchanged - expected) < 0.06


# ---------------------------------------------------------------------------------------------------------------
# Evaluation and batch transforms.


@pytest.mark.parametrize("interpolation, resample", [("bicubic", Image.Resampling.BICUBIC),
                                                     ("bilinear", Image.Resampling.BILINEAR)])
def test_eval_resize_center_crop_matches_pil(interpolation, resample):
    image = PHOTOS["chelsea"]  # 451 wide, 300 high
    out = T.make_eval_transform("resize_center_crop", image_size=224, crop_fraction=0.875,
                                interpolation=interpolation, **IMAGENET)(image)
    resized = Image.fromarray(image).resize((385, 256), resample)  # shorter side 256 = 224 / 0.875
    expected = np.asarray(resized.crop((80, 16, 304, 240)))
    np.testing.assert_array_equal(out, normalized(expected))
    # EfficientNet's crop padding: crop_fraction = size / (size + 32) resizes the shorter side to size + 32.
    out = T.make_eval_transform("resize_center_crop", image_size=300, crop_fraction=300 / 332,
                                interpolation=interpolation, **IMAGENET)(image)
    expected = np.asarray(Image.fromarray(image).resize((499, 332), resample).crop((99, 16, 399, 316)))
    np.testing.assert_array_equal(out, normalized(expected))


def test_resize_nearest_doubles_every_pixel():
    """``resize`` at twice the size with nearest neighbours: each pixel of a known pattern becomes a 2x2 block, then
    the image is normalised; train op and eval spec alike."""
    pattern = ((np.arange(28)[:, None] * 37 + np.arange(28)[None, :] * 11) % 256).astype(np.uint8)[..., None]
    expected = normalized(pattern.repeat(2, axis=0).repeat(2, axis=1), FMNIST)
    train = T.make_train_transform("resize", image_size=56, interpolation="nearest", **FMNIST)
    np.testing.assert_array_equal(train(pattern, np.random.default_rng(0)), expected)
    evaluate = T.make_eval_transform("resize", image_size=56, crop_fraction=0.875, interpolation="nearest", **FMNIST)
    np.testing.assert_array_equal(evaluate(pattern), expected)
    # The op's own argument overrides the configured interpolation.
    by_argument = T.make_train_transform("resize(interpolation='nearest')", image_size=56, **FMNIST)
    np.testing.assert_array_equal(by_argument(pattern, np.random.default_rng(0)), expected)


@pytest.mark.parametrize("interpolation, resample", [("bilinear", Image.Resampling.BILINEAR),
                                                     ("bicubic", Image.Resampling.BICUBIC),
                                                     ("lanczos", Image.Resampling.LANCZOS)])
def test_resize_matches_pil_at_a_non_integer_factor(interpolation, resample):
    """28 -> 37 (x1.32) on real Fashion-MNIST images: exactly PIL's resize of the whole image, normalised; the
    border is the image's background, not padding (no pixel is the pad value 0)."""
    train = T.make_train_transform("resize", image_size=37, interpolation=interpolation, **FMNIST)
    evaluate = T.make_eval_transform("resize", image_size=37, crop_fraction=0.875, interpolation=interpolation,
                                     **FMNIST)
    for image in fmnist_like(8):
        resized = np.asarray(Image.fromarray(image[..., 0]).resize((37, 37), resample))[..., None]
        expected = normalized(resized, FMNIST)
        out = train(image, np.random.default_rng(0))
        assert out.shape == (37, 37, 1) and out.dtype == np.float32
        np.testing.assert_array_equal(out, expected)
        np.testing.assert_array_equal(evaluate(image), expected)
        assert not np.any(out == 0)


def test_none_still_pads_whatever_the_interpolation():
    """Spec ``none`` resamples nothing: a 28x28 image at 37 is normalised and zero-padded 4 before, 5 after."""
    image = fmnist_like(1)[0]
    expected = np.pad(normalized(image, FMNIST), ((4, 5), (4, 5), (0, 0)))
    for interpolation in ("nearest", "bicubic"):
        train = T.make_train_transform("none", image_size=37, interpolation=interpolation, **FMNIST)
        np.testing.assert_array_equal(train(image, np.random.default_rng(0)), expected)
        evaluate = T.make_eval_transform("none", image_size=37, crop_fraction=1.0, interpolation=interpolation,
                                         **FMNIST)
        np.testing.assert_array_equal(evaluate(image), expected)


def test_bad_interpolation_is_named():
    expected = "interpolation 'cubic' is not one of 'bilinear', 'bicubic', 'nearest', 'lanczos'"
    with pytest.raises(ValueError, match=expected):
        T.make_train_transform("resize", image_size=37, interpolation="cubic", **FMNIST)
    with pytest.raises(ValueError, match=expected):
        T.make_eval_transform("resize", image_size=37, crop_fraction=1.0, interpolation="cubic", **FMNIST)
    with pytest.raises(ValueError, match=r"op 'resize': interpolation 'area' is not one of \["):
        T.make_train_transform("resize(interpolation='area')", image_size=37, **FMNIST)


def class_images(labels, size=16):
    """Each image is constant, equal to its label: mixed pixels reveal where they came from."""
    return np.broadcast_to(np.asarray(labels, np.float32)[:, None, None, None], (len(labels), size, size, 3)).copy()


def test_mixup_targets_match_images():
    transform = T.make_batch_transform("mixup(0.8)", num_classes=10)
    labels = np.array([0, 3, 5, 9], np.int32)
    for seed in range(10):
        images, targets = transform(class_images(labels), labels, np.random.default_rng(seed))
        assert images.dtype == np.float32 and targets.shape == (4, 10) and targets.dtype == np.float32
        np.testing.assert_allclose(targets.sum(1), 1, rtol=1e-6)
        np.testing.assert_allclose(images[:, 0, 0, 0], targets @ np.arange(10), rtol=1e-5)
        assert (images == images[:, :1, :1]).all()


def test_cutmix_weights_are_pasted_areas():
    transform = T.make_batch_transform("cutmix(1.0)", num_classes=10)
    labels = np.array([1, 2, 4, 8, 6], np.int32)
    partial = 0
    for seed in range(20):
        images, targets = transform(class_images(labels), labels, np.random.default_rng(seed))
        np.testing.assert_allclose(targets.sum(1), 1, rtol=1e-6)
        pixel_share = np.stack([np.bincount(img[..., 0].astype(int).ravel(), minlength=10) / 256 for img in images])
        np.testing.assert_allclose(targets, pixel_share, atol=1e-6)
        partial += ((targets > 0) & (targets < 1)).any()
    assert partial > 10


def test_mixup_cutmix_switch_and_errors():
    transform = T.make_batch_transform("mixup(0.8)|cutmix(1.0)", num_classes=4)
    labels = np.array([0, 1, 2, 3], np.int32)
    kinds = []
    for seed in range(200):
        images, _ = transform(class_images(labels), labels, np.random.default_rng(seed))
        kinds.append("cutmix" if np.array_equal(images, np.round(images)) else "mixup")
    assert 70 < kinds.count("cutmix") < 130
    assert T.make_batch_transform("none", num_classes=4) is None and T.make_batch_transform("", num_classes=4) is None
    for spec, message in (("mixup(0)", "alpha must be a positive number"), ("mix(1)", "unknown batch op 'mix'"),
                          ("cutmix", "missing a required argument: 'alpha'")):
        with pytest.raises(ValueError, match=message):
            T.make_batch_transform(spec, num_classes=4)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\)"):
        transform(class_images(labels), labels + 1, np.random.default_rng(0))


def test_bench_input_smoke(capsys):
    from cnn_jax.tools import bench_input

    rows = bench_input.main(["--threads", "1", "2", "--images", "3", "--window", "2", "--repeats", "1",
                             "--image-size", "64"])
    assert {(r["threads"], r["path"]) for r in rows} == {(n, p) for n in (1, 2) for p in
                                                       ("decode_only", "reference", "ours", "ours_array",
                                                                         "ours_draft")}
    assert all(r["img_s"] > 0 for r in rows)
    printed = capsys.readouterr().out
    assert "machine:" in printed and "cores for 3000 img/s" in printed


def test_bench_input_trains_on_real_jpegs_and_reports_the_data_wait(capsys):
    """``--train``: the trainer runs on the photographs written as an image folder, then with the pipeline's work
    removed; each row sums the trainer's per-step metrics (the first step excluded)."""
    from cnn_jax.tools import bench_input

    rows = bench_input.main(["--train", "resnet18", "--batch", "4", "--steps", "3", "--image-size", "32",
                             "--threads", "1"])
    assert [r["run"] for r in rows] == ["real", "no_pipeline_work"]
    assert rows[0]["data"].startswith("folder:") and rows[1]["data"] == "synthetic:32x32x3:1000:16:4"
    for row in rows:
        assert row["steps"] == 2 and row["img_s"] > 0 and 0 <= row["wait_fraction"] < 1
    assert rows[1]["vs_no_pipeline_work"] == 1.0
    printed = capsys.readouterr().out
    assert "| resnet18 | 4 | real | 2 |" in printed and "JPEGs (skimage.data photographs" in printed
    with pytest.raises(ValueError, match="resnet_18"):
        bench_input.main(["--train", "resnet_18"])
