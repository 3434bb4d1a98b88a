"""Data sources and the input pipeline: the real TFDS imagenet2012 builder on a tiny manual download made of real
photographs, offline Fashion-MNIST through our TFDS builder, image folders, synthetic data, error messages."""

from __future__ import annotations

import gzip
import importlib.util
import io
import json
import pathlib
import subprocess
import sys
import tarfile

import numpy as np
import pytest
import skimage.data
from PIL import Image

from cnn_jax.data import fashion_mnist, pipeline, sources, transforms

REPO = pathlib.Path(__file__).resolve().parents[1]
HAS_TF = importlib.util.find_spec("tensorflow") is not None
# Runs Python with TensorFlow invisible (find_spec returns None, as on a machine without it).
NO_TF_PRELUDE = """
import importlib.machinery, sys
class _NoTF:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            return None
        return importlib.machinery.PathFinder.find_spec(name, path, target)
    @staticmethod
    def invalidate_caches():
        importlib.machinery.PathFinder.invalidate_caches()
sys.meta_path[:] = [_NoTF if f is importlib.machinery.PathFinder else f for f in sys.meta_path]
"""


def _tfds_file(path: str) -> pathlib.Path:
    import tensorflow_datasets as tfds

    return pathlib.Path(str(tfds.core.tfds_path(path)))


def _jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _photo(name: str, height: int, width: int) -> np.ndarray:
    """A real photograph from scikit-image, centre-cropped to the aspect ratio and resized to height x width."""
    image = getattr(skimage.data, name)()
    h, w = image.shape[:2]
    scale = min(h / height, w / width)
    ch, cw = int(height * scale), int(width * scale)
    top, left = (h - ch) // 2, (w - cw) // 2
    crop = Image.fromarray(image[top : top + ch, left : left + cw])
    return np.asarray(crop.resize((width, height), Image.BICUBIC))


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


