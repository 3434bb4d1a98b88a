"""A cnn_jax model's variables as a torchvision / timm state dict: the inverse of ``convert.py``.

The reference model is built with random weights (``references.build_reference``) to read its state-dict layout:
its names resolve the mapping's rules that consult the file (timm's block numbering, Inception branch names, the
ResNet-D shortcut), and every exported tensor is checked against the reference's shape, so the result loads with
``load_state_dict(strict=True)``. Layouts are inverted exactly (``layout``); a BatchNorm epsilon that differs from
the reference's is folded into the running variance. A model whose conventions compute another function than the
reference (TF "SAME" padding for torchvision, say) is refused, naming the convention.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from flax import traverse_util

from cnn_jax.weights import convert, layout, mappings, references
from cnn_jax.weights.sources import TORCH_IGNORED_SUFFIXES, Source, to_numpy

TORCH_FORMATS = ("torchvision", "timm", "timm_tf")


class ExportError(ValueError):
    """A model cannot be written as the requested reference's state dict."""


@dataclasses.dataclass
class Export:
    """The state dict (name -> numpy array, in the reference's order) and what was done."""

    state_dict: dict[str, np.ndarray]
    reference: str
    mapping: str
    folded_epsilon: int
    metadata: Any = None  # the reference state dict's ``_metadata`` (module versions; torchvision's MNASNet needs it)

    def torch_state_dict(self) -> Any:
        """The state dict as torch tensors, carrying the reference's ``_metadata`` as ``module.state_dict()`` does."""
        import collections

        import torch

        out = collections.OrderedDict((k, torch.from_numpy(v)) for k, v in self.state_dict.items())
        if self.metadata is not None:
            out._metadata = self.metadata
        return out


def default_reference(fmt: str, model_name: str) -> str:
    """The reference model name of ``model_name`` in ``fmt``: the one its coverage case compares with, else the
    same name (torchvision and timm mostly share cnn_jax's names)."""
    from cnn_jax.weights.coverage import CASES

    return next((c.reference for c in CASES if (c.fmt, c.model) == (fmt, model_name)), model_name)


# Model fields that do not change the inference function of given weights (or, for the BatchNorm convention, change
# only its epsilon, which the export folds into the running variance).
_INFERENCE_NEUTRAL = frozenset({
    "num_classes", "in_channels", "dtype", "param_dtype", "drop_rate", "drop_path_rate", "drop_path_rule",
    "norm_convention", "init_convention", "zero_init_residual", "memory_efficient", "parent", "name"})


def _check_conventions(mapping: mappings.Mapping, source: Source, model: Any, model_name: str) -> None:
    """Refuses a model whose conventions differ from those the mapping gives the reference's weights."""
    import cnn_jax

    expected = cnn_jax.create_model(model_name, **mapping.overrides_for(source))
    for field in dataclasses.fields(model):
        if field.name in _INFERENCE_NEUTRAL or not hasattr(expected, field.name):
            continue
        have, wanted = getattr(model, field.name), getattr(expected, field.name)
        if have != wanted:
            raise ExportError(f"{model_name} has {field.name}={have!r}, but {mapping.family} computes "
                              f"{field.name}={wanted!r}: the exported weights would compute another function")


def export_state_dict(fmt: str, model_name: str, model: Any, variables: dict, *, reference: str | None = None,
                      resolution: int | None = None) -> Export:
    """``variables`` of the registered ``model_name`` (built as ``model``) as a state dict of ``reference``."""
    import cnn_jax

    if fmt not in TORCH_FORMATS:
        raise ExportError(f"--format {fmt!r}: export writes PyTorch state dicts, expected one of {TORCH_FORMATS}")
    try:
        mapping = mappings.find_mapping(fmt, model_name)
    except ValueError as error:
        raise ExportError(str(error)) from None
    resolution = resolution or cnn_jax.model_info(model_name).min_resolution
    target = convert.describe_target(model, resolution, model.in_channels)
    reference = reference or default_reference(fmt, model_name)
    has_aux = any(path.startswith("aux") for path in target.units)
    aux = has_aux if reference in ("googlenet", "inception_v3") else None
    template = references.build_reference(fmt, reference, model.num_classes, aux_logits=aux).state_dict()
    source = Source("torch", {k: to_numpy(v) for k, v in template.items()
                              if not k.endswith(TORCH_IGNORED_SUFFIXES)}, f"{fmt} {reference}")
    _check_conventions(mapping, source, model, model_name)
    context = mappings.Context(frozenset(target.units), source)
    params = traverse_util.flatten_dict(variables.get("params", {}), sep="/")
    stats = traverse_util.flatten_dict(variables.get("batch_stats", {}), sep="/")
    out: dict[str, np.ndarray] = {}
    folded = 0
    for unit in target.units.values():
        name = mapping.source_name(unit.path, context)

        def put(suffix: str, value: Any, name: str = name) -> None:
            out[f"{name}.{suffix}"] = np.asarray(value, np.float32)

        if unit.kind == "conv":
            put("weight", layout.conv_hwio_to_oihw(np.asarray(params[f"{unit.path}/kernel"])))
        elif unit.kind == "dense":
            kernel = np.asarray(params[f"{unit.path}/kernel"])
            if unit.path in mapping.flatten_chw:
                kernel = layout.dense_rows_hwc_to_chw(kernel, mapping.flatten_chw[unit.path])
            weight = kernel.T
            if source.tensors.get(f"{name}.weight", weight).ndim == 4:  # a classifier written as a 1x1 conv
                weight = weight[:, :, None, None]
            put("weight", np.ascontiguousarray(weight))
        else:
            var = np.asarray(stats[f"{unit.path}/var"], np.float64)
            source_eps = mapping.bn_eps if mapping.bn_eps is not None else target.bn_eps[unit.path]
            if source_eps != target.bn_eps[unit.path]:
                var = var + (target.bn_eps[unit.path] - source_eps)
                folded += 1
                if np.any(var < 0):
                    raise ExportError(f"{unit.path}: folding the model's BatchNorm epsilon {target.bn_eps[unit.path]} "
                                      f"into {reference}'s {source_eps} makes a running variance negative")
            put("weight", params[f"{unit.path}/scale"])
            put("bias", params[f"{unit.path}/bias"])
            put("running_mean", stats[f"{unit.path}/mean"])
            put("running_var", var)
            if f"{name}.num_batches_tracked" in template:
                out[f"{name}.num_batches_tracked"] = np.zeros((), np.int64)
        if unit.kind != "bn" and "bias" in unit.shapes:
            put("bias", params[f"{unit.path}/bias"])
    missing = [k for k in template if k not in out]
    extra = [k for k in out if k not in template]
    wrong = [f"{k}: {out[k].shape} for {tuple(template[k].shape)}" for k in out
             if k in template and tuple(out[k].shape) != tuple(template[k].shape)]
    if missing or extra or wrong:
        raise ExportError(f"{model_name} does not fill {fmt} {reference}'s state dict: missing {missing[:5]}, "
                          f"not in the reference {extra[:5]}, shapes {wrong[:5]}")
    ordered = {k: out[k] for k in template}
    return Export(ordered, reference, mapping.family, folded, getattr(template, "_metadata", None))
