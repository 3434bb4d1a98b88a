"""Readers of source checkpoints: PyTorch state dicts (``.pth``/``.pt``/``.safetensors``) and Keras 3
``.weights.h5`` files of ``keras.applications`` models, as flat ``{name: numpy array}`` dicts.

Keras: a Keras 3 ``.weights.h5`` file names its variables by class and position (``layers/conv2d_3/vars/0``),
not by layer name, so it cannot be mapped without the model's structure. The reader therefore builds the named
``keras.applications`` model (``weights=None``: no download) and lets Keras load the file into it, then reads each
layer's variables by layer and variable name (``conv2_block1_1_conv/kernel``, ``conv1_bn/moving_mean``). A file
that does not fit the application fails inside Keras, and the error names the file and the application.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import re
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

# Entries of a PyTorch state dict that carry no model state.
TORCH_IGNORED_SUFFIXES = (".num_batches_tracked",)
# Wrappers that training scripts put around a state dict (timm's train.py: "state_dict"; others: "model").
TORCH_WRAPPER_KEYS = ("state_dict", "model", "module")


@dataclasses.dataclass
class Source:
    """Tensors of one source checkpoint.

    Attributes:
      layout: "torch" (OIHW convs, (out, in) linears) or "keras" (HWIO convs, (in, out) dense kernels).
      tensors: name -> float32 array (PyTorch: state-dict keys; Keras: ``layer/variable``).
      path: the file read.
      ignored: names dropped on reading because they hold no model state (``num_batches_tracked``).
      bn_eps: Keras BatchNorm epsilon per layer name (PyTorch checkpoints do not store it).
      layers_by_class: Keras layer names per class, in model order.
      preprocessing: Keras preprocessing layers inside the model (rescaling/normalization), with their values.
    """

    layout: str
    tensors: dict[str, np.ndarray]
    path: str
    ignored: list[str] = dataclasses.field(default_factory=list)
    bn_eps: dict[str, float] = dataclasses.field(default_factory=dict)
    layers_by_class: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    preprocessing: list[dict[str, Any]] = dataclasses.field(default_factory=list)


def to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # torch.Tensor (bfloat16/half are upcast: numpy has no bfloat16)
        value = value.detach().cpu().float().numpy()
    return np.asarray(value, dtype=np.float32)


def read_torch(path: str | pathlib.Path) -> Source:
    """A PyTorch state dict from ``.pth``/``.pt`` (``torch.load(weights_only=True)``) or ``.safetensors``.

    Accepts a bare state dict or one wrapped under ``state_dict``/``model``/``module``; a ``module.`` prefix
    (``DataParallel``) is stripped.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; expected a PyTorch state dict (.pth, .pt or .safetensors)")
    if path.suffix == ".safetensors":
        from safetensors.numpy import load_file

        raw: dict[str, Any] = load_file(str(path))
    elif path.suffix in (".pth", ".pt", ".bin", ".ckpt"):
        import torch

        try:
            raw = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as error:  # pickle/zip errors of a damaged or foreign file
            raise ValueError(f"{path}: torch.load(weights_only=True) failed ({type(error).__name__}: {error}); "
                             "expected a state dict saved with torch.save(model.state_dict(), path)") from error
    else:
        raise ValueError(f"{path}: unknown suffix {path.suffix!r}; expected .pth, .pt or .safetensors")
    raw = _unwrap_state_dict(raw, path)
    tensors, ignored = {}, []
    for name, value in raw.items():
        name = name.removeprefix("module.")
        if name.endswith(TORCH_IGNORED_SUFFIXES):
            ignored.append(name)
            continue
        tensors[name] = to_numpy(value)
    return Source("torch", tensors, str(path), ignored)