# Three classes (the synsets of the first three validation images) x four photographs of various sizes; one is
# grayscale, as ~2% of ImageNet's JPEGs are.
TRAIN_PHOTOS = [
    [("astronaut", 150, 180), ("coffee", 96, 144), ("chelsea", 120, 120), ("camera", 100, 130)],
    [("rocket", 140, 100), ("hubble_deep_field", 110, 128), ("immunohistochemistry", 90, 90), ("retina", 128, 96)],
    [("colorwheel", 100, 100), ("astronaut", 80, 120), ("coffee", 160, 120), ("chelsea", 72, 96)],
]
VAL_PHOTOS = [("rocket", 100, 150), ("coffee", 120, 90), ("chelsea", 96, 96), ("astronaut", 130, 110),
              ("hubble_deep_field", 90, 140)]


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory):
    """A tiny ``imagenet2012`` manual download (the real tar-of-tars layout) prepared by the real TFDS builder.

    Returns ``(data_dir, jpegs)`` where ``jpegs`` maps file name -> (JPEG bytes, label index in labels.txt).
    """
    if not HAS_TF:
        pytest.skip("tensorflow is not installed: the stock TFDS imagenet2012 builder needs it to prepare data "
                    "(pip install -r requirements-dev.txt)")
    root = tmp_path_factory.mktemp("imagenet")
    manual, data_dir = root / "manual", root / "tfds"
    manual.mkdir()
    synsets = _tfds_file("datasets/imagenet2012/labels.txt").read_text().split()
    val_synsets = _tfds_file("datasets/imagenet2012/validation_labels.txt").read_text().split()
    jpegs: dict[str, tuple[bytes, int]] = {}
    with tarfile.open(manual / "ILSVRC2012_img_train.tar", "w") as train_tar:
        for synset, photos in zip(val_synsets[:3], TRAIN_PHOTOS, strict=True):
            inner = io.BytesIO()
            with tarfile.open(fileobj=inner, mode="w") as class_tar:
                for k, (name, h, w) in enumerate(photos):
                    file_name = f"{synset}_{k + 1}.JPEG"
                    jpegs[file_name] = (_jpeg(_photo(name, h, w)), synsets.index(synset))
                    _add(class_tar, file_name, jpegs[file_name][0])
            _add(train_tar, f"{synset}.tar", inner.getvalue())
    with tarfile.open(manual / "ILSVRC2012_img_val.tar", "w") as val_tar:
        for k, (name, h, w) in enumerate(VAL_PHOTOS):
            file_name = f"ILSVRC2012_val_{k + 1:08d}.JPEG"
            # The builder labels the sorted validation names with validation_labels.txt's lines in order.
            jpegs[file_name] = (_jpeg(_photo(name, h, w)), synsets.index(val_synsets[k]))
            _add(val_tar, file_name, jpegs[file_name][0])
    result = subprocess.run(
        [sys.executable, "-m", "cnn_jax.data.prepare", "imagenet2012", "--data_dir", str(data_dir),
         "--manual_dir", str(manual)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return data_dir, jpegs


def _file_name(source: sources.TFDSSource, index: int) -> str:
    name = source.data[index]["file_name"]
    return name.decode() if isinstance(name, bytes) else str(name)


def test_imagenet2012_builder_examples_match_the_photographs(imagenet):
    data_dir, jpegs = imagenet
    dataset = sources.load_dataset("imagenet2012", str(data_dir))
    assert (len(dataset.train), len(dataset.eval), dataset.num_classes) == (12, 5, 1000)
    assert dataset.mean == sources.IMAGENET_MEAN and dataset.image_shape == (None, None, 3)
    for source in (dataset.train, dataset.eval):
        assert isinstance(source, sources.TFDSSource)
        for i in range(len(source)):
            image, label = source[i]
            data, expected_label = jpegs[_file_name(source, i)]
            assert label == expected_label
            decoded = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
            assert image.dtype == np.uint8 and image.shape == decoded.shape
            np.testing.assert_array_equal(image, decoded)  # the same JPEG, decoded without TensorFlow


def test_imagenet2012_training_pipeline(imagenet):
    data_dir, _ = imagenet
    dataset = sources.load_dataset("imagenet2012", str(data_dir))
    train = transforms.make_train_transform("random_resized_crop,flip", image_size=48, mean=dataset.mean,
                                            std=dataset.std)
    low = (0 - np.array(dataset.mean)) / np.array(dataset.std)
    high = (1 - np.array(dataset.mean)) / np.array(dataset.std)
    source_labels = np.array([dataset.train[i][1] for i in range(len(dataset.train))])

    def run(start_step=0, steps=6, seed=0, process_index=0, process_count=1):
        stream = pipeline.train_batches(dataset.train, train, global_batch=4, start_step=start_step, seed=seed,
                                        process_index=process_index, process_count=process_count, num_threads=2)
        return [next(stream) for _ in range(steps)]

    whole = run()
    for step, (images, labels) in enumerate(whole):
        assert images.shape == (4, 48, 48, 3) and images.dtype == np.float32 and labels.dtype == np.int32
        assert np.all(images >= low - 1e-4) and np.all(images <= high + 1e-4) and images.std() > 0.1
        np.testing.assert_array_equal(labels, source_labels[pipeline.train_batch_indices(12, 4, step, seed=0)])
    # Deterministic for a seed; another seed gives other batches.
    for (a, la), (b, lb) in zip(whole, run(), strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(la, lb)
    assert not np.array_equal(whole[0][0], run(seed=1, steps=1)[0][0])
    # Two processes: disjoint halves of each global batch, identical to the single-process batch, together covering
    # the split once per epoch (3 steps of 4 from 12).
    halves = [run(process_index=p, process_count=2) for p in range(2)]
    for step in range(6):
        np.testing.assert_array_equal(np.concatenate([halves[0][step][0], halves[1][step][0]]), whole[step][0])
    epoch = [pipeline.train_batch_indices(12, 4, s, seed=0, process_index=p, process_count=2)
             for s in range(3) for p in range(2)]
    assert sorted(np.concatenate(epoch).tolist()) == list(range(12))
    # Resuming at step 3 continues exactly where the uninterrupted stream is.
    for (a, la), (b, lb) in zip(whole[3:], run(start_step=3, steps=3), strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(la, lb)


def test_imagenet2012_worker_processes_give_the_same_batches(imagenet):
    data_dir, _ = imagenet
    dataset = sources.load_dataset("imagenet2012", str(data_dir))
    train = transforms.make_train_transform("random_resized_crop,flip,randaugment(2,9)", image_size=40,
                                            mean=dataset.mean, std=dataset.std)
    batches = {}
    for workers in (0, 2):
        stream = pipeline.train_batches(dataset.train, train, global_batch=4, start_step=2, seed=5, num_threads=2,
                                        worker_processes=workers)
        batches[workers] = [next(stream) for _ in range(4)]
        stream.close()
    for (a, la), (b, lb) in zip(batches[0], batches[2], strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(la, lb)


def test_imagenet2012_exact_evaluation_and_mixup(imagenet):
    data_dir, jpegs = imagenet
    dataset = sources.load_dataset("imagenet2012", str(data_dir))
    crop = transforms.make_eval_transform("resize_center_crop", image_size=32, crop_fraction=0.875,
                                          mean=dataset.mean, std=dataset.std)
    batches = list(pipeline.eval_batches(dataset.eval, crop, global_batch=4, num_threads=2))
    assert [int(m.sum()) for _, _, m in batches] == [4, 1]
    images = np.concatenate([b[0] for b in batches])[:5]
    labels = np.concatenate([b[1] for b in batches])[:5]
    expected = [jpegs[_file_name(dataset.eval, i)][1] for i in range(5)]
    np.testing.assert_array_equal(labels, expected)
    assert images.shape == (5, 32, 32, 3)
    np.testing.assert_allclose(images[2], crop(dataset.eval[2][0]))
    # Each process scores its contiguous part of every eval batch; together they see each example once.
    shares = [list(pipeline.eval_batches(dataset.eval, crop, global_batch=4, process_index=p, process_count=2,
                                         num_threads=1)) for p in range(2)]
    assert sum(int(m.sum()) for share in shares for _, _, m in share) == 5
    np.testing.assert_array_equal(np.concatenate([shares[0][0][0], shares[1][0][0]]), batches[0][0])
    # A batch transform turns labels into soft targets that still sum to one.
    mix = transforms.make_batch_transform("mixup(0.2)", num_classes=1000)
    train = transforms.make_train_transform("random_resized_crop", image_size=32, mean=dataset.mean, std=dataset.std)
    images, targets = next(pipeline.train_batches(dataset.train, train, batch_transform=mix, global_batch=4,
                                                  start_step=0, seed=0, num_threads=1))
    assert targets.shape == (4, 1000) and targets.dtype == np.float32
    np.testing.assert_allclose(targets.sum(axis=1), 1.0, rtol=1e-6)


def _write_idx(path: pathlib.Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_builder_prepares_and_reads_without_tensorflow(tmp_path, request):
    """Our TFDS builder on a 100/20-example copy of the IDX files, in a process where TensorFlow cannot be
    imported; the prepared imagenet2012 (when the fixture ran) is read there too."""
    images, labels = fashion_mnist.load("train")
    test_images, test_labels = fashion_mnist.load("test")
    idx = tmp_path / "idx"
    idx.mkdir()
    for (image_file, label_file), (x, y) in zip(fashion_mnist.FILES.values(),
                                                 [(images[:100], labels[:100]), (test_images[:20], test_labels[:20])],
                                                 strict=True):
        _write_idx(idx / image_file, x[..., 0])
        _write_idx(idx / label_file, y)
    imagenet_dir = str(request.getfixturevalue("imagenet")[0]) if HAS_TF else ""
    script = NO_TF_PRELUDE + f"""
import json, numpy as np
from cnn_jax.data import prepare, sources
prepare.main(["fashion_mnist", "--data_dir", {str(tmp_path / "tfds")!r}, "--manual_dir", {str(idx)!r}])
d = sources.load_dataset("fashion_mnist", {str(tmp_path / "tfds")!r})
out = {{"sizes": [len(d.train), len(d.eval)], "labels": [d.train[i][1] for i in range(100)],
       "sum": int(sum(int(d.train[i][0].astype(np.int64).sum()) for i in range(100))),
       "test_labels": [d.eval[i][1] for i in range(20)], "shape": list(d.train[0][0].shape)}}
if {imagenet_dir!r}:
    inet = sources.load_dataset("imagenet2012", {imagenet_dir!r})
    out["imagenet"] = [int(inet.train[i][0].sum()) for i in range(len(inet.train))]
import importlib.util
out["tf_visible"] = importlib.util.find_spec("tensorflow") is not None
print(json.dumps(out))
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert not out["tf_visible"]
    assert out["sizes"] == [100, 20] and out["shape"] == [28, 28, 1]
    assert out["labels"] == labels[:100].tolist() and out["test_labels"] == test_labels[:20].tolist()
    assert out["sum"] == int(images[:100].astype(np.int64).sum())
    if HAS_TF:
        inet = sources.load_dataset("imagenet2012", imagenet_dir)
        assert out["imagenet"] == [int(inet.train[i][0].sum()) for i in range(len(inet.train))]


def test_fashion_mnist_offline_matches_idx_files():
    """The default data directory's Fashion-MNIST (prepared from Debian's files on first use, then decoded once)."""
    dataset = sources.load_dataset("fashion_mnist")
    images, labels = fashion_mnist.load("train")
    test_images, test_labels = fashion_mnist.load("test")
    assert (len(dataset.train), len(dataset.eval), dataset.num_classes) == (60000, 10000, 10)
    assert dataset.image_shape == (28, 28, 1) and dataset.mean == fashion_mnist.MEAN
    np.testing.assert_array_equal(dataset.train.labels, labels)  # IDX order kept
    np.testing.assert_array_equal(dataset.eval.labels, test_labels)
    for i in (0, 1, 31337, 59999):
        np.testing.assert_array_equal(dataset.train[i][0], images[i])
    np.testing.assert_array_equal(dataset.eval[9999][0], test_images[9999])
    # "none" on 28x28 at 32: normalised, then zero-padded by 2 on each side.
    eval_crop = transforms.make_eval_transform("none", image_size=32, crop_fraction=1.0, mean=dataset.mean,
                                               std=dataset.std)
    x, y, mask = next(pipeline.eval_batches(dataset.eval, eval_crop, global_batch=8, num_threads=1))
    expected = (test_images[:8] / 255.0 - fashion_mnist.MEAN[0]) / fashion_mnist.STD[0]
    np.testing.assert_allclose(x[:, 2:30, 2:30], expected, rtol=1e-5, atol=1e-5)
    assert np.all(x[:, :2] == 0) and mask.all() and y.tolist() == test_labels[:8].tolist()


def test_efficientnet_proxy_resolution_is_a_resize_of_the_images():
    """The compound-scaling proxy at image_size 37, through the trainer's ``make_transforms``: train and eval images
    are the real Fashion-MNIST examples resized (bicubic) to 37x37 and normalised, not zero-padded (the border is the
    image's background, never the pad value 0)."""
    import cnn_jax
    from experiments.fashion_mnist.efficientnet_phi import get_config

    config = get_config()
    config.data.image_size = 37
    dataset = sources.load_dataset("fashion_mnist")
    made = pipeline.make_transforms(config, dataset)
    padded = transforms.make_eval_transform("none", image_size=37, crop_fraction=1.0, mean=dataset.mean,
                                            std=dataset.std)
    for split, transform in (("train", lambda image: made.train(image, np.random.default_rng(0))),
                             ("eval", made.eval)):
        for index in (0, 1, 4321):
            image = getattr(dataset, split)[index][0]
            resized = np.asarray(Image.fromarray(image[..., 0]).resize((37, 37), Image.Resampling.BICUBIC))
            expected = (resized[..., None].astype(np.float32) / 255.0 - np.float32(dataset.mean)) / np.float32(
                dataset.std)
            out = transform(image)
            assert out.shape == (37, 37, 1) and out.dtype == np.float32
            np.testing.assert_array_equal(out, expected)
            assert not np.any(out == 0)
            assert np.all(padded(image)[:4] == 0)  # what the proxy did before: a 4-pixel empty top border
    # The eval crop fraction is that of the configured model (phi, gamma), not of the registry's default phi = 1.
    config.data.eval_transform = "resize_center_crop"
    config.model.phi = 2.0
    crop_fraction = cnn_jax.model_info("efficientnet_phi", phi=2.0).crop_fraction  # 296 / 328: resize to 41
    assert crop_fraction != cnn_jax.model_info("efficientnet_phi").crop_fraction  # 258 / 290: resize to 42
    expected = transforms.make_eval_transform("resize_center_crop", image_size=37, crop_fraction=crop_fraction,
                                              mean=dataset.mean, std=dataset.std)
    image = dataset.eval[0][0]
    np.testing.assert_array_equal(pipeline.make_transforms(config, dataset).eval(image), expected(image))


def test_image_folder_source(tmp_path):
    photos = {"cat": ["chelsea", "cat"], "cup": ["coffee"], "space": ["rocket", "hubble_deep_field", "astronaut"]}
    for split in ("train", "val"):
        for label, names in photos.items():
            (tmp_path / split / label).mkdir(parents=True)
            for k, name in enumerate(names):
                image = _photo(name, 40 + 8 * k, 56)
                Image.fromarray(image).save(tmp_path / split / label / f"{k}.{'png' if k % 2 else 'jpg'}")
    (tmp_path / "train" / "cup" / "notes.txt").write_text("not an image")
    dataset = sources.load_dataset(f"folder:{tmp_path}")
    assert dataset.num_classes == 3 and len(dataset.train) == len(dataset.eval) == 6
    assert [dataset.train[i][1] for i in range(6)] == [0, 0, 1, 2, 2, 2]  # classes sorted: cat, cup, space
    np.testing.assert_array_equal(dataset.train[4][0], _photo("hubble_deep_field", 48, 56))  # space/1.png, lossless
    assert dataset.train[3][0].shape == (40, 56, 3) and dataset.train[5][0].shape == (56, 56, 3)
    crop = transforms.make_eval_transform("resize_center_crop", image_size=24, crop_fraction=0.875,
                                          mean=dataset.mean, std=dataset.std)
    batches = list(pipeline.eval_batches(dataset.eval, crop, global_batch=4, num_threads=2))
    assert [b[0].shape for b in batches] == [(4, 24, 24, 3)] * 2 and [int(b[2].sum()) for b in batches] == [4, 2]
    (tmp_path / "val" / "dog").mkdir()
    with pytest.raises(ValueError, match=r"val has class directories \['dog'\]"):
        sources.load_dataset(f"folder:{tmp_path}")


def test_synthetic_source_any_shape_is_deterministic():
    dataset = sources.load_dataset("synthetic:40x30x3:7:50:9")
    assert (len(dataset.train), len(dataset.eval), dataset.num_classes, dataset.channels) == (50, 9, 7, 3)
    image, label = dataset.train[17]
    assert image.shape == (40, 30, 3) and image.dtype == np.uint8 and 0 <= label < 7
    np.testing.assert_array_equal(image, sources.load_dataset("synthetic:40x30x3:7:50:9").train[17][0])
    assert sources.load_dataset("synthetic").image_shape == (28, 28, 1)
    with pytest.raises(ValueError, match="synthetic:HxWxC"):
        sources.load_dataset("synthetic:40x30")
    subset = dataset.subset(max_train=20, max_eval=100)
    assert len(subset.train) == 20 and len(subset.eval) == 9
    with pytest.raises(IndexError):
        subset.train[20]


def test_missing_datasets_name_the_directory_and_the_command(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        sources.load_dataset("imagenet2012", str(tmp_path))
    message = str(error.value)
    assert str(tmp_path) in message
    assert f"python -m cnn_jax.data.prepare imagenet2012 --data_dir {tmp_path} --manual_dir" in message
    assert "ILSVRC2012_img_train.tar" in message
    with pytest.raises(FileNotFoundError) as error:
        sources.load_dataset("fashion_mnist", str(tmp_path), manual_dir=str(tmp_path / "nowhere"))
    message = str(error.value)
    assert str(tmp_path / "nowhere") in message and "apt-get install dataset-fashion-mnist" in message
    assert f"python -m cnn_jax.data.prepare fashion_mnist --data_dir {tmp_path}" in message
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nothing")):
        sources.load_dataset(f"folder:{tmp_path / 'nothing'}")
    with pytest.raises(ValueError, match="unknown dataset 'imagenet2013'"):
        sources.load_dataset("imagenet2013", str(tmp_path))
