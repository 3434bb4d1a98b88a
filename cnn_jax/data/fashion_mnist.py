"""Offline Fashion-MNIST (Xiao et al. 2017) from Debian's ``dataset-fashion-mnist`` IDX files."""

from __future__ import annotations

import gzip
import os
import pathlib

import numpy as np

DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"
PREPARE_COMMAND = "apt-get install dataset-fashion-mnist"
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
# Per-pixel statistics of the 60k training images (pixel values in [0, 1]).
MEAN, STD = (0.2860,), (0.3530,)


def _idx_dims(data: bytes, path: os.PathLike) -> tuple[int, ...]:
    """The dimensions in an IDX header (LeCun's MNIST format: magic 0x00 0x00 dtype ndim, big-endian dims, data)."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file (header {data[:4]!r})")
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise ValueError(f"{path}: IDX header of {ndim} dimensions is truncated")
    return tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))


def read_idx_dims(path: os.PathLike) -> tuple[int, ...]:
    """The dimensions of a gzipped IDX file from its header alone (the first few bytes are decompressed)."""
    with gzip.open(path, "rb") as f:
        head = f.read(4)
        return _idx_dims(head + f.read(4 * head[3] if len(head) == 4 else 0), path)


def _read_idx(path: pathlib.Path) -> np.ndarray:
    """Reads a gzipped IDX file (header as in :func:`read_idx_dims`, then the data, row-major)."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = _idx_dims(data, path)
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * len(dims))
    if body.size != int(np.prod(dims)):
        raise ValueError(f"{path}: header says {dims} ({int(np.prod(dims))} bytes) but holds {body.size} bytes")
    return body.reshape(dims)


def load(split: str, data_dir: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Returns ``(images uint8 (N, 28, 28, 1), labels int32 (N,))`` for ``split`` in {"train", "test"}."""
    if split not in FILES:
        raise ValueError(f"unknown Fashion-MNIST split {split!r}; expected one of {sorted(FILES)}")
    directory = pathlib.Path(data_dir or DEFAULT_DIR)
    paths = [directory / name for name in FILES[split]]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise FileNotFoundError(
            f"Fashion-MNIST files not found in {directory} (missing {', '.join(missing)}); "
            f"install them with `{PREPARE_COMMAND}` or set data.data_dir to a directory holding the IDX .gz files"
        )
    images, labels = (_read_idx(p) for p in paths)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{paths[0]} has {images.shape[0]} images but {paths[1]} has {labels.shape[0]} labels")
    return images[..., None], labels.astype(np.int32)
