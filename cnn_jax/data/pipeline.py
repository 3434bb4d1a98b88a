"""Host-side input pipeline over random-access sources: deterministic, stateless in the step, sharded per process.

The batch for global step ``s`` is a pure function of ``(seed, s)``: epoch ``e = s // steps_per_epoch`` shuffles
the split with ``seed + e``, and process ``p`` of ``P`` takes the ``p``-th contiguous part of each global batch.
Example ``j`` of the global batch at step ``s`` is augmented with a generator seeded by ``(seed, s, j)``, so the
global batch does not depend on how many processes share it. A resumed run starts at its checkpointed step and
continues exactly where it stopped (no example repeated or skipped); the data position *is* the step.

Whole batches (read, decode, per-example transforms, stack, batch transform) are built on host threads, several
steps ahead and delivered in order (``grain.MapDataset.range(start_step, ...).map(make_batch)`` iterated with
``ReadOptions(num_threads)``); one batch per element keeps grain's per-element overhead off small images, and the
ArrayRecord reader fetches a batch's records in one parallel read. :func:`prefetch` keeps finished batches ready in
a background thread, so none of this sits on the accelerator's critical path.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import queue
import threading
from collections.abc import Callable, Iterator

import grain
import ml_collections
import numpy as np

from cnn_jax.data.sources import Dataset, Source

TrainTransform = Callable[[np.ndarray, np.random.Generator], np.ndarray]
EvalTransform = Callable[[np.ndarray], np.ndarray]
BatchTransform = Callable[[np.ndarray, np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]]
_FOREVER = 1 << 62  # length of the training stream (steps are unbounded; the loop decides when to stop)


@dataclasses.dataclass(frozen=True)
class Transforms:
    """The per-example training/evaluation transforms and the optional batch transform of a run."""

    train: TrainTransform
    eval: EvalTransform
    batch: BatchTransform | None = None


def input_stats(config: ml_collections.ConfigDict, dataset: Dataset) -> tuple[tuple, tuple, str]:
    """``(mean, std, where from)`` of the input normalisation: the input convention of the imported weights that
    ``train.init_from`` starts from (``cnn_jax.weights.preprocessing``), else the dataset's."""
    init_from = config.get("train", {}).get("init_from")
    if init_from:
        from cnn_jax.weights import store

        convention = store.read_convention(init_from)
        if convention is not None:
            if len(convention.mean) != len(dataset.mean):
                raise ValueError(f"train.init_from={init_from}: its weights expect {len(convention.mean)}-channel "
                                 f"images, data.name={config.data.name!r} has {len(dataset.mean)} channels")
            return convention.mean, convention.std, f"the input convention of train.init_from ({convention.name})"
    return tuple(dataset.mean), tuple(dataset.std), f"the mean/std of {config.data.name}"


def make_transforms(config: ml_collections.ConfigDict, dataset: Dataset,
                    stats: tuple[tuple, tuple] | None = None) -> Transforms:
    """The transforms named by ``config.data`` (``train_transform``, ``eval_transform``, ``batch_transform``,
    ``image_size``, ``interpolation`` for the train and eval resizes) with the mean/std of :func:`input_stats` and
    the crop fraction of the registry metadata (``cnn_jax.model_info``) of the model ``config.model`` builds (its
    overrides as the trainer passes them to ``create_model``: ``registry.config_overrides``). ``stats``: a
    ``(mean, std)`` to normalise with instead (the evaluation of imported weights)."""
    import cnn_jax
    from cnn_jax.data import transforms
    from cnn_jax.registry import config_overrides

    data = config.data
    mean, std = stats if stats is not None else input_stats(config, dataset)[:2]
    stats = {"mean": mean, "std": std}
    crop_fraction = cnn_jax.model_info(config.model.name, **config_overrides(config.model)).crop_fraction
    return Transforms(
        train=transforms.make_train_transform(data.train_transform, image_size=data.image_size,
                                              interpolation=data.interpolation, **stats),
        eval=transforms.make_eval_transform(data.eval_transform, image_size=data.image_size,
                                            crop_fraction=crop_fraction, interpolation=data.interpolation, **stats),
        batch=transforms.make_batch_transform(data.batch_transform, num_classes=dataset.num_classes),
    )


@functools.lru_cache(maxsize=4)
def _epoch_order(num_examples: int, seed: int, epoch: int) -> np.ndarray:
    order = np.random.default_rng([seed, epoch]).permutation(num_examples)
    order.flags.writeable = False  # shared between threads and calls
    return order


def train_batch_indices(num_examples: int, global_batch: int, step: int, seed: int, process_index: int = 0,
                        process_count: int = 1) -> np.ndarray:
    """Indices of this process's share of the global batch at ``step`` (drop-remainder epochs)."""
    steps_per_epoch = num_examples // global_batch
    if steps_per_epoch == 0:
        raise ValueError(f"global batch {global_batch} is larger than the {num_examples} training examples")
    if global_batch % process_count:
        raise ValueError(f"global batch {global_batch} does not divide over {process_count} processes")
    epoch, position = divmod(step, steps_per_epoch)
    batch = _epoch_order(num_examples, seed, epoch)[position * global_batch : (position + 1) * global_batch]
    local = global_batch // process_count
    return batch[process_index * local : (process_index + 1) * local]


