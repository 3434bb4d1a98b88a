"""Converts the tensors of a source checkpoint into the variables of a registered cnn_jax model.

The target comes first: the model is built with the mapping's conventions, its variable tree is read with
``jax.eval_shape`` (no initialisation), and each array-owning module (conv, dense, BatchNorm) asks the mapping for
its source module. Every source array is checked against the shape the target implies before it is converted, so
the first tensor that does not fit stops the import with its source name and shape and the target path and shape.
Source tensors that no target module asked for are reported, not silently dropped.
"""

from __future__ import annotations

import collections
import dataclasses
import difflib
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from cnn_jax.weights import layout
from cnn_jax.weights.mappings import Context, Mapping
from cnn_jax.weights.sources import Source

# Array names of each kind of module, per source layout.
SOURCE_NAMES: dict[str, dict[str, dict[str, str]]] = {
    "torch": {
        "conv": {"kernel": "weight", "bias": "bias"},
        "dense": {"kernel": "weight", "bias": "bias"},
        "bn": {"scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"},
    },
    "keras": {
        "conv": {"kernel": "kernel", "bias": "bias"},
        "dense": {"kernel": "kernel", "bias": "bias"},
        "bn": {"scale": "gamma", "bias": "beta", "mean": "moving_mean", "var": "moving_variance"},
    },
}
SEPARATOR = {"torch": ".", "keras": "/"}


class ConversionError(ValueError):
    """A source checkpoint does not fit the target model."""


@dataclasses.dataclass
class Unit:
    """One array-owning module of the target: its kind and the shapes of its arrays."""

    path: str
    kind: str  # "conv" | "dense" | "bn"
    shapes: dict[str, tuple[int, ...]]


@dataclasses.dataclass
class TargetModel:
    """A registered model's variable shapes plus the per-module facts the arrays do not show."""

    model: nn.Module
    units: dict[str, Unit]
    bn_eps: dict[str, float]
    conv_groups: dict[str, int]


@dataclasses.dataclass
class Conversion:
    """The result: variables of the target and what the import did."""

    variables: dict[str, Any]
    conversions: collections.Counter
    unused: list[str]
    ignored: list[str]
    imported: int


def describe_target(model: nn.Module, resolution: int, in_channels: int = 3) -> TargetModel:
    """Shapes of ``model``'s variables (``jax.eval_shape``), grouped by module, with each BatchNorm's epsilon and
    each conv's group count recorded by intercepting the module calls."""
    bn_eps: dict[str, float] = {}
    conv_groups: dict[str, int] = {}

    def interceptor(next_fun, args, kwargs, context):
        module = context.module
        if context.method_name == "__call__":
            path = "/".join(module.path)
            if isinstance(module, nn.BatchNorm):
                bn_eps[path] = float(module.epsilon)
            elif isinstance(module, nn.Conv):
                conv_groups[path] = int(module.feature_group_count)
        return next_fun(*args, **kwargs)

    images = jax.ShapeDtypeStruct((1, resolution, resolution, in_channels), jnp.float32)
    with nn.intercept_methods(interceptor):
        shapes = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), images)
    leaves: dict[str, dict[str, tuple[int, ...]]] = collections.defaultdict(dict)
    for tree in shapes.values():
        for path, leaf in traverse_util.flatten_dict(tree, sep="/").items():
            module, name = path.rsplit("/", 1)
            leaves[module][name] = tuple(leaf.shape)
    units = {}
    for path, arrays in leaves.items():
        names = set(arrays)
        if names <= {"kernel", "bias"} and "kernel" in names and len(arrays["kernel"]) in (2, 4):
            kind = "conv" if len(arrays["kernel"]) == 4 else "dense"
        elif names == {"scale", "bias", "mean", "var"}:
            kind = "bn"
        else:
            raise ConversionError(f"cnn_jax module {path} has arrays {sorted(names)}, which the importer does not "
                                  "know how to fill (expected a conv/dense kernel[+bias] or a BatchNorm)")
        units[path] = Unit(path, kind, arrays)
    return TargetModel(model, units, bn_eps, conv_groups)


