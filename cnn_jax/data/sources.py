"""Random-access data sources by name: TFDS datasets (ArrayRecord), offline Fashion-MNIST, image folders, synthetic.

Every source is a sequence of ``(image uint8 HxWxC, label int)`` with ``len`` and ``source[i]``; the pipeline
(:mod:`cnn_jax.data.pipeline`) decides which indices each process reads at each step. TFDS datasets are read with
``tfds`` data sources (ArrayRecord files, random access, decoded with PIL: no TensorFlow on the training hosts).

Names understood by :func:`load_dataset`:

- any TFDS image-classification dataset: ``imagenet2012``, ``cifar10``, ``cifar100``, ``mnist``, ``imagenette``,
  ... (``name:version`` works too); prepared beforehand as ArrayRecord with ``python -m cnn_jax.data.prepare``;
- ``fashion_mnist``: the stock TFDS dataset when prepared, else :class:`~cnn_jax.data.tfds_builders.FashionMnistLocal`
  built (on first use, offline, in seconds) from Debian's ``dataset-fashion-mnist`` IDX files;
- ``folder:ROOT``: ``ROOT/<split>/<class>/<image>`` (class-per-directory, classes sorted by name);
- ``synthetic`` or ``synthetic:HxWxC[:classes[:train_size[:eval_size]]]``: random images of any shape.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import logging
import os
import pathlib
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Protocol

import numpy as np

from cnn_jax.data import fashion_mnist

# Per-channel statistics of pixel values in [0, 1].
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class TFDSDefaults:
    """Split names and normalisation statistics (of the training split) for a TFDS dataset, and the published
    split sizes (TFDS catalog) that :func:`describe_dataset` reports for a dataset not prepared on this machine."""

    train_split: str
    eval_split: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    split_sizes: Mapping[str, int] = dataclasses.field(default_factory=dict)


# Statistics: ImageNet's are torchvision's; CIFAR's are computed over the 50k training images (pixels in [0, 1]);
# MNIST's are the customary 0.1307/0.3081; Imagenette is an ImageNet subset and uses ImageNet's.
TFDS_DATASETS: dict[str, TFDSDefaults] = {
    "imagenet2012": TFDSDefaults("train", "validation", IMAGENET_MEAN, IMAGENET_STD,
                                 {"train": 1_281_167, "validation": 50_000}),
    "imagenette": TFDSDefaults("train", "validation", IMAGENET_MEAN, IMAGENET_STD,
                               {"train": 9_469, "validation": 3_925}),
    "cifar10": TFDSDefaults("train", "test", (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
                            {"train": 50_000, "test": 10_000}),
    "cifar100": TFDSDefaults("train", "test", (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762),
                             {"train": 50_000, "test": 10_000}),
    "mnist": TFDSDefaults("train", "test", (0.1307,), (0.3081,), {"train": 60_000, "test": 10_000}),
    "fashion_mnist": TFDSDefaults("train", "test", fashion_mnist.MEAN, fashion_mnist.STD,
                                  {"train": 60_000, "test": 10_000}),
}
MANUAL_DOWNLOADS = {"imagenet2012": "a directory holding ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar"}
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
# Splits of fixed-shape images that fit in this many bytes decoded (Fashion-MNIST 47 MB, CIFAR 150 MB) are decoded
# once, kept in memory and saved next to the prepared data (``cnn_jax_decoded/``), so later runs load them at once.
IN_MEMORY_LIMIT_BYTES = 1 << 30


class Source(Protocol):
    """A random-access split: ``len(source)`` examples, ``source[i] -> (image uint8 HxWxC, label)``."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]: ...


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A training and an evaluation split with what preprocessing needs to know about them."""

    name: str
    train: Source
    eval: Source
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    image_shape: tuple[int | None, int | None, int]  # (H, W, C); None where sizes vary (ImageNet)

    @property
    def channels(self) -> int:
        return self.image_shape[-1]

    def subset(self, max_train: int | None = None, max_eval: int | None = None) -> Dataset:
        """The first ``max_train`` / ``max_eval`` examples of each split (None keeps a split whole)."""
        def cut(source: Source, n: int | None) -> Source:
            return source if n is None or n >= len(source) else Head(source, n)

        return dataclasses.replace(self, train=cut(self.train, max_train), eval=cut(self.eval, max_eval))


@dataclasses.dataclass(frozen=True)
class DatasetMetadata:
    """What :func:`load_dataset` would return, found without reading an example (:func:`describe_dataset`).

    ``problem`` is None when :func:`load_dataset` would succeed, else why it would fail (naming the config key and
    the directory). Sizes, classes and shape are given wherever they are known without the data, else None;
    ``counts_from`` says where the sizes come from ("dataset_info.json", "IDX headers", "published split sizes",
    "synthetic spec", "image files").
    """

    name: str
    location: str  # where the data is, or where it was looked for
    num_train: int | None
    num_eval: int | None
    num_classes: int | None
    image_shape: tuple[int | None, int | None, int] | None
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    counts_from: str | None = None
    note: str | None = None  # e.g. Fashion-MNIST prepared on first use
    problem: str | None = None

    @property
    def found(self) -> bool:
        return self.problem is None

    def subset(self, max_train: int | None = None, max_eval: int | None = None) -> DatasetMetadata:
        """The sizes :meth:`Dataset.subset` would leave."""
        def cut(n: int | None, limit: int | None) -> int | None:
            if limit is not None and limit < 1:
                raise ValueError(f"a subset needs at least one example, got {limit}")
            return n if n is None or limit is None else min(n, limit)

        return dataclasses.replace(self, num_train=cut(self.num_train, max_train),
                                   num_eval=cut(self.num_eval, max_eval))


class Head:
    """The first ``n`` examples of ``source``."""

    def __init__(self, source: Source, n: int):
        if n < 1:
            raise ValueError(f"a subset needs at least one example, got {n}")
        self.source, self.n = source, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        if not 0 <= index < self.n:
            raise IndexError(f"index {index} out of range for {self.n} examples")
        return self.source[index]

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[np.ndarray, int]]:
        if len(indices) and not 0 <= min(indices) <= max(indices) < self.n:
            raise IndexError(f"indices {min(indices)}..{max(indices)} out of range for {self.n} examples")
        if hasattr(self.source, "__getitems__"):
            return self.source.__getitems__(indices)
        return [self.source[int(i)] for i in indices]


class ArraySource:
    """Examples held in memory: ``images`` uint8 NHWC, ``labels`` int."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images, self.labels = images, np.asarray(labels, np.int32)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        return self.images[index], int(self.labels[index])


