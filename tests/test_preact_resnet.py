"""Pre-activation ResNets: the Fig. 4(e) unit (identity shortcut, no ReLU after the add; projections of the
pre-activated input), timm's resnetv2 layout (stem without BN, final BN-ReLU), stride placement and drop-path rules."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import count_params

import cnn_jax
from cnn_jax.models.preact_resnet import PreActBasicBlock, PreActBottleneck


def _shapes(model, resolution: int = 32):
    images = jax.ShapeDtypeStruct((1, resolution, resolution, 3), jnp.float32)
    return jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), images)


def _init_apply(block, x, zero: str):
    """Initialises ``block`` on ``x``, zeroes the kernel of its conv ``zero`` and applies it in evaluation."""
    variables = jax.jit(lambda x: block.init(jax.random.key(1), x, train=False))(x)
    params = _zero_last_conv(variables["params"], zero)
    return params, jax.jit(lambda v, x: block.apply(v, x, train=False))({**variables, "params": params}, x)


def _zero_last_conv(params: dict, name: str) -> dict:
    return {**params, name: {"kernel": jnp.zeros_like(params[name]["kernel"])}}


@pytest.mark.parametrize("block, last", [(PreActBasicBlock(16), "conv2"), (PreActBottleneck(16), "conv3")])
def test_identity_unit_is_a_clean_identity_shortcut(block, last):
    # With the branch silenced the unit must return its raw input: no ReLU after the addition and the shortcut is
    # not pre-activated (x has negative entries, so either would show).
    x = jax.random.normal(jax.random.key(0), (2, 6, 6, 16))
    params, out = _init_apply(block, x, last)
    assert "downsample" not in params
    np.testing.assert_array_equal(out, x)


def test_projection_unit_projects_the_pre_activated_input():
    x = jax.random.normal(jax.random.key(0), (2, 6, 6, 8))
    params, out = _init_apply(PreActBasicBlock(16, strides=2), x, "conv2")
    # Fresh BN statistics in evaluation: bn1(x) = x / sqrt(1 + eps).
    preact = jax.nn.relu(x / jnp.sqrt(1.0 + 1e-5))[:, ::2, ::2, :]
    expected = jnp.einsum("nhwc,cd->nhwd", preact, params["downsample"]["kernel"][0, 0])
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_resnetv2_layout_stem_without_bn_and_final_norm():
    variables = _shapes(cnn_jax.create_model("resnetv2_50"))
    params, stats = variables["params"], variables["batch_stats"]
    assert set(params["stem_conv"]) == {"kernel"} and "stem_conv" not in stats
    assert set(params["norm"]) == {"scale", "bias"} and params["norm"]["scale"].shape == (2048,)
    # timm projects in the first unit of every bottleneck stage, basic stages only where the shape changes.
    assert all("downsample" in params[f"stage{i}_block0"] for i in range(1, 5))
    basic = _shapes(cnn_jax.create_model("resnetv2_18"))["params"]
    assert "downsample" not in basic["stage1_block0"]
    assert all("downsample" in basic[f"stage{i}_block0"] for i in range(2, 5))


def test_resnetv2_101_count_matches_timm():
    # shared/reference/models.md Sec. 1 (timm resnetv2_101; no param_counts.csv row).
    assert count_params(_shapes(cnn_jax.create_model("resnetv2_101"))["params"]) == 44_541_480


@pytest.mark.parametrize("stride_on_3x3, conv1_size", [(True, 16), (False, 8)])
def test_bottleneck_stride_placement(stride_on_3x3, conv1_size):
    model = cnn_jax.create_model("preact_resnet164", stages=((1, 64), (1, 128)), stride_on_3x3=stride_on_3x3)
    variables = _shapes(model, 16)
    images = jax.ShapeDtypeStruct((1, 16, 16, 3), jnp.float32)
    _, state = jax.eval_shape(
        lambda v, x: model.apply(v, x, train=False, capture_intermediates=True, mutable=["intermediates"]),
        variables,
        images,
    )
    unit = state["intermediates"]["stage2_block0"]
    assert unit["conv1"]["__call__"][0].shape[1:3] == (conv1_size, conv1_size)
    assert unit["conv2"]["__call__"][0].shape[1:3] == (8, 8)
    assert unit["downsample"]["__call__"][0].shape[1:3] == (8, 8)


def test_stride_placement_of_the_registrations():
    assert cnn_jax.create_model("resnetv2_50").stride_on_3x3  # timm
    assert not cnn_jax.create_model("preact_resnet1001").stride_on_3x3  # resnet-pre-act.lua


def test_drop_path_rules_timm_linspace_and_huang_on_cifar():
    imagenet = [r for s in cnn_jax.create_model("resnetv2_50", drop_path_rate=0.1).drop_path_schedule() for r in s]
    assert len(imagenet) == 16 and imagenet[0] == 0.0 and imagenet[-1] == pytest.approx(0.1)
    cifar = [r for s in cnn_jax.create_model("preact_resnet164", drop_path_rate=0.1).drop_path_schedule() for r in s]
    assert len(cifar) == 54 and cifar[0] == pytest.approx(0.1 / 54) and cifar[-1] == pytest.approx(0.1)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(block="bottleneck", block_dropout=0.3), "block_dropout .* needs block='basic'"),
        (dict(block="wide"), "unknown pre-activation block 'wide'"),
        (dict(stem="deep"), "unknown pre-activation ResNet stem 'deep'"),
    ],
)
def test_invalid_options_are_clear_errors(overrides, message):
    with pytest.raises(ValueError, match=message):
        _shapes(cnn_jax.create_model("resnetv2_50", **overrides))


def test_scanned_units_capture_stacked_intermediates():
    model = cnn_jax.create_model("resnetv2_50", scan_blocks=True)
    images = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
    _, state = jax.eval_shape(
        lambda v, x: model.apply(v, x, train=False, capture_intermediates=True, mutable=["intermediates"]),
        _shapes(model),
        images,
    )
    # Stage 1 has 3 units: block0 on its own, the other two scanned (one stacked entry per unit).
    assert state["intermediates"]["stage1_blocks"]["conv1"]["__call__"][0].shape == (2, 1, 8, 8, 64)
