"""Model registry: names -> (module class, architecture arguments, metadata).

A registration is data: the family's ``flax.linen`` class, the keyword arguments that make the named variant, and
a :class:`ModelInfo` holding the paper facts that are not architecture (resolution, crop, citation). Where a fact
follows an argument (``efficientnet_phi``'s resolution is ``224 * gamma^phi``), the registration gives a function
of the model's arguments instead, and ``model_info(name, **overrides)`` evaluates it for those overrides.
``create_model`` and ``model_info`` validate overrides against the class's fields before building anything, so a
typo fails at once.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn

# Arguments every model accepts (STYLE.md "one model contract"). A family that cannot honour one (drop-path on a
# network without residual blocks) has no such field, and create_model rejects a non-default value with a clear error.
# Every class has num_classes, in_channels, dtype, param_dtype and drop_rate fields (tests/test_registry.py checks).
CONTRACT_DEFAULTS: Mapping[str, Any] = {"drop_path_rate": 0.0}
REQUIRED_FIELDS = ("num_classes", "in_channels", "dtype", "param_dtype", "drop_rate")


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What a model is, apart from its layers.

    Attributes:
      paper: citation of the paper (authors, year, arXiv id).
      table: the table/figure/section of the paper (or the reference implementation) the layout follows.
      resolution: default training resolution (square).
      eval_resolution: evaluation crop size.
      crop_fraction: eval crop / resize ratio (0.875 for 224/256).
      in_channels: image channels the default layout expects.
      family: family name, as in ``shared/reference`` tables.
      reference: the ``variant`` of ``shared/reference/param_counts.csv`` whose parameter count this model must
        match (for ``num_classes`` 1000, or 10 for the CIFAR rows), or None where no row exists.
      reference_classes: the class count that reference row was counted with.
      min_resolution: the smallest square input the layout accepts (tests run forwards there).
    """

    paper: str
    table: str
    resolution: int = 224
    eval_resolution: int | None = None
    crop_fraction: float = 0.875
    in_channels: int = 3
    family: str = ""
    reference: str | None = None
    reference_classes: int = 1000
    min_resolution: int = 32

    @property
    def eval_size(self) -> int:
        return self.eval_resolution or self.resolution


def small_image_info(paper: str, table: str, family: str, *, min_resolution: int, reference: str | None = None,
                     reference_classes: int = 1000) -> ModelInfo:
    """Metadata of a layout for 28-32 px inputs (CIFAR, Fashion-MNIST): trained and evaluated at 32x32, uncropped."""
    return ModelInfo(paper=paper, table=table, resolution=32, eval_resolution=32, crop_fraction=1.0, family=family,
                     reference=reference, reference_classes=reference_classes, min_resolution=min_resolution)


# Metadata that follows the architecture arguments: called with every constructor argument of the model (the
# class's defaults, then the registration's keyword arguments, then the caller's overrides).
InfoFunction = Callable[[Mapping[str, Any]], ModelInfo]


@dataclasses.dataclass(frozen=True)
class _Entry:
    name: str
    cls: type[nn.Module]
    kwargs: Mapping[str, Any]
    info: ModelInfo | InfoFunction


_REGISTRY: dict[str, _Entry] = {}


def register_model(name: str, cls: type[nn.Module], info: ModelInfo | InfoFunction, **kwargs: Any) -> None:
    """Registers ``cls(**kwargs)`` under ``name`` with its metadata: a :class:`ModelInfo`, or an
    :data:`InfoFunction` of the model's arguments where the metadata follows them. Raises if the name is taken or a
    kwarg is not a field."""
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is already registered")
    fields = module_fields(cls)
    missing = [f for f in REQUIRED_FIELDS if f not in fields]
    if missing:
        raise TypeError(f"registering {name!r}: {cls.__name__} lacks the model-contract fields {missing}")
    unknown = sorted(set(kwargs) - fields)
    if unknown:
        raise TypeError(f"registering {name!r}: {cls.__name__} has no fields {unknown}")
    _REGISTRY[name] = _Entry(name, cls, dict(kwargs), info)


def module_fields(cls: type[nn.Module]) -> set[str]:
    """The constructor arguments of a linen module (its dataclass fields, minus Flax's own)."""
    return {f.name for f in dataclasses.fields(cls) if f.init and f.name not in ("parent", "name")}