class TFDSSource:
    """A prepared TFDS split read through ``builder.as_data_source`` (ArrayRecord, random access, no TensorFlow)."""

    def __init__(self, builder, split: str):
        image_key, label_key = builder.info.supervised_keys or ("image", "label")
        self.image_key, self.label_key = image_key, label_key
        self.data = builder.as_data_source(split=split)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        example = self.data[int(index)]
        return example[self.image_key], int(example[self.label_key])

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[np.ndarray, int]]:
        """Several examples in one ArrayRecord read (its reader fetches them in parallel)."""
        examples = self.data.__getitems__([int(i) for i in indices])
        return [(e[self.image_key], int(e[self.label_key])) for e in examples]


class FolderSource:
    """Images in class-per-directory layout: ``root/<class>/<file>``, classes and files in sorted order."""

    def __init__(self, root: str | os.PathLike, classes: Sequence[str] | None = None):
        root = pathlib.Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"image folder {root} does not exist; expected {root}/<class>/<image files>")
        found = sorted(d.name for d in root.iterdir() if d.is_dir())
        if classes is None:
            classes = found
        elif unknown := sorted(set(found) - set(classes)):
            raise ValueError(f"{root} has class directories {unknown} that the training split does not have")
        self.root, self.classes = root, tuple(classes)
        self.files: list[tuple[pathlib.Path, int]] = []
        for label, name in enumerate(self.classes):
            if (root / name).is_dir():
                self.files += [(p, label) for p in sorted((root / name).iterdir())
                               if p.suffix.lower() in IMAGE_EXTENSIONS]
        if not self.files:
            raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) found under {root}/<class>/")

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        from PIL import Image

        path, label = self.files[index]
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB")), label


