"""Shared test helpers: reference figures and the small-resolution train/eval check used for every model."""

from __future__ import annotations

import csv
import os
import pathlib

# The suite compiles ~100 models at tiny sizes, where XLA's LLVM optimisation costs more than it saves: level 0
# cuts compile time by ~40% (EfficientNet-B0 train step: 19 -> 12 CPU-s). Set before JAX creates its backend.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

# The "rbg" generator compiles faster than threefry in the per-model train steps (dropout, drop-path masks).
jax.config.update("jax_default_prng_impl", "rbg")

REFERENCE_DIR = pathlib.Path(__file__).parent / "reference"
SHARED_REFERENCE_DIR = pathlib.Path(__file__).resolve().parents[2] / "shared" / "reference"


def load_param_counts() -> dict[str, dict[str, str]]:
    """Rows of ``param_counts.csv`` by variant (a copy of ``../shared/reference``; test_registry checks they match)."""
    with open(REFERENCE_DIR / "param_counts.csv", newline="") as f:
        return {row["variant"]: row for row in csv.DictReader(f)}


def load_models_csv() -> list[dict[str, str]]:
    with open(REFERENCE_DIR / "models.csv", newline="") as f:
        return list(csv.DictReader(f))


def count_params(tree) -> int:
    return sum(int(x.size) for x in jax.tree_util.tree_leaves(tree))


def pytest_collection_modifyitems(config, items):
    # Heavy per-model checks carry the "slow" marker; CI runs them too (`-m "slow or not slow"` is the default).
    # "extended" cases repeat a tested code path on more (heavy) reference models; they keep CI under its budget.
    if not os.environ.get("CNN_JAX_EXTENDED_TESTS"):
        skip = pytest.mark.skip(reason="extended case: set CNN_JAX_EXTENDED_TESTS=1")
        for item in items:
            if "extended" in item.keywords:
                item.add_marker(skip)
    if os.environ.get("CNN_JAX_FAST_TESTS"):
        skip = pytest.mark.skip(reason="CNN_JAX_FAST_TESTS is set")
        for item in items:
            if "slow" in item.keywords:
                item.add_marker(skip)


def synthetic_variables(model, images, seed: int = 0):
    """Variables with the shapes of ``model.init`` filled on the host, without compiling the initialiser.

    Compiling ``init`` (one random kernel per parameter) costs more than the train step for large models, and the
    per-model checks need well-scaled values, not the family's exact initialiser (tested where it matters):
    He-normal kernels, unit BatchNorm scales and variances, zero biases and means.
    """
    shapes = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), images)
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        name = jax.tree_util.keystr(path[-1:])
        if name in ("['scale']", "['var']"):
            return np.ones(leaf.shape, leaf.dtype)
        if name in ("['bias']", "['mean']"):
            return np.zeros(leaf.shape, leaf.dtype)
        fan_in = max(1, int(np.prod(leaf.shape[:-1])))
        return (rng.standard_normal(leaf.shape) * np.sqrt(2.0 / fan_in)).astype(leaf.dtype)

    return jax.tree_util.tree_map_with_path(fill, shapes)