def _lookup(name: str) -> _Entry:
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see cnn_jax.list_models()"
        raise ValueError(f"unknown model {name!r}{hint}")
    return _REGISTRY[name]


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style ``pattern``, sorted."""
    _ensure_models_imported()
    return sorted(n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern))


def model_info(name: str, **overrides: Any) -> ModelInfo:
    """Metadata of a registered model, for the model ``create_model(name, **overrides)`` builds: e.g.
    ``model_info("efficientnet_phi", phi=2.0).resolution`` is ``efficientnet_phi_resolution(2.0)``. Overrides are
    validated as ``create_model`` validates them; they change only metadata registered as a function of them."""
    _ensure_models_imported()
    entry = _lookup(name)
    overrides = _checked_overrides(entry, overrides)
    if isinstance(entry.info, ModelInfo):
        return entry.info
    fields = module_fields(entry.cls)
    defaults = {f.name: f.default for f in dataclasses.fields(entry.cls)
                if f.name in fields and f.default is not dataclasses.MISSING}
    return entry.info({**defaults, **entry.kwargs, **overrides})


def config_overrides(model_config: Mapping[str, Any]) -> dict[str, Any]:
    """The ``create_model`` / ``model_info`` overrides an experiment config's ``model`` section holds: every key but
    ``name`` and ``dtype`` (a string there, which the trainer turns into the compute dtype)."""
    return {key: value for key, value in model_config.items() if key not in ("name", "dtype")}


def model_arguments(name: str) -> dict[str, Any]:
    """The architecture arguments the registration passes to its class."""
    _ensure_models_imported()
    return dict(_lookup(name).kwargs)


def _checked_overrides(entry: _Entry, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``overrides`` without the contract arguments the class lacks but that are left at their defaults; raises for
    any other key that is not a field of the class."""
    fields = module_fields(entry.cls)
    overrides = dict(overrides)
    for key in sorted(set(overrides) - fields):
        if key in CONTRACT_DEFAULTS:
            if overrides[key] == CONTRACT_DEFAULTS[key]:
                overrides.pop(key)
                continue
            raise ValueError(
                f"model {entry.name!r} cannot honour {key}={overrides[key]!r}: {entry.cls.__name__} has no residual "
                f"blocks to drop (leave {key} at {CONTRACT_DEFAULTS[key]!r})"
            )
        close = difflib.get_close_matches(key, sorted(fields), n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise TypeError(
            f"model {entry.name!r} ({entry.cls.__name__}) got an unknown argument {key!r}; "
            f"{hint}accepted: {', '.join(sorted(fields))}"
        )
    for key, value in overrides.items():
        if key in CONTRACT_CHECKS and not _accepts(CONTRACT_CHECKS[key][0], value):
            raise ValueError(f"model {entry.name!r}: {key}={value!r}; expected {CONTRACT_CHECKS[key][1]}")
    return overrides


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _is_rate(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value < 1.0


def _is_float_dtype(value: Any) -> bool:
    import jax.numpy as jnp

    return not isinstance(value, (bool, int, float)) and jnp.issubdtype(jnp.dtype(value), jnp.floating)


def _accepts(check: Callable[[Any], bool], value: Any) -> bool:
    try:
        return bool(check(value))
    except TypeError:  # jnp.dtype("bf16")
        return False


# Values of the contract arguments every model takes: (check, what is allowed).
CONTRACT_CHECKS: Mapping[str, tuple[Callable[[Any], bool], str]] = {
    "num_classes": (_is_count, "an integer >= 1"),
    "in_channels": (_is_count, "an integer >= 1"),
    "dtype": (_is_float_dtype, "a floating-point dtype such as jnp.float32 or jnp.bfloat16 (or its name)"),
    "param_dtype": (_is_float_dtype, "a floating-point dtype such as jnp.float32"),
    "drop_rate": (_is_rate, "a probability in [0, 1)"),
    "drop_path_rate": (_is_rate, "a probability in [0, 1)"),
}


def create_model(name: str, *, num_classes: int = 1000, **overrides: Any) -> nn.Module:
    """Builds a registered model.

    Args:
      name: registry name, e.g. ``"resnet50"``.
      num_classes: classifier outputs.
      **overrides: any field of the model's class (``dtype``, ``drop_rate``, ``drop_path_rate``, ``in_channels``,
        architecture options); unknown names raise ``TypeError`` listing the accepted ones.
    """
    _ensure_models_imported()
    entry = _lookup(name)
    overrides = _checked_overrides(entry, {"num_classes": num_classes, **overrides})
    return entry.cls(**{**entry.kwargs, **overrides})


def _ensure_models_imported() -> None:
    # Registration happens when the family modules are imported; importing here keeps `cnn_jax.registry` cheap
    # to import from the family files themselves without a cycle.
    import cnn_jax.models  # noqa: F401