def _unwrap_state_dict(raw: Any, path: pathlib.Path) -> dict[str, Any]:
    def is_state_dict(value: Any) -> bool:
        return isinstance(value, dict) and value and all(hasattr(v, "shape") for v in value.values())

    if is_state_dict(raw):
        return raw
    if isinstance(raw, dict):
        for key in TORCH_WRAPPER_KEYS:
            if is_state_dict(raw.get(key)):
                return raw[key]
    keys = sorted(raw)[:8] if isinstance(raw, dict) else type(raw).__name__
    raise ValueError(f"{path}: not a state dict of tensors (found {keys}); expected name -> tensor, possibly under "
                     f"one of {TORCH_WRAPPER_KEYS}")


def keras_num_classes(path: str | pathlib.Path) -> int | None:
    """The output width of the last ``Dense`` layer stored in a Keras 3 ``.weights.h5`` file, or None.

    Keras numbers same-class layers in model order (``dense``, ``dense_1``, ...), so the classifier is the
    highest-numbered dense layer.
    """
    import h5py

    best: tuple[int, int] | None = None
    try:
        f = h5py.File(path, "r")
    except OSError as error:  # truncated or not HDF5 at all
        raise ValueError(f"{path}: not a readable HDF5 file ({_one_line(error)}); expected a Keras 3 .weights.h5 "
                         "file (model.save_weights)") from None
    with f:
        group = f.get("layers")
        for name in group.keys() if group is not None else ():
            match = re.fullmatch(r"dense(?:_(\d+))?", name)
            bias = group[name].get("vars/1") if match else None
            if bias is not None:
                index = int(match[1] or 0)
                if best is None or index > best[0]:
                    best = (index, int(bias.shape[0]))
    return None if best is None else best[1]


def _one_line(error: BaseException, limit: int = 300) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[:limit] + " ..."


def creation_index(name: str) -> int:
    """Position of an auto-named Keras layer (``conv2d``, ``conv2d_1``, ...: numbered in creation order)."""
    match = re.search(r"_(\d+)$", name)
    return int(match[1]) if match else 0


@contextlib.contextmanager
def keras_prng() -> Iterator[None]:
    """JAX's default threefry PRNG while Keras initialises variables: Keras' JAX backend builds 2-word threefry
    keys, which fail under another default implementation (the test suite uses "rbg")."""
    import jax

    previous = jax.config.jax_default_prng_impl
    jax.config.update("jax_default_prng_impl", "threefry2x32")
    try:
        yield
    finally:
        jax.config.update("jax_default_prng_impl", previous)


def read_keras(path: str | pathlib.Path, application: str, num_classes: int, **kwargs: Any) -> Source:
    """Builds ``keras.applications.<application>`` (``weights=None``, ``classes=num_classes``, linear
    classifier), loads the ``.weights.h5`` file into it and returns its variables by ``layer/variable`` name."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; expected a Keras 3 .weights.h5 file of {application}")
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras

    build = getattr(keras.applications, application)
    # Keras warns once per layer that does not fit (a hundred lines for another model's file): the one-line error
    # below says it.
    with keras_prng(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build(weights=None, include_top=True, classes=num_classes, classifier_activation=None, **kwargs)
        try:
            model.load_weights(str(path))
        except Exception as error:  # h5py, Keras and shape errors alike
            raise ValueError(f"{path}: Keras could not load it into keras.applications.{application}"
                             f"(classes={num_classes}) ({type(error).__name__}: {_one_line(error)}); expected that "
                             "application's .weights.h5 (model.save_weights)") from None
    source = Source("keras", {}, str(path))
    for layer in model.layers:
        kind = type(layer).__name__
        if kind in ("Rescaling", "Normalization"):
            values = {w.name: np.asarray(w.numpy()).tolist() for w in layer.weights}
            config = {k: v for k, v in layer.get_config().items() if k in ("scale", "offset", "axis")}
            source.preprocessing.append({"layer": layer.name, "class": kind, **config, **values})
            continue
        if not layer.weights:
            continue
        source.layers_by_class.setdefault(kind, []).append(layer.name)
        if kind == "BatchNormalization":
            source.bn_eps[layer.name] = float(layer.epsilon)
        for weight in layer.weights:
            source.tensors[f"{layer.name}/{weight.name}"] = to_numpy(weight.numpy())
    return source
