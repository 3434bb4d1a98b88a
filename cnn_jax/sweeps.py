"""Sweep definitions: lists of config overrides, built with :func:`axis`, :func:`product` and :func:`zip_sweep`.

A *run* of a sweep is a dict ``{dotted config key: value}`` (``{"model.alpha": 1.2, "train.num_steps": 100}``),
applied to a locked experiment config with :func:`apply_overrides` (an unknown key fails, naming the key and the
close ones). Keys that start with ``_`` are labels, not config: ``_series`` groups runs for plots, ``_stage`` is set
by multi-stage sweeps, ``_name`` fixes a run's directory name.

Also the EfficientNet compound-scaling grid (Tan & Le 2019, arXiv:1905.11946, Sec. 3.3, Eq. 3): depth
``d = alpha^phi``, width ``w = beta^phi``, resolution ``r = gamma^phi`` subject to ``alpha * beta^2 * gamma^2 ~ 2``
(FLOPs grow with ``d * w^2 * r^2``, so about ``2^phi``), searched at ``phi = 1`` on a small proxy task.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import ml_collections

Run = dict[str, Any]
SweepArg = Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]]


def axis(key: str, values: Iterable[Any]) -> list[Run]:
    """One axis: ``axis("model.phi", [1, 2])`` -> ``[{"model.phi": 1}, {"model.phi": 2}]``."""
    values = list(values)
    if not values:
        raise ValueError(f"sweep axis {key!r} has no values")
    return [{key: v} for v in values]


def _as_runs(arg: SweepArg, combine: Callable[..., list[Run]]) -> list[Run]:
    """A list of runs, or a mapping ``{key: values}`` expanded as axes with ``combine``."""
    if isinstance(arg, Mapping):
        return combine(*(axis(k, v) for k, v in arg.items()))
    runs = [dict(r) for r in arg]
    for r in runs:
        if not isinstance(r, Mapping):
            raise TypeError(f"a sweep is a list of override dicts; got an element {r!r}")
    return runs


def _merge(parts: Iterable[Mapping[str, Any]]) -> Run:
    run: Run = {}
    for part in parts:
        for key, value in part.items():
            if key in run and run[key] != value:
                raise ValueError(f"sweep key {key!r} is set twice ({run[key]!r} and {value!r}) in one run")
            run[key] = value
    return run


def product(*sweeps: SweepArg) -> list[Run]:
    """Cartesian product: every combination of one run from each argument (the last argument varies fastest).

    Each argument is a list of runs (from :func:`axis`, :func:`zip_sweep`, ...) or a mapping ``{key: values}``.
    ``product({"a": [1, 2]}, {"b": [3, 4, 5]})`` has 6 runs.
    """
    parts = [_as_runs(s, product) for s in sweeps]
    return [_merge(combo) for combo in itertools.product(*parts)]


def zip_sweep(*sweeps: SweepArg) -> list[Run]:
    """Element-wise: run ``i`` merges run ``i`` of every argument; all arguments must have the same length."""
    parts = [_as_runs(s, zip_sweep) for s in sweeps]
    lengths = sorted({len(p) for p in parts})
    if len(lengths) > 1:
        raise ValueError(f"zip_sweep needs sweeps of equal length; got lengths {[len(p) for p in parts]}")
    return [_merge(combo) for combo in zip(*parts, strict=True)]


def chain(*sweeps: SweepArg) -> list[Run]:
    """Concatenation: the runs of each argument, one after another."""
    return [run for s in sweeps for run in _as_runs(s, product)]


class UnknownKeyError(KeyError):
    """A sweep or command-line override names a key the config does not have (message printed as is)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def config_keys(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The overrides that are config keys (labels starting with ``_`` removed)."""
    return {k: v for k, v in overrides.items() if not k.startswith("_")}


def _all_keys(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    keys = []
    for key in config.keys():
        value = config[key]
        if isinstance(value, ml_collections.ConfigDict):
            keys += _all_keys(value, f"{prefix}{key}.")
        else:
            keys.append(prefix + key)
    return keys


def apply_overrides(config: ml_collections.ConfigDict, overrides: Mapping[str, Any]) -> ml_collections.ConfigDict:
    """A copy of ``config`` with the dotted ``overrides`` set; keys starting with ``_`` are labels and skipped.

    The copy keeps the original's lock, so a key that is not in the config raises ``UnknownKeyError`` (a
    ``KeyError``) naming it and the closest existing keys; a value of the wrong type raises the ConfigDict's
    ``TypeError`` with the key added.
    """
    config = ml_collections.ConfigDict(config.to_dict(preserve_field_references=True),
                                       type_safe=config.is_type_safe)
    config.lock()
    known = _all_keys(config)
    for key, value in config_keys(overrides).items():
        *parents, leaf = key.split(".")
        node = config
        try:
            for part in parents:
                node = node[part]
            if not isinstance(node, ml_collections.ConfigDict) or leaf not in node:
                raise KeyError(key)
        except (KeyError, AttributeError):
            close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UnknownKeyError(f"override {key!r} is not a key of the config{hint}") from None
        try:
            node[leaf] = value
        except TypeError as error:
            raise TypeError(f"override {key}={value!r}: {error}") from None
    return config


def run_name(index: int, overrides: Mapping[str, Any]) -> str:
    """A directory name: ``_name`` if given, else the index and the swept values (``003_alpha1.2_beta1.1``)."""
    if "_name" in overrides:
        name = str(overrides["_name"])
    else:
        parts = [f"{index:03d}"]
        for key, value in config_keys(overrides).items():
            leaf = key.rsplit(".", 1)[-1]
            parts.append(f"{leaf}{_format_value(value)}")
        name = "_".join(parts)
    name = re.sub(r"[^A-Za-z0-9_.=+-]", "-", name)
    return name[:120]


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return "-".join(_format_value(v) for v in value)
    return str(value)


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage of a multi-stage sweep: ``runs(previous)`` gets the results of the earlier stages.

    ``previous`` is a list of dicts, one per finished run of the earlier stages (``overrides``, ``metrics`` with
    ``eval/top1`` ..., ``params``, ``macs``); a stage whose input is not complete is not run (and not emitted).
    """

    name: str
    runs: Callable[[list[dict[str, Any]]], list[Run]]