class SyntheticSource:
    """Random uint8 images and labels; example ``i`` is a pure function of ``(seed, i)`` (nothing is stored)."""

    def __init__(self, shape: tuple[int, int, int], num_classes: int, size: int, seed: int):
        self.shape, self.num_classes, self.size, self.seed = shape, num_classes, size, seed

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} out of range for {self.size} examples")
        rng = np.random.default_rng([self.seed, index])
        return rng.integers(0, 256, self.shape, dtype=np.uint8), int(rng.integers(self.num_classes))


def default_data_dir() -> str:
    """TFDS's data directory: ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``."""
    return os.environ.get("TFDS_DATA_DIR") or os.path.expanduser("~/tensorflow_datasets")


def prepare_command(name: str, data_dir: str | None = None, manual_dir: str | None = None) -> str:
    """The shell command that prepares ``name`` for :func:`load_dataset`."""
    command = f"python -m cnn_jax.data.prepare {name} --data_dir {data_dir or default_data_dir()}"
    if manual_dir or name in MANUAL_DOWNLOADS:
        command += f" --manual_dir {manual_dir or 'DIR'}"
    return command


def load_dataset(name: str, data_dir: str | None = None, *, manual_dir: str | None = None,
                 train_split: str | None = None, eval_split: str | None = None) -> Dataset:
    """The dataset ``name`` (see the module docstring) with its training and evaluation splits.

    ``data_dir`` is TFDS's data directory (default :func:`default_data_dir`); ``manual_dir`` holds manually
    downloaded files (Fashion-MNIST's IDX files, default Debian's directory). Splits default to the dataset's own
    (``train`` and ``test``/``validation``) and accept TFDS slicing (``train[:90%]``).
    """
    if name == "synthetic" or name.startswith("synthetic:"):
        return _synthetic(name)
    if name.startswith("folder:"):
        return _folder(name, train_split or "train", eval_split or "val")
    return _tfds(name, data_dir or default_data_dir(), manual_dir, train_split, eval_split)


def describe_dataset(name: str, data_dir: str | None = None, *, manual_dir: str | None = None,
                     train_split: str | None = None, eval_split: str | None = None) -> DatasetMetadata:
    """What :func:`load_dataset` with these arguments would return, without reading or preparing any data: TFDS
    metadata (``dataset_info.json``, the builder's features), Fashion-MNIST's IDX headers, a folder's file list."""
    if name == "synthetic" or name.startswith("synthetic:") or name.startswith("folder:"):
        try:
            dataset = load_dataset(name, train_split=train_split, eval_split=eval_split)
        except (FileNotFoundError, ValueError) as error:
            return DatasetMetadata(name, name.partition(":")[2], None, None, None, None, None, None,
                                   problem=str(error))
        synthetic = name.startswith("synthetic")
        return DatasetMetadata(name, "generated" if synthetic else name[len("folder:"):], len(dataset.train),
                               len(dataset.eval), dataset.num_classes, dataset.image_shape, dataset.mean, dataset.std,
                               counts_from="synthetic spec" if synthetic else "image files")
    return _describe_tfds(name, data_dir or default_data_dir(), manual_dir, train_split, eval_split)


