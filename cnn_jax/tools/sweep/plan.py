"""Loading a sweep file and planning its stages: each run's overrides on the locked base config, every config checked
before anything trains."""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections

from cnn_jax import sweeps
from cnn_jax.config import (
    apply_overrides,
    build_model,
    import_file,
    parse_value,
    resolve_path,
)
from cnn_jax.tools import results


def parse_sweep_args(text: str | None) -> dict[str, Any]:
    """``"tolerance=0.05,max_phi=4"`` -> ``{"tolerance": 0.05, "max_phi": 4}`` (values as Python literals)."""
    if not text:
        return {}
    items, depth, current = [], 0, ""
    for char in text:  # split on commas outside brackets: "lrs=[0.1,0.2],seeds=(0,1)"
        depth += char in "([{"
        depth -= char in ")]}"
        if char == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += char
    items.append(current)
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"sweep argument {item!r}: expected key=value")
        out[key.strip()] = parse_value(value.strip())
    return out


@dataclasses.dataclass
class SweepFile:
    spec: str  # as given: "path.py[:k=v,...]"
    path: pathlib.Path
    base_config: str
    stages: list[sweeps.Stage]
    single_stage: bool
    seeds: tuple[int, ...] | None  # the file's SEEDS: every run repeated once per seed (None: as planned)


def load_sweep(spec: str) -> SweepFile:
    """Imports a sweep file (``path.py[:k=v,...]``) and returns its base config path and stages."""
    file, _, arg = spec.partition(":")
    path = resolve_path(pathlib.Path(file))
    module = import_file(path, f"cnn_jax_sweep_{path.stem}")
    kwargs = parse_sweep_args(arg)
    base = getattr(module, "BASE_CONFIG", None)
    if not isinstance(base, str):
        raise AttributeError(f"{path}: a sweep file must define BASE_CONFIG = 'experiments/...py' (the base config)")
    seeds = getattr(module, "SEEDS", None)
    seeds = tuple(int(s) for s in seeds) if seeds is not None else None
    if hasattr(module, "get_stages"):
        stages = list(module.get_stages(**kwargs))
        if not stages or not all(isinstance(s, sweeps.Stage) for s in stages):
            raise TypeError(f"{path}: get_stages() must return a non-empty list of cnn_jax.sweeps.Stage")
        names = [s.name for s in stages]
        if len(set(names)) != len(names):
            raise ValueError(f"{path}: stage names must be unique; got {names}")
        return SweepFile(spec, path, base, stages, single_stage=False, seeds=seeds)
    if hasattr(module, "get_sweep"):
        runs = list(module.get_sweep(**kwargs))
        stage = sweeps.Stage(results.SINGLE_STAGE, lambda previous: runs, size=len(runs))
        return SweepFile(spec, path, base, [stage], single_stage=True, seeds=seeds)
    raise AttributeError(f"{path}: a sweep file must define get_sweep() or get_stages()")


@dataclasses.dataclass
class PlannedRun:
    name: str  # relative workdir: "<stage>/<run>" or "<run>"
    stage: str
    overrides: dict[str, Any]
    config: ml_collections.ConfigDict

    def workdir(self, root: pathlib.Path) -> pathlib.Path:
        return root / self.name


class PlanError(ValueError):
    """A stage cannot be planned: earlier runs unfinished, the search refused, or a config fails its check."""


def check_configs(planned: Sequence[PlannedRun]) -> None:
    """Validates (``cnn_jax.config``) and dry-runs (``cnn_jax.train.dry_run``: dataset, batch layout, model,
    schedule) every planned config and raises :class:`PlanError` listing every problem, so nothing is submitted or
    trained with a broken point."""
    from cnn_jax.config import config_problems
    from cnn_jax.train.dry_run import dry_run

    problems, checked = [], set()
    for run in planned:
        config = run.config.to_dict()
        config.pop(sweeps.SEED_KEY, None)
        key = json.dumps(config, sort_keys=True, default=str)
        if key in checked:  # another seed of a checked point
            continue
        checked.add(key)
        # Values no run could use first: the dry run's arithmetic assumes them valid (a batch of 0 divides by 0).
        invalid = config_problems(run.config)
        problems += [f"{run.name}: {p}" for p in invalid or dry_run(run.config).problems]
    if problems:
        raise PlanError("the dry run of the planned configs failed:\n  " + "\n  ".join(problems))


def plan_stage(sweep: SweepFile, stage: sweeps.Stage, base: ml_collections.ConfigDict, cli: Mapping[str, Any],
               previous: list[dict[str, Any]], *, seeds: Sequence[int] | None = None,
               check: bool = True) -> list[PlannedRun]:
    """The runs of one stage (each once per seed) with their configs; every config is built (keys, model
    arguments) and, with ``check``, dry-run here."""
    # The index in a run's name is its point's: running more seeds later keeps the names of the runs already done.
    runs = [(index, seeded) for index, run in enumerate(stage.runs(previous))
            for seeded in sweeps.with_seeds([run], seeds)]
    planned, seen = [], set()
    for index, overrides in runs:
        overrides = {**overrides, "_stage": stage.name}
        try:
            config = apply_overrides(base, {**overrides, **cli})
            build_model(config)  # unknown model arguments raise here, not after hours of other runs
        except (KeyError, TypeError, ValueError) as error:
            raise type(error)(f"{sweep.path} stage {stage.name!r} run {index} {sweeps.config_keys(overrides)}: "
                              f"{error}") from None
        name = sweeps.run_name(index, overrides)
        name = name if sweep.single_stage else f"{stage.name}/{name}"
        if name in seen:
            raise ValueError(f"{sweep.path}: two runs are named {name!r}; give them distinct '_name' labels")
        seen.add(name)
        planned.append(PlannedRun(name, stage.name, overrides, config))
    if check:
        check_configs(planned)
    return planned