# ---------------------------------------------------------------------------------------------------------------
# EfficientNet compound scaling (Tan & Le 2019, Sec. 3.3).


@dataclasses.dataclass(frozen=True)
class CompoundPoint:
    alpha: float
    beta: float
    gamma: float

    @property
    def flops_factor(self) -> float:
        """``alpha * beta^2 * gamma^2``: the FLOPs multiplier of one phi step (Eq. 3's constraint, ~2)."""
        return self.alpha * self.beta**2 * self.gamma**2


def compound_grid(
    *,
    target: float = 2.0,
    tolerance: float = 0.1,
    step: float = 0.05,
    alpha_range: tuple[float, float] = (1.0, 2.0),
    beta_range: tuple[float, float] = (1.0, 1.5),
    gamma_range: tuple[float, float] = (1.0, 1.5),
) -> list[CompoundPoint]:
    """Grid points ``(alpha, beta, gamma) >= 1`` (multiples of ``step``) with ``|alpha beta^2 gamma^2 - target|
    <= tolerance``, sorted by alpha, beta, gamma.

    The paper's search (Sec. 3.3, step 1) fixes phi = 1 and grid-searches alpha, beta, gamma under
    ``alpha * beta^2 * gamma^2 ~ 2``; it reports alpha = 1.2, beta = 1.1, gamma = 1.15 (factor 1.92) for B0.
    """
    if tolerance < 0 or step <= 0:
        raise ValueError(f"compound_grid: tolerance={tolerance} must be >= 0 and step={step} > 0")

    def values(lo: float, hi: float) -> list[float]:
        n = int(math.floor((hi - lo) / step + 1e-9))
        return [round(lo + i * step, 10) for i in range(n + 1)]

    points = [
        CompoundPoint(a, b, g)
        for a in values(*alpha_range)
        for b in values(*beta_range)
        for g in values(*gamma_range)
        if abs(a * b * b * g * g - target) <= tolerance + 1e-12
    ]
    if not points:
        raise ValueError(f"compound_grid: no point within tolerance={tolerance} of alpha*beta^2*gamma^2={target} "
                         f"on a grid of step {step}; widen the tolerance or the ranges")
    return points


def proxy_resolution(base: int, gamma: float, phi: float) -> int:
    """Input size of a scaled proxy run: ``base * gamma^phi`` rounded (halves up), as for ``efficientnet_phi``."""
    return math.floor(base * gamma**phi + 0.5)