def _describe_tfds(name: str, data_dir: str, manual_dir: str | None, train_split: str | None,
                   eval_split: str | None) -> DatasetMetadata:
    from cnn_jax.data.tfds_builders import FashionMnistLocal

    base = name.split(":")[0]
    problem = note = None
    try:
        if base == "fashion_mnist":
            builder = _fashion_mnist_builder(name, data_dir, manual_dir, prepare=False)
        else:
            builder = _named_builder(name, data_dir)
            if not builder.is_prepared():
                problem = _not_prepared_message(name, builder, data_dir, manual_dir)
    except ValueError as error:  # not a TFDS name
        return DatasetMetadata(name, data_dir, None, None, None, None, None, None, problem=str(error))
    except FileNotFoundError as error:  # Fashion-MNIST: neither prepared nor its IDX files
        problem, builder = str(error), FashionMnistLocal(data_dir=data_dir, file_format="array_record")
    try:
        shape, num_classes = _image_features(name, builder.info)
    except ValueError as error:
        return DatasetMetadata(name, builder.data_dir, None, None, None, None, None, None, problem=str(error))
    defaults = _defaults(base, shape[-1])
    location, counts_from = builder.data_dir, None
    if builder.is_prepared():
        sizes = {split: info.num_examples for split, info in builder.info.splits.items()}
        counts_from = "dataset_info.json"
        if "array_record" not in {f.value for f in builder.info.available_file_formats()}:
            problem = _no_random_access_message(name, builder, data_dir, manual_dir)
    elif problem is None:  # Fashion-MNIST with its IDX files: load_dataset prepares it first
        location = manual_dir or fashion_mnist.DEFAULT_DIR
        sizes = {split: fashion_mnist.read_idx_dims(pathlib.Path(location) / files[0])[0]
                 for split, files in fashion_mnist.FILES.items()}
        counts_from, note = "IDX headers", f"prepared into {builder.data_dir} on first use (about 15 s)"
    else:
        sizes = dict(defaults.split_sizes)
        counts_from = "published split sizes" if sizes else None
    counts = []
    for split in (train_split or defaults.train_split, eval_split or defaults.eval_split):
        try:
            counts.append(_split_size(split, sizes) if sizes else None)
        except ValueError:
            counts.append(None)
            problem = problem or f"dataset {name!r} has no split {split!r}; it has {sorted(sizes)}"
    return DatasetMetadata(name, location, *counts, num_classes, shape, defaults.mean, defaults.std,
                           counts_from=counts_from, note=note, problem=problem)


def _split_size(split: str, sizes: Mapping[str, int]) -> int:
    """Examples in a TFDS split spec (``train``, ``train[:90%]``, ``train+validation``) given the split sizes."""
    from tensorflow_datasets.core import ReadInstruction, SplitInfo

    infos = {name: SplitInfo(name=name, shard_lengths=[size], num_bytes=0) for name, size in sizes.items()}
    return sum((part.to if part.to is not None else sizes[part.splitname]) - (part.from_ or 0)
               for part in ReadInstruction.from_spec(split).to_absolute(infos))


def _synthetic(name: str) -> Dataset:
    fields = name.split(":")[1:]
    try:
        shape = tuple(int(x) for x in fields[0].split("x")) if fields else (28, 28, 1)
        given = [int(x) for x in fields[1:]]
        num_classes, train_size, eval_size = (given + [10, 1024, 256][len(given):])[:3]
        if len(shape) != 3 or len(fields) > 4 or min(*shape, num_classes, train_size, eval_size) < 1:
            raise ValueError
    except ValueError:
        raise ValueError(f"data.name={name!r}: expected 'synthetic' or 'synthetic:HxWxC[:classes[:train[:eval]]]' "
                         "with positive integers, e.g. 'synthetic:224x224x3:1000:4096:512'") from None
    channels = shape[-1]
    return Dataset(name, SyntheticSource(shape, num_classes, train_size, seed=0),
                   SyntheticSource(shape, num_classes, eval_size, seed=1), num_classes, (0.5,) * channels,
                   (0.25,) * channels, shape)


def _folder(name: str, train_split: str, eval_split: str) -> Dataset:
    root = pathlib.Path(name[len("folder:"):]).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"data.name={name!r}: directory {root} does not exist; expected "
                                f"{root}/{train_split}/<class>/<image> and {root}/{eval_split}/<class>/<image>")
    train = FolderSource(root / train_split)
    evaluation = FolderSource(root / eval_split, classes=train.classes)
    # Natural RGB photographs: ImageNet's statistics (compute your own for other kinds of images).
    return Dataset(name, train, evaluation, len(train.classes), IMAGENET_MEAN, IMAGENET_STD, (None, None, 3))


