"""CIFAR-size residual networks: option-A/B shortcuts, 6n+2 / 9n+2 depth arithmetic, stochastic-depth schedule of
ResNet-110, Wide ResNet dropout, and the scanned stages (one nn.scan per stage) against one module per block."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import count_params

import cnn_jax
from cnn_jax.layers import stochastic_depth
from cnn_jax.models.cifar_resnet import CifarBasicBlock, zero_pad_shortcut


def _shapes(model, resolution: int = 32):
    images = jax.ShapeDtypeStruct((1, resolution, resolution, 3), jnp.float32)
    return jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), images)


def test_option_a_pads_zero_channels_after_the_strided_input():
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 16))
    out = zero_pad_shortcut(x, 32, 2)
    assert out.shape == (2, 4, 4, 32)
    np.testing.assert_array_equal(out[..., :16], x[:, ::2, ::2, :])
    assert not np.any(np.asarray(out[..., 16:]))


def test_option_a_block_adds_the_padded_input_and_has_no_projection():
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 16))
    block = CifarBasicBlock(32, strides=2, shortcut="A")
    variables = jax.jit(lambda x: block.init(jax.random.key(1), x, train=False))(x)
    assert set(variables["params"]) == {"conv1", "bn1", "conv2", "bn2"}
    # A zero second BN silences the residual branch, leaving relu(shortcut).
    bn2 = variables["params"]["bn2"]
    params = {**variables["params"], "bn2": {**bn2, "scale": jnp.zeros_like(bn2["scale"])}}
    out = jax.jit(lambda v, x: block.apply(v, x, train=False))({**variables, "params": params}, x)
    np.testing.assert_allclose(out, jax.nn.relu(zero_pad_shortcut(x, 32, 2)), atol=1e-6)


def test_option_b_projects_only_where_the_shape_changes():
    params = _shapes(cnn_jax.create_model("resnet20", num_classes=10, shortcut="B"))["params"]
    # Two strided 1x1 conv + BN projections: 16->32 and 32->64.
    assert count_params(params) == 269_722 + (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)
    assert "downsample" in params["stage2_block0"] and "downsample" in params["stage3_block0"]
    assert "downsample" not in params["stage1_block0"]


def test_unknown_shortcut_is_a_clear_error():
    model = cnn_jax.create_model("resnet20", shortcut="C")
    with pytest.raises(ValueError, match="unknown CIFAR ResNet shortcut 'C'"):
        _shapes(model)


def _weighted_layers(params) -> tuple[int, int]:
    """(3x3 and 1x1 convs on the residual path + stem + FC, projection convs); scanned kernels count per block."""
    layers_, projections = 0, 0
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        keys = jax.tree_util.keystr(path)
        if not keys.endswith("['kernel']"):
            continue
        scanned = re.search(r"stage\d+_blocks", keys) is not None
        copies = leaf.shape[0] if scanned else 1
        if "downsample" in keys:
            projections += copies
        else:
            layers_ += copies
    return layers_, projections


@pytest.mark.parametrize(
    "name, depth, per_block, stages",
    [(f"resnet{d}", d, 2, 3) for d in (20, 32, 44, 56, 110, 1202)]
    + [("preact_resnet164", 164, 3, 3), ("preact_resnet1001", 1001, 3, 3)],
)
def test_depth_is_6n_plus_2_or_9n_plus_2(name, depth, per_block, stages):
    model = cnn_jax.create_model(name, num_classes=10)
    n = (depth - 2) // (per_block * stages)
    assert all(units == n for units, _ in model.stages)
    weighted, projections = _weighted_layers(_shapes(model)["params"])
    assert weighted == depth == per_block * stages * n + 2
    # Option A has no projections; the pre-act bottleneck nets project once per stage.
    assert projections == (0 if per_block == 2 else stages)


@pytest.mark.parametrize("name, depth, k", [("wrn28_10", 28, 10), ("wrn16_8", 16, 8), ("wrn40_4", 40, 4)])
def test_wide_resnet_depth_and_widths(name, depth, k):
    model = cnn_jax.create_model(name, num_classes=10)
    assert model.stages == tuple(((depth - 4) // 6, w * k) for w in (16, 32, 64))
    weighted, projections = _weighted_layers(_shapes(model)["params"])
    # WRN-d counts stem + 6N convs + FC + 2 projections (d = 6N + 4); with k > 1 stage 1 also projects 16 -> 16k.
    assert weighted + 2 == depth and projections == 3


def test_resnet1202_starts_the_last_branch_bn_at_a_small_scale():
    assert cnn_jax.create_model("resnet1202").residual_gamma_init == 0.1
    assert cnn_jax.create_model("resnet110").residual_gamma_init == 1.0
    model = cnn_jax.create_model("resnet20", residual_gamma_init=0.1, stages=((1, 16),))
    params = jax.jit(lambda x: model.init(jax.random.key(0), x, train=False))(jnp.zeros((1, 8, 8, 3)))["params"]
    np.testing.assert_allclose(params["stage1_block0"]["bn2"]["scale"], 0.1, rtol=1e-6)
    np.testing.assert_array_equal(params["stage1_block0"]["bn1"]["scale"], 1.0)


@pytest.mark.parametrize("name, expected", [("resnet1202", 19_421_274), ("wrn40_4", 8_949_210)])
def test_counts_of_variants_without_a_param_counts_row(name, expected):
    # shared/reference/models.md Sec. 2 (computed for 10 classes).
    assert count_params(_shapes(cnn_jax.create_model(name, num_classes=10))["params"]) == expected


def test_resnet110_sd_survival_probabilities_follow_huang_et_al(monkeypatch):
    model = cnn_jax.create_model("resnet110_sd", num_classes=10)
    assert model.drop_path_rate == 0.5 and cnn_jax.create_model("resnet110").drop_path_rate == 0.0
    units, p_last = 54, 0.5
    expected = [1 - unit / units * (1 - p_last) for unit in range(1, units + 1)]
    survival = [1 - rate for stage in model.drop_path_schedule() for rate in stage]
    np.testing.assert_allclose(survival, expected, rtol=1e-12)
    assert survival[0] == pytest.approx(1 - 0.5 / 54) and survival[-1] == pytest.approx(0.5)

    # The rates the blocks actually receive, in order (unrolled, so they are Python floats).
    seen: list[float] = []
    monkeypatch.setattr(stochastic_depth, "drop_path", lambda x, rate, rng: seen.append(rate) or x)
    unrolled = model.clone(scan_blocks=False)
    images = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
    variables = _shapes(unrolled)
    jax.eval_shape(
        lambda v, x: unrolled.apply(v, x, train=True, rngs={"dropout": jax.random.key(0)}, mutable=["batch_stats"]),
        variables,
        images,
    )
    np.testing.assert_allclose([1 - r for r in seen], expected, rtol=1e-12)


def test_wrn_dropout_acts_only_in_training():
    small = dict(num_classes=10, stages=((1, 16),))
    with_dropout = cnn_jax.create_model("wrn28_10", block_dropout=0.3, **small)
    without = cnn_jax.create_model("wrn28_10", **small)
    x = jax.random.normal(jax.random.key(0), (4, 8, 8, 3))
    variables = jax.jit(lambda x: without.init(jax.random.key(1), x, train=False))(x)

    @jax.jit
    def outputs(v, x):
        def train(model, seed):
            rngs = {"dropout": jax.random.key(seed)}
            return model.apply(v, x, train=True, rngs=rngs, mutable=["batch_stats"])[0].logits

        evals = [m.apply(v, x, train=False).logits for m in (with_dropout, without)]
        return evals, [train(with_dropout, s) for s in (2, 3)], [train(without, s) for s in (2, 3)]

    (eval_dropout, eval_plain), (train_a, train_b), (plain_a, plain_b) = outputs(variables, x)
    np.testing.assert_array_equal(eval_dropout, eval_plain)
    np.testing.assert_array_equal(plain_a, plain_b)
    assert not np.allclose(train_a, train_b)


def _unstack(tree: dict) -> dict:
    """Scanned layout -> one module per block: stage{i}_blocks[j] becomes stage{i}_block{j + 1}."""
    out = {}
    for key, value in tree.items():
        match = re.fullmatch(r"(stage\d+)_blocks", key)
        if not match:
            out[key] = value
            continue
        length = jax.tree_util.tree_leaves(value)[0].shape[0]
        for j in range(length):
            out[f"{match.group(1)}_block{j + 1}"] = jax.tree_util.tree_map(lambda a, j=j: a[j], value)
    return out


@pytest.mark.parametrize(
    "name, overrides",
    [
        ("resnet20", dict(stages=((3, 16), (3, 32)))),
        ("preact_resnet164", dict(stages=((3, 32), (3, 64)))),
        ("wrn28_10", dict(stages=((3, 16),))),
        ("resnet50", dict(stage_sizes=(3, 2), stage_widths=(8, 16))),  # the ImageNet ResNets share the runner
    ],
)
def test_scanned_stages_equal_one_module_per_block(name, overrides):
    scanned = cnn_jax.create_model(name, num_classes=10, scan_blocks=True, **overrides)
    unrolled = scanned.clone(scan_blocks=False)
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
    variables = jax.jit(lambda x: scanned.init(jax.random.key(1), x, train=False))(x)
    # Perturb the BN statistics so a mix-up of blocks would show.
    stats = jax.tree_util.tree_map(
        lambda a: a + 0.1 * jax.random.uniform(jax.random.key(a.size), a.shape), variables["batch_stats"]
    )
    variables = {"params": variables["params"], "batch_stats": stats}
    flat = {collection: _unstack(tree) for collection, tree in variables.items()}
    assert count_params(flat["params"]) == count_params(variables["params"])
    assert jax.tree_util.tree_structure(flat) == jax.tree_util.tree_structure(_shapes(unrolled, 8))

    @jax.jit
    def logits(v_scan, v_flat, x):
        return scanned.apply(v_scan, x, train=False).logits, unrolled.apply(v_flat, x, train=False).logits

    a, b = logits(variables, flat, x)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("depth", [20, 32, 44, 56])
def test_plain_nets_are_the_resnets_without_shortcuts(depth):
    """He et al. 2015 Fig. 6: plain-(6n+2) has the ResNet's layers and parameters (option A adds none) and the same
    variables compute another function: with every branch's second BN silenced, the ResNet passes its input
    through the shortcuts while the plain net outputs constants."""
    plain, resnet = cnn_jax.create_model(f"plain{depth}", num_classes=10), cnn_jax.create_model(f"resnet{depth}",
                                                                                                   num_classes=10)
    shapes = _shapes(plain)
    assert jax.tree_util.tree_map(lambda a: a.shape, shapes) == jax.tree_util.tree_map(lambda a: a.shape,
                                                                                       _shapes(resnet))
    assert count_params(shapes["params"]) == {20: 269_722, 32: 464_154, 44: 658_586, 56: 853_018}[depth]
    x = jax.random.normal(jax.random.key(0), (2, 32, 32, 3))
    variables = jax.jit(lambda x: resnet.init(jax.random.key(1), x, train=False))(x)
    silenced = jax.tree_util.tree_map_with_path(
        lambda path, a: jnp.zeros_like(a) if "bn2" in jax.tree_util.keystr(path) and "scale" in
        jax.tree_util.keystr(path) else a, variables["params"])
    silenced = {**variables, "params": silenced}
    plain_logits = plain.apply(silenced, x, train=False).logits
    resnet_logits = resnet.apply(silenced, x, train=False).logits
    # Branch outputs are just their BN biases (zero at init): the plain net's features are all zero.
    np.testing.assert_allclose(plain_logits[0], plain_logits[1], atol=1e-6)
    assert not np.allclose(resnet_logits[0], resnet_logits[1], atol=1e-3)


def test_plain_nets_refuse_stochastic_depth():
    model = cnn_jax.create_model("plain20", num_classes=10, drop_path_rate=0.1)
    with pytest.raises(ValueError, match="drop_path_rate=0.1 needs shortcuts"):
        model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)
