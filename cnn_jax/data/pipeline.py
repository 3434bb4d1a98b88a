"""Host-side input pipeline over in-memory arrays: deterministic, stateless in the step, sharded per process.

The batch for global step ``s`` is a pure function of ``(seed, s)``: epoch ``e = s // steps_per_epoch`` shuffles
the split with ``seed + e``, and process ``p`` of ``P`` takes the ``p``-th contiguous part of each global batch.
A resumed run therefore continues exactly where it stopped (no example repeated or skipped), and every process
reads a disjoint part of each batch.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
from collections.abc import Callable, Iterator

import numpy as np

from cnn_jax.data import fashion_mnist


@dataclasses.dataclass(frozen=True)
class ArraySplit:
    """One split held in memory: ``images`` uint8 NHWC, ``labels`` int32."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


@dataclasses.dataclass(frozen=True)
class Dataset:
    train: ArraySplit
    eval: ArraySplit
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def subset(self, max_train: int | None = None, max_eval: int | None = None) -> Dataset:
        """The first ``max_train`` / ``max_eval`` examples of each split (None keeps a split whole)."""
        def cut(split: ArraySplit, n: int | None) -> ArraySplit:
            return split if n is None else ArraySplit(split.images[:n], split.labels[:n])

        return dataclasses.replace(self, train=cut(self.train, max_train), eval=cut(self.eval, max_eval))


def load_dataset(name: str, data_dir: str | None = None, *, image_shape: tuple[int, int, int] = (28, 28, 1),
                 num_classes: int = 10, synthetic_size: int = 1024) -> Dataset:
    """Loads a dataset by name: ``fashion_mnist`` (offline IDX files) or ``synthetic`` (random, for benchmarks)."""
    if name == "fashion_mnist":
        train, test = (ArraySplit(*fashion_mnist.load(split, data_dir)) for split in ("train", "test"))
        return Dataset(train, test, 10, fashion_mnist.MEAN, fashion_mnist.STD)
    if name == "synthetic":
        rng = np.random.default_rng(0)

        def split(n: int) -> ArraySplit:
            return ArraySplit(rng.integers(0, 256, (n, *image_shape), dtype=np.uint8),
                              rng.integers(0, num_classes, n, dtype=np.int32))

        channels = image_shape[-1]
        return Dataset(split(synthetic_size), split(synthetic_size // 4), num_classes, (0.5,) * channels,
                       (0.25,) * channels)
    raise ValueError(f"unknown dataset {name!r}; expected 'fashion_mnist' or 'synthetic'")


def preprocess(images: np.ndarray, dataset: Dataset, image_size: int, augment: str, rng: np.random.Generator
               ) -> np.ndarray:
    """uint8 NHWC -> normalised float32 at ``image_size`` (zero-padded centrally), with optional augmentation.

    ``augment="crop_flip"`` is the CIFAR recipe (He et al. 2015 Sec. 4.2): pad 4, random crop, horizontal flip.
    """
    x = (images.astype(np.float32) / 255.0 - np.asarray(dataset.mean, np.float32)) / np.asarray(dataset.std, np.float32)
    height = x.shape[1]
    if image_size < height:
        raise ValueError(f"data.image_size={image_size} is smaller than the dataset's {height}x{height} images")
    pad = image_size - height
    if pad:
        x = np.pad(x, ((0, 0), (pad // 2, pad - pad // 2), (pad // 2, pad - pad // 2), (0, 0)))
    if augment == "none":
        return x
    if augment != "crop_flip":
        raise ValueError(f"unknown data.augment {augment!r}; expected 'none' or 'crop_flip'")
    padded = np.pad(x, ((0, 0), (4, 4), (4, 4), (0, 0)))
    out = np.empty_like(x)
    offsets = rng.integers(0, 9, (len(x), 2))
    flips = rng.random(len(x)) < 0.5
    for i, ((dy, dx), flip) in enumerate(zip(offsets, flips, strict=True)):
        crop = padded[i, dy : dy + image_size, dx : dx + image_size]
        out[i] = crop[:, ::-1] if flip else crop
    return out


def train_batch_indices(num_examples: int, global_batch: int, step: int, seed: int, process_index: int = 0,
                        process_count: int = 1) -> np.ndarray:
    """Indices of this process's share of the global batch at ``step`` (drop-remainder epochs)."""
    steps_per_epoch = num_examples // global_batch
    if steps_per_epoch == 0:
        raise ValueError(f"global batch {global_batch} is larger than the {num_examples} training examples")
    if global_batch % process_count:
        raise ValueError(f"global batch {global_batch} does not divide over {process_count} processes")
    epoch, position = divmod(step, steps_per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(num_examples)
    batch = order[position * global_batch : (position + 1) * global_batch]
    local = global_batch // process_count
    return batch[process_index * local : (process_index + 1) * local]


def train_batches(dataset: Dataset, *, global_batch: int, start_step: int, seed: int, image_size: int, augment: str,
                  process_index: int = 0, process_count: int = 1) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """This process's (images, labels) for steps ``start_step, start_step + 1, ...``."""
    step = start_step
    while True:
        idx = train_batch_indices(len(dataset.train), global_batch, step, seed, process_index, process_count)
        rng = np.random.default_rng([seed, step, process_index, 1])
        images = preprocess(dataset.train.images[idx], dataset, image_size, augment, rng)
        yield images, dataset.train.labels[idx]
        step += 1


def eval_batches(dataset: Dataset, *, global_batch: int, image_size: int, process_index: int = 0,
                 process_count: int = 1) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Exact evaluation: every example once; the last batch is padded and ``mask`` marks the real examples."""
    n = len(dataset.eval)
    num_batches = -(-n // global_batch)
    local = global_batch // process_count
    for b in range(num_batches):
        idx = np.arange(b * global_batch, (b + 1) * global_batch)[process_index * local : (process_index + 1) * local]
        mask = idx < n
        idx = np.where(mask, idx, 0)
        images = preprocess(dataset.eval.images[idx], dataset, image_size, "none", np.random.default_rng(0))
        yield images, dataset.eval.labels[idx], mask


def prefetch(iterator: Iterator, size: int = 2, transform: Callable = lambda x: x) -> Iterator:
    """Runs ``iterator`` (and ``transform``) in a background thread, ``size`` items ahead of the consumer."""
    items: queue.Queue = queue.Queue(maxsize=size)
    done = object()

    def worker():
        try:
            for item in iterator:
                items.put(transform(item))
        except Exception as error:  # surfaced in the consumer's thread
            items.put(error)
        items.put(done)

    threading.Thread(target=worker, daemon=True).start()
    while (item := items.get()) is not done:
        if isinstance(item, Exception):
            raise item
        yield item