class _Tensors:
    """The source tensors, with a record of which ones were used."""

    def __init__(self, source: Source):
        self.source = source
        self.used: set[str] = set()

    def get(self, name: str, *, target: str, shape: tuple[int, ...] | None, optional: bool = False):
        if name not in self.source.tensors:
            if optional:
                return None
            close = difflib.get_close_matches(name, list(self.source.tensors), n=3, cutoff=0.6)
            hint = f"; close names in the file: {', '.join(close)}" if close else ""
            raise ConversionError(f"{self.source.path}: no tensor {name!r} for cnn_jax {target} "
                                  f"(shape {shape}){hint}")
        self.used.add(name)
        return self.source.tensors[name]


def _check(name: str, value: np.ndarray, expected: tuple[int, ...], target: str, target_shape: tuple[int, ...],
           source: Source) -> None:
    if tuple(value.shape) != tuple(expected):
        raise ConversionError(
            f"{source.path}: tensor {name!r} of shape {tuple(value.shape)} does not fit cnn_jax {target} of shape "
            f"{target_shape} (expected source shape {tuple(expected)})")


def convert(source: Source, mapping: Mapping, target: TargetModel, *, bn_eps: float | None = None) -> Conversion:
    """Fills every variable of ``target`` from ``source`` through ``mapping``.

    Args:
      bn_eps: the source's BatchNorm epsilon where it differs from ``mapping.bn_eps`` (PyTorch only; Keras
        layers carry their own).
    """
    context = Context(frozenset(target.units), source)
    tensors = _Tensors(source)
    names, sep = SOURCE_NAMES[source.layout], SEPARATOR[source.layout]
    params: dict[str, np.ndarray] = {}
    stats: dict[str, np.ndarray] = {}
    counts: collections.Counter = collections.Counter()
    pending_bias: dict[str, np.ndarray] = {}  # BN path -> bias of the conv before it (folded into the mean)

    def source_module(path: str) -> str:
        try:
            return mapping.source_name(path, context)
        except KeyError as error:
            raise ConversionError(f"{mapping.family}: cannot name the source of cnn_jax module {path} "
                                  f"({error.args[0]})") from error

    # Convs and dense layers first, so a conv bias can be folded into the BatchNorm that follows it.
    ordered = sorted(target.units.values(), key=lambda u: (u.kind == "bn", u.path))
    for unit in ordered:
        src = source_module(unit.path)
        leaf = {key: f"{src}{sep}{value}" for key, value in names[unit.kind].items()}
        where = f"params/{unit.path}"
        if unit.kind in ("conv", "dense"):
            shape = unit.shapes["kernel"]
            raw = tensors.get(leaf["kernel"], target=f"{where}/kernel", shape=shape)
            kernel, how = _kernel(unit, raw, leaf["kernel"], shape, mapping, target, source)
            params[f"{unit.path}/kernel"] = kernel
            counts[how] += 1
            if "bias" in unit.shapes:
                bias = tensors.get(leaf["bias"], target=f"{where}/bias", shape=unit.shapes["bias"])
                _check(leaf["bias"], bias, unit.shapes["bias"], f"{where}/bias", unit.shapes["bias"], source)
                params[f"{unit.path}/bias"] = bias
            else:
                bias = tensors.get(leaf["bias"], target=f"{where} (no bias)", shape=None, optional=True)
                if bias is not None:
                    bn_path = unit.path.rsplit("/", 1)[0] + "/bn"
                    if bn_path not in target.units:
                        raise ConversionError(
                            f"{source.path}: {leaf['bias']!r} {bias.shape} has no place in cnn_jax: {where} has no "
                            "bias and no BatchNorm follows it to absorb one")
                    pending_bias[bn_path] = bias
        else:
            channels = unit.shapes["scale"]
            gamma_optional = source.layout == "keras"  # Keras BatchNormalization(scale=False / center=False)
            gamma = tensors.get(leaf["scale"], target=f"{where}/scale", shape=channels, optional=gamma_optional)
            beta = tensors.get(leaf["bias"], target=f"{where}/bias", shape=channels, optional=gamma_optional)
            mean = tensors.get(leaf["mean"], target=f"batch_stats/{unit.path}/mean", shape=channels)
            var = tensors.get(leaf["var"], target=f"batch_stats/{unit.path}/var", shape=channels)
            for key, value in (("scale", gamma), ("bias", beta), ("mean", mean), ("var", var)):
                if value is not None:
                    collection = "params" if key in ("scale", "bias") else "batch_stats"
                    _check(leaf[key], value, channels, f"{collection}/{unit.path}/{key}", channels, source)
            eps = source.bn_eps.get(src) if source.layout == "keras" else (bn_eps or mapping.bn_eps)
            if eps is None:
                raise ConversionError(f"{mapping.family}: the source BatchNorm epsilon of {src} is unknown")
            try:
                scale_bias, mean_var, how = layout.batchnorm(
                    gamma, beta, mean, var, source_eps=eps, target_eps=target.bn_eps[unit.path],
                    conv_bias=pending_bias.pop(unit.path, None))
            except ValueError as error:
                raise ConversionError(f"{src} -> cnn_jax {unit.path}: {error}") from error
            counts.update(how)
            params.update({f"{unit.path}/{k}": v for k, v in scale_bias.items()})
            stats.update({f"{unit.path}/{k}": v for k, v in mean_var.items()})
    if mapping.bgr_input_conv:  # Keras "caffe" mode: the first conv read BGR; reversing its input channels is exact
        kernel = params[f"{mapping.bgr_input_conv}/kernel"]
        params[f"{mapping.bgr_input_conv}/kernel"] = np.ascontiguousarray(kernel[:, :, ::-1, :])
        counts[layout.BGR_TO_RGB] += 1
    unused = sorted(set(source.tensors) - tensors.used)
    variables = {
        "params": traverse_util.unflatten_dict({k: np.asarray(v, np.float32) for k, v in params.items()}, sep="/"),
        "batch_stats": traverse_util.unflatten_dict({k: np.asarray(v, np.float32) for k, v in stats.items()},
                                                    sep="/"),
    }
    return Conversion(variables, counts, unused, list(source.ignored), len(tensors.used))


