"""The single-axis scaling sweep (Tan & Le 2019, Fig. 3 vs compound): every run's overrides reach the model it
trains, for EfficientNet-B0's body and for a width-only family (MobileNet v2). Planning builds each run's config
and model (nothing is compiled); docs/sweeps/single_axis holds the sweep run for real."""

from __future__ import annotations

import math

import pytest

from cnn_jax.config import build_model, load_config
from cnn_jax.tools import sweep as sweep_tool

SINGLE_AXIS = "experiments/sweeps/efficientnet_single_axis.py"


def _plan(spec: str, base_config: str | None = None) -> list[sweep_tool.PlannedRun]:
    sweep = sweep_tool.load_sweep(spec)
    base = load_config(base_config or sweep.base_config)
    return sweep_tool.plan_stage(sweep, sweep.stages[0], base, {}, [], check=False)  # sizes only: no dry run


def test_single_axis_runs_scale_one_dimension_each():
    alpha, beta, gamma = 1.2, 1.1, 1.15
    f = alpha * beta**2 * gamma**2  # the compound rule's FLOPs factor per phi step
    runs = {run.name: run for run in _plan(f"{SINGLE_AXIS}:max_phi=2")}
    assert list(runs) == ["baseline_phi0"] + [f"{s}_phi{p}" for p in (1, 2)
                                              for s in ("depth", "width", "resolution", "compound")]
    expected = {"baseline_phi0": (1.0, 1.0, 32)}
    for phi in (1, 2):
        expected |= {f"depth_phi{phi}": (f**phi, 1.0, 32), f"width_phi{phi}": (1.0, f ** (phi / 2), 32),
                     f"resolution_phi{phi}": (1.0, 1.0, math.floor(32 * f ** (phi / 2) + 0.5)),
                     f"compound_phi{phi}": (alpha**phi, beta**phi, math.floor(32 * gamma**phi + 0.5))}
    for name, (depth, width, size) in expected.items():
        config = runs[name].config
        model = build_model(config)  # what train_and_evaluate trains
        assert (config.model.name, model.num_classes, model.in_channels) == ("efficientnet_b0", 10, 1)
        assert model.depth_mult == pytest.approx(depth, abs=1e-4), name
        assert model.width_mult == pytest.approx(width, abs=1e-4), name
        assert config.data.image_size == size, name
        assert runs[name].overrides["_series"] == name.split("_")[0]


def test_single_axis_sweep_on_a_width_only_family():
    runs = _plan(f"{SINGLE_AXIS}:depth_key=None,max_phi=1", "experiments/fashion_mnist/mobilenet_v2.py")
    assert [r.name for r in runs] == ["baseline_phi0", "width_phi1", "resolution_phi1"]
    assert [build_model(r.config).width_mult for r in runs] == pytest.approx([1.0, 1.92 ** 0.5, 1.0], abs=1e-3)
    with pytest.raises(KeyError, match="'model.depth_mult' is not a key of the config"):
        _plan(f"{SINGLE_AXIS}:max_phi=1", "experiments/fashion_mnist/mobilenet_v2.py")