def default_num_threads() -> int:
    """Host threads for reading and transforms: the CPUs this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _read(source: Source, indices: np.ndarray) -> list[tuple[np.ndarray, int]]:
    if hasattr(source, "__getitems__"):  # one batched read (the ArrayRecord reader fetches in parallel)
        return source.__getitems__(indices)
    return [source[int(i)] for i in indices]


@dataclasses.dataclass(frozen=True)
class _TrainBatch:
    """Step -> this process's ``(images, labels)``: read, per-example transform, stack, batch transform."""

    source: Source
    transform: TrainTransform
    batch_transform: BatchTransform | None
    global_batch: int
    seed: int
    process_index: int
    process_count: int

    def __call__(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        step = int(step)
        indices = train_batch_indices(len(self.source), self.global_batch, step, self.seed, self.process_index,
                                      self.process_count)
        offset = self.process_index * len(indices)  # where this share starts in the global batch
        examples = _read(self.source, indices)
        images = np.stack([self.transform(image, np.random.default_rng([self.seed, step, offset + j]))
                           for j, (image, _) in enumerate(examples)])
        labels = np.asarray([label for _, label in examples], np.int32)
        if self.batch_transform is not None:
            images, labels = self.batch_transform(images, labels,
                                                  np.random.default_rng([self.seed, step, self.process_index, 1]))
        return images, labels


@dataclasses.dataclass(frozen=True)
class _EvalBatch:
    """Batch ``b`` -> this process's ``(images, labels, mask)``; padding repeats example 0 with mask False."""

    source: Source
    transform: EvalTransform
    global_batch: int
    process_index: int
    process_count: int

    def __call__(self, batch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        local = self.global_batch // self.process_count
        start = int(batch) * self.global_batch + self.process_index * local
        positions = np.arange(start, start + local)
        mask = positions < len(self.source)
        examples = _read(self.source, np.where(mask, positions, 0))
        images = np.stack([self.transform(image) for image, _ in examples])
        return images, np.asarray([label for _, label in examples], np.int32), mask


def _parallel(dataset: grain.MapDataset, num_threads: int | None, worker_processes: int = 0) -> Iterator:
    """Iterates ``dataset`` in order, whole batches built on ``num_threads`` host threads at once, spread over
    ``worker_processes`` processes when > 0 (grain ``mp_prefetch``: Python-level transforms then scale past the
    GIL, at the cost of a few seconds to start the workers)."""
    threads = num_threads or default_num_threads()
    if worker_processes:
        threads = max(1, threads // worker_processes)
    iterable = dataset.to_iter_dataset(grain.ReadOptions(num_threads=threads, prefetch_buffer_size=threads))
    if worker_processes:
        from absl import flags

        if not flags.FLAGS.is_parsed():  # grain's workers read absl flags; launch.py has parsed them already
            flags.FLAGS.mark_as_parsed()
        iterable = iterable.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_processes))
    return iter(iterable)


def train_batches(source: Source, transform: TrainTransform, *, global_batch: int, start_step: int, seed: int,
                  batch_transform: BatchTransform | None = None, process_index: int = 0, process_count: int = 1,
                  num_threads: int | None = None, worker_processes: int = 0
                  ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """This process's ``(images, labels)`` for steps ``start_step, start_step + 1, ...``.

    Images are what ``transform`` returns (float32 HxWxC), stacked; labels are int32 ``(B,)``, or float32
    ``(B, num_classes)`` targets when ``batch_transform`` (mixup / cutmix, seeded by ``(seed, step, process)``)
    mixes them. Batches are built on ``num_threads`` threads (default: all CPUs), in order, in
    ``worker_processes`` processes when > 0 (the batches are the same either way).
    """
    if global_batch % process_count:
        raise ValueError(f"global batch {global_batch} does not divide over {process_count} processes")
    train_batch_indices(len(source), global_batch, 0, seed, process_index, process_count)  # validates the sizes
    make = _TrainBatch(source, transform, batch_transform, global_batch, seed, process_index, process_count)
    return _parallel(grain.MapDataset.range(start_step, _FOREVER).map(make), num_threads, worker_processes)


def eval_batches(source: Source, transform: EvalTransform, *, global_batch: int, process_index: int = 0,
                 process_count: int = 1, num_threads: int | None = None
                 ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Exact evaluation: every example once; the last batch is padded and ``mask`` (bool) marks the real examples.

    Batch ``b`` covers examples ``[b * global_batch, (b + 1) * global_batch)``; process ``p`` takes its ``p``-th
    contiguous part.
    """
    if global_batch % process_count:
        raise ValueError(f"eval batch {global_batch} does not divide over {process_count} processes")
    make = _EvalBatch(source, transform, global_batch, process_index, process_count)
    return _parallel(grain.MapDataset.range(-(-len(source) // global_batch)).map(make), num_threads)


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