def _tfds(name: str, data_dir: str, manual_dir: str | None, train_split: str | None,
          eval_split: str | None) -> Dataset:
    base = name.split(":")[0]
    if base == "fashion_mnist":
        builder = _fashion_mnist_builder(name, data_dir, manual_dir)
    else:
        builder = _named_builder(name, data_dir)
        if not builder.is_prepared():
            raise FileNotFoundError(_not_prepared_message(name, builder, data_dir, manual_dir))
    info = builder.info
    shape, num_classes = _image_features(name, info)
    if base not in TFDS_DATASETS:
        logging.warning("no statistics recorded for %s: normalising with mean 0.5, std 0.25", name)
    defaults = _defaults(base, shape[-1])
    sources = []
    for split in (train_split or defaults.train_split, eval_split or defaults.eval_split):
        try:
            source = TFDSSource(builder, split)
        except NotImplementedError as error:  # prepared as TFRecord only
            raise FileNotFoundError(_no_random_access_message(name, builder, data_dir, manual_dir)) from error
        except (KeyError, ValueError) as error:
            raise ValueError(f"dataset {name!r} has no split {split!r}; it has {sorted(info.splits)}") from error
        if None not in shape and int(np.prod(shape)) * len(source) <= IN_MEMORY_LIMIT_BYTES:
            source = _in_memory(source, shape, _cache_path(builder.data_dir, split))
        sources.append(source)
    return Dataset(name, sources[0], sources[1], num_classes, defaults.mean, defaults.std, shape)


def _named_builder(name: str, data_dir: str):
    """TFDS's builder of ``name`` (prepared or not); a ValueError for a name TFDS does not know."""
    import tensorflow_datasets as tfds

    try:
        return tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise ValueError(f"unknown dataset {name!r}: not a TFDS dataset, 'synthetic[:HxWxC...]' or "
                         f"'folder:ROOT' (TFDS knows e.g. {', '.join(sorted(TFDS_DATASETS))})") from None


def _not_prepared_message(name: str, builder, data_dir: str, manual_dir: str | None) -> str:
    base = name.split(":")[0]
    return (f"dataset {name!r} is not prepared: searched {builder.data_dir} under {data_dir} (data.data_dir). "
            f"Prepare it with `{prepare_command(base, data_dir, manual_dir)}`"
            + (f" (--manual_dir: {MANUAL_DOWNLOADS[base]})" if base in MANUAL_DOWNLOADS else ""))


def _no_random_access_message(name: str, builder, data_dir: str, manual_dir: str | None) -> str:
    return (f"dataset {name!r} in {builder.data_dir} is stored as {builder.info.file_format.value}, which has no "
            f"random access; prepare it as ArrayRecord with "
            f"`{prepare_command(name.split(':')[0], data_dir, manual_dir)}` "
            "(or `tfds build ... --file_format=array_record`)")


def _image_features(name: str, info) -> tuple[tuple[int | None, ...], int]:
    """(image shape HxWxC, number of classes) from a TFDS ``DatasetInfo``'s features (known before preparing)."""
    image_key, label_key = info.supervised_keys or ("image", "label")
    image_feature, label_feature = info.features[image_key], info.features[label_key]
    shape = tuple(image_feature.shape)
    if len(shape) != 3 or not hasattr(label_feature, "num_classes"):
        raise ValueError(f"dataset {name!r} is not an image-classification dataset: {image_key} has shape {shape}, "
                         f"{label_key} is {type(label_feature).__name__} (expected HxWxC images and a ClassLabel)")
    return shape, label_feature.num_classes


def _defaults(base: str, channels: int) -> TFDSDefaults:
    """The recorded defaults of a TFDS dataset; for others the usual splits and a neutral normalisation."""
    return TFDS_DATASETS.get(base) or TFDSDefaults("train", "test", (0.5,) * channels, (0.25,) * channels)


def _cache_path(directory: str, split: str) -> pathlib.Path | None:
    if "://" in directory:  # remote (gs://): decode into memory, no local side files
        return None
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", split)
    return pathlib.Path(directory) / "cnn_jax_decoded" / f"{safe}-{hashlib.sha1(split.encode()).hexdigest()[:8]}.npz"


