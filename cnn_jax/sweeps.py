"""Sweep definitions: lists of config overrides, built with :func:`axis`, :func:`product` and :func:`zip_sweep`.

A *run* of a sweep is a dict ``{dotted config key: value}`` (``{"model.alpha": 1.2, "train.num_steps": 100}``),
applied to a locked experiment config with ``cnn_jax.config.apply_overrides`` (an unknown key fails, naming the key
and the close ones). Keys that start with ``_`` are labels, not config: ``_series`` groups runs for plots,
``_stage`` is set by multi-stage sweeps, ``_name`` fixes a run's directory name.

Repeated points: :func:`with_seeds` repeats every run once per seed (key ``seed``); :func:`point_key` groups runs
that differ only in their seed, :func:`summarize` gives mean, sample standard deviation and n, and
:func:`select_best` picks the best point only when it stands out from the others by more than their seed spread
(else :class:`UnseparatedWinnerError`, with the numbers).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import re
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

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


def config_keys(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The overrides that are config keys (labels starting with ``_`` removed)."""
    return {k: v for k, v in overrides.items() if not k.startswith("_")}


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

    ``previous`` is a list of dicts, one per run of the earlier stages (``name``, ``stage``, ``status``,
    ``overrides``, ``metrics`` with ``eval/top1`` ..., ``num_classes``, ``config``); a stage is planned
    only once every earlier run is finished. ``size``: how many runs the stage will have (before seeds are added),
    when it is known before the earlier stages finish; a SLURM submission of the whole study sizes the stage's job
    array with it.
    """

    name: str
    runs: Callable[[list[dict[str, Any]]], list[Run]]
    size: int | None = None


SEED_KEY = "seed"


def with_seeds(runs: Sequence[Mapping[str, Any]], seeds: Sequence[int] | None) -> list[Run]:
    """Every run once per seed (``seed`` varies fastest; ``_name`` labels get ``_seed<N>``); ``None``: unchanged.

    A run that already sets ``seed`` is an error: the seed axis would silently override it.
    """
    runs = [dict(r) for r in runs]
    if seeds is None:
        return runs
    seeds = list(seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct and non-empty, got {seeds}")
    out = []
    for run in runs:
        if SEED_KEY in run:
            raise ValueError(f"run {config_keys(run)} already sets {SEED_KEY!r}; drop it from the sweep or do not "
                             "add a seed axis")
        for seed in seeds:
            seeded = {**run, SEED_KEY: int(seed)}
            if "_name" in run:
                seeded["_name"] = f"{run['_name']}_seed{seed}"
            out.append(seeded)
    return out


def point_key(overrides: Mapping[str, Any]) -> str:
    """Runs with equal keys are repeats of one point: their config overrides apart from the seed."""
    return json.dumps({k: v for k, v in config_keys(overrides).items() if k != SEED_KEY}, sort_keys=True,
                      default=str)


@dataclasses.dataclass(frozen=True)
class Summary:
    """Mean, sample standard deviation (``ddof = 1``; nan for one value) and count of repeated measurements."""

    mean: float
    std: float
    n: int

    @property
    def standard_error(self) -> float:
        return self.std / math.sqrt(self.n) if self.n > 1 else math.nan

    def format(self, scale: float = 1.0, digits: int = 2) -> str:
        if self.n == 0:
            return "–"
        if self.n == 1:
            return f"{self.mean * scale:.{digits}f} (n=1)"
        return f"{self.mean * scale:.{digits}f} ± {self.std * scale:.{digits}f} (n={self.n})"


def summarize(values: Iterable[float]) -> Summary:
    values = [float(v) for v in values]
    if not values:
        return Summary(math.nan, math.nan, 0)
    return Summary(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else math.nan, len(values))


class UnseparatedWinnerError(ValueError):
    """The best point of a search does not stand out from the others (or from chance) beyond the seed spread."""


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One point of a search: its overrides (seed removed), the runs' names and the metric over its seeds."""

    overrides: dict[str, Any]
    runs: tuple[str, ...]
    score: Summary


def group_points(results: Sequence[Mapping[str, Any]], metric: str = "eval/top1") -> list[Candidate]:
    """Finished results (dicts with ``overrides``, ``metrics``, ``status``, ``name``) grouped into points, best
    mean first."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for result in results:
        groups.setdefault(point_key(result["overrides"]), []).append(result)
    candidates = []
    for members in groups.values():
        overrides = {k: v for k, v in config_keys(members[0]["overrides"]).items() if k != SEED_KEY}
        candidates.append(Candidate(overrides, tuple(m.get("name", "") for m in members),
                                    summarize(m["metrics"][metric] for m in members)))
    return sorted(candidates, key=lambda c: -c.score.mean)


def select_best(results: Sequence[Mapping[str, Any]], *, num_classes: int, metric: str = "eval/top1",
                min_seeds: int = 2, z: float = 2.0, min_above_chance: float = 0.05) -> Candidate:
    """The point with the best mean ``metric`` over its seeds, if the evidence singles it out; else raises
    :class:`UnseparatedWinnerError` with every candidate's mean ± std (n).

    It refuses when a run is not finished; when a point has fewer than ``min_seeds`` finished seeds (no spread
    to compare with); when the best mean is within ``min_above_chance`` of chance (``1 / num_classes``: nothing
    was learned, the ranking is noise); or when the best and the runner-up differ by no more than ``z`` standard
    errors of their difference, ``sqrt(s1^2/n1 + s2^2/n2)`` (``z = 2``: about a two-sided 5 % test).
    """
    unfinished = [r.get("name", "?") for r in results if r.get("status", "finished") != "finished"]
    finished = [r for r in results if r.get("status", "finished") == "finished"]
    candidates = group_points(finished, metric)

    def table() -> str:
        return "\n".join(f"  {c.score.format(100)} %  {c.overrides}" for c in candidates)

    def refuse(reason: str) -> UnseparatedWinnerError:
        return UnseparatedWinnerError(f"no winner picked: {reason}.\n{metric} over seeds (mean ± std, n), best "
                                      f"first:\n{table()}")

    if unfinished:
        raise refuse(f"{len(unfinished)} run(s) are not finished: {', '.join(unfinished)}")
    if not candidates:
        raise UnseparatedWinnerError("no winner picked: no finished run to compare")
    few = [c for c in candidates if c.score.n < min_seeds]
    if few:
        raise refuse(f"{len(few)} point(s) have fewer than {min_seeds} seeds, so their spread is unknown; repeat "
                     f"every point over seeds (--seeds 0,1,2)")
    best = candidates[0]
    chance = 1.0 / num_classes
    if best.score.mean < chance + min_above_chance:
        raise refuse(f"the best mean {best.score.mean:.4f} is within {min_above_chance} of chance ({chance:.4f} "
                     f"for {num_classes} classes): the runs learned nothing to rank; train longer")
    if len(candidates) > 1:
        second = candidates[1]
        gap = best.score.mean - second.score.mean
        error = math.sqrt(best.score.std**2 / best.score.n + second.score.std**2 / second.score.n)
        if not gap > z * error:
            raise refuse(f"the best ({best.score.mean:.4f}) beats the runner-up ({second.score.mean:.4f}) by "
                         f"{gap:.4f}, not more than {z:g} standard errors of the difference ({z:g} x {error:.4f} = "
                         f"{z * error:.4f}); add seeds or train longer, or choose a point yourself")
    return best
