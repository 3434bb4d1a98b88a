"""Shared test helpers: reference figures and the small-resolution train/eval check used for every model."""

from __future__ import annotations

import csv
import os
import pathlib

import jax
import pytest

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
    if os.environ.get("CNN_JAX_FAST_TESTS"):
        skip = pytest.mark.skip(reason="CNN_JAX_FAST_TESTS is set")
        for item in items:
            if "slow" in item.keywords:
                item.add_marker(skip)