@contextlib.contextmanager
def _file_lock(path: pathlib.Path | None) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` (processes preparing or decoding the same data take turns); no lock
    where ``path`` is None or cannot be created (a read-only or remote data directory)."""
    if path is None:
        yield
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "w")  # noqa: SIM115 - closed below
    except OSError:
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _in_memory(source: TFDSSource, shape: tuple[int, ...], cache: pathlib.Path | None) -> ArraySource:
    """The whole split decoded into memory; read from / written to ``cache`` when given (best effort: a read-only
    data directory just means decoding again next time)."""
    with _file_lock(cache and cache.with_name(f".{cache.name}.lock")):
        if cache is not None and cache.exists():
            with np.load(cache) as saved:
                if saved["images"].shape == (len(source), *shape):
                    return ArraySource(saved["images"], saved["labels"])
        images, labels = np.empty((len(source), *shape), np.uint8), np.empty(len(source), np.int32)
        chunk = 4096
        for start in range(0, len(source), chunk):
            for i, (image, label) in enumerate(source.__getitems__(range(start, min(start + chunk, len(source))))):
                images[start + i], labels[start + i] = image, label
        if cache is None:
            return ArraySource(images, labels)
        try:
            partial = cache.with_name(f"{cache.name}.{os.getpid()}.tmp.npz")
            np.savez(partial, images=images, labels=labels)
            os.replace(partial, cache)  # atomic: readers without the lock see no half-written file
        except OSError as error:
            logging.warning("could not save decoded %s (%s); it will be decoded again next time", cache, error)
        return ArraySource(images, labels)


def _fashion_mnist_builder(name: str, data_dir: str, manual_dir: str | None, *, prepare: bool = True):
    """The stock ``fashion_mnist`` when it is prepared as ArrayRecord, else the local builder, prepared here from
    the IDX files if it is not yet (``prepare=False``: returned unprepared). Without either, FileNotFoundError."""
    import tensorflow_datasets as tfds

    from cnn_jax.data.tfds_builders import FashionMnistLocal

    stock = tfds.builder(name, data_dir=data_dir)
    if stock.is_prepared() and "array_record" in {f.value for f in stock.info.available_file_formats()}:
        return stock
    builder = FashionMnistLocal(data_dir=data_dir, file_format="array_record")
    if builder.is_prepared():
        return builder
    idx_dir = manual_dir or fashion_mnist.DEFAULT_DIR
    missing = [n for pair in fashion_mnist.FILES.values() for n in pair if not os.path.exists(os.path.join(idx_dir, n))]
    if missing:
        idx_key = "data.manual_dir" if manual_dir else "the default of data.manual_dir"
        raise FileNotFoundError(
            f"Fashion-MNIST is not prepared in {builder.data_dir} (data.data_dir; nor the stock fashion_mnist in "
            f"{stock.data_dir}), and its IDX files are missing from {idx_dir} ({idx_key}: {', '.join(missing)}). "
            f"Install them with `{fashion_mnist.PREPARE_COMMAND}`, then prepare with "
            f"`{prepare_command('fashion_mnist', data_dir, manual_dir)}` (or let training prepare it on first use)")
    return prepare_locked(builder, manual_dir=idx_dir) if prepare else builder


def prepare_locked(builder, *, manual_dir: str | None = None):
    """``builder.download_and_prepare`` under a file lock in its data directory (concurrent test workers or
    processes of one host prepare once; the others wait and reuse the result). Returns a fresh builder."""
    import tensorflow_datasets as tfds

    root = builder.data_dir_root
    with _file_lock(None if "://" in str(root) else pathlib.Path(root) / f".{builder.name}.prepare.lock"):
        builder = type(builder)(data_dir=str(root), file_format="array_record", config=builder.builder_config,
                                version=str(builder.version))
        if not builder.is_prepared():
            logging.warning("preparing %s in %s from %s", builder.name, builder.data_dir, manual_dir)
            builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
            builder = type(builder)(data_dir=str(root), file_format="array_record", config=builder.builder_config,
                                    version=str(builder.version))
    return builder