def _kernel(unit: Unit, raw: np.ndarray, name: str, shape: tuple[int, ...], mapping: Mapping,
            target: TargetModel, source: Source) -> tuple[np.ndarray, str]:
    """The target kernel from a source conv/dense weight, with the name of the layout conversion used."""
    where = f"params/{unit.path}/kernel"
    if unit.kind == "conv":
        groups = target.conv_groups.get(unit.path, 1)
        if source.layout == "torch":
            kh, kw, cin, cout = shape
            _check(name, raw, (cout, cin, kh, kw), where, shape, source)
            return layout.conv_oihw_to_hwio(raw, groups)
        if groups > 1 and shape[2] == 1 and raw.ndim == 4 and raw.shape[2] * raw.shape[3] == shape[3]:
            _check(name, raw, (shape[0], shape[1], groups, shape[3] // groups), where, shape, source)
            return layout.keras_depthwise_to_hwio(raw), layout.DEPTHWISE_KERAS
        _check(name, raw, shape, where, shape, source)
        return raw, layout.CONV_HWIO
    if source.layout == "torch" and raw.ndim == 4:  # a classifier written as a 1x1 conv (timm's ResNetV2)
        _check(name, raw, (shape[1], shape[0], 1, 1), where, shape, source)
        kernel, how = layout.dense_out_in_to_in_out(raw[:, :, 0, 0]), layout.DENSE_FROM_1X1
    elif source.layout == "torch":
        _check(name, raw, (shape[1], shape[0]), where, shape, source)
        kernel, how = layout.dense_out_in_to_in_out(raw), layout.DENSE_OUT_IN
    else:
        _check(name, raw, shape, where, shape, source)
        kernel, how = raw, layout.DENSE_IN_OUT
    if unit.path in mapping.flatten_chw:
        return layout.dense_rows_chw_to_hwc(kernel, mapping.flatten_chw[unit.path]), layout.DENSE_CHW_ROWS
    return kernel, how
