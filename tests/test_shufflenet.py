"""ShuffleNet v1/v2: channel shuffle, Table 1 widths and group convs, parameter counts against the official Megvii
models (v1 has no exact reference), unit wiring, and clear errors for widths that do not divide into groups."""

from __future__ import annotations

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import count_params, load_models_csv

import cnn_jax
from cnn_jax.models.shufflenet import ShuffleNetV1, ShuffleUnitV1, ShuffleUnitV2, channel_shuffle


def _labelled(channels: int) -> jax.Array:
    return jnp.arange(channels, dtype=jnp.float32).reshape(1, 1, 1, channels)


def test_channel_shuffle_is_the_transpose_permutation():
    out = np.asarray(channel_shuffle(_labelled(12), 3)).ravel().astype(int)
    # (g, n) = (3, 4) transposed: one channel of each input group in turn.
    np.testing.assert_array_equal(out, [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11])
    np.testing.assert_array_equal(np.sort(out), np.arange(12))  # a permutation


@pytest.mark.parametrize("groups, per_group", [(3, 3), (3, 4), (4, 8), (8, 8)])
def test_channel_shuffle_mixes_every_group_into_every_group_and_inverts(groups, per_group):
    channels = groups * per_group
    x = _labelled(channels)
    out = np.asarray(channel_shuffle(x, groups)).ravel().astype(int)
    source_group = out // per_group
    for next_group in source_group.reshape(groups, per_group):  # the groups the next group conv sees
        counts = np.bincount(next_group, minlength=groups)
        assert (counts > 0).all(), f"an output group misses an input group: {next_group}"
        if per_group == groups:
            np.testing.assert_array_equal(counts, np.ones(groups))  # exactly one channel from each
    np.testing.assert_array_equal(channel_shuffle(channel_shuffle(x, groups), per_group), x)


def test_channel_shuffle_rejects_indivisible_channels():
    with pytest.raises(ValueError, match="10 channels do not split into 3 equal groups"):
        channel_shuffle(_labelled(10), 3)


def _params(model, resolution: int = 32) -> dict:
    images = jax.ShapeDtypeStruct((1, resolution, resolution, 3), jnp.float32)
    return jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), images)["params"]


def test_v1_table1_widths_and_ungrouped_first_pointwise_conv():
    params = _params(cnn_jax.create_model("shufflenet_v1_g3"))
    # Flax grouped kernels are (kh, kw, in / groups, out). Stage 2, unit 0: 24 -> 240, bottleneck 60.
    unit = params["stage2_block0"]
    assert unit["conv1"]["conv"]["kernel"].shape == (1, 1, 24, 60)  # not grouped (Sec. 3.3)
    assert unit["conv2_dw"]["conv"]["kernel"].shape == (3, 3, 1, 60)
    assert unit["conv3"]["conv"]["kernel"].shape == (1, 1, 20, 240 - 24)  # grouped, concat fills to 240
    assert params["stage2_block1"]["conv1"]["conv"]["kernel"].shape == (1, 1, 80, 60)  # grouped from then on
    assert params["stage3_block0"]["conv3"]["conv"]["kernel"].shape == (1, 1, 40, 480 - 240)
    assert params["stage4_block3"]["conv3"]["conv"]["kernel"].shape == (1, 1, 80, 960)
    assert len([k for k in params if k.startswith("stage3_")]) == 8
    assert params["head"]["fc"]["kernel"].shape == (960, 1000)


# Exact counts of this layout (1000 classes); the Megvii models print 1.9M (g=3) and 2.4M (g=8).
V1_COUNTS = {1: 1_531_936, 2: 1_733_848, 3: 1_865_728, 4: 1_968_344, 8: 2_434_768}


@pytest.mark.parametrize("groups", sorted(V1_COUNTS))
def test_v1_registered_counts(groups):
    assert count_params(_params(cnn_jax.create_model(f"shufflenet_v1_g{groups}"))) == V1_COUNTS[groups]


# First-conv widths of Megvii's official models (ShuffleNetV1/network.py), by (groups, scale).
MEGVII_STEM = {
    (3, 0.5): 12,
    (3, 1.0): 24,
    (3, 1.5): 24,
    (3, 2.0): 48,
    (8, 0.5): 16,
    (8, 1.0): 24,
    (8, 1.5): 24,
    (8, 2.0): 48,
}


def _megvii_v1_rows() -> list[tuple[float, int, int]]:
    rows = []
    for row in load_models_csv():
        m = re.fullmatch(r"ShuffleNet v1 ([\d.]+)x g=(\d) \(official Megvii PyTorch retrain\)", row["variant"])
        if m:
            rows.append((float(m[1]), int(m[2]), int(row["params"])))
    return rows


def test_models_csv_has_the_megvii_v1_rows():
    assert {(g, s) for s, g, _ in _megvii_v1_rows()} == set(MEGVII_STEM)


@pytest.mark.parametrize("scale, groups, official", _megvii_v1_rows())
def test_v1_counts_within_5_percent_of_megvii(scale, groups, official):
    model = ShuffleNetV1(groups=groups, scale=scale, stem_features=MEGVII_STEM[(groups, scale)])
    got = count_params(_params(model))
    assert abs(got - official) <= 0.05 * official, f"{scale}x g={groups}: {got:,} vs official {official:,}"


def test_v1_indivisible_widths_are_clear_errors():
    # 0.5x g=8: stem 12 leaves 192 - 12 = 180 channels for the first unit's group conv, not divisible by 8.
    with pytest.raises(ValueError, match=r"stage2_block0: output channels 180 do not divide into 8 groups"):
        _params(ShuffleNetV1(groups=8, scale=0.5))
    assert count_params(_params(ShuffleNetV1(groups=8, scale=0.5, stem_features=16))) > 0
    with pytest.raises(ValueError, match=r"groups must be one of \[1, 2, 3, 4, 8\]"):
        _params(ShuffleNetV1(groups=5))


def test_v1_stride2_unit_concatenates_the_average_pooled_input():
    x = jnp.abs(jax.random.normal(jax.random.key(0), (2, 6, 6, 24)))  # non-negative: ReLU leaves the pool as is
    unit = ShuffleUnitV1(96, groups=3, strides=2)
    out, _ = jax.jit(lambda x: unit.init_with_output(jax.random.key(1), x, train=False))(x)
    assert out.shape == (2, 3, 3, 96)
    pooled = nn.avg_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)), count_include_pad=True)
    np.testing.assert_allclose(out[..., :24], pooled, rtol=1e-6)


def test_v1_stride1_unit_is_residual():
    x = jax.random.normal(jax.random.key(0), (2, 4, 4, 48))
    unit = ShuffleUnitV1(48, groups=3)
    variables = jax.jit(lambda x: unit.init(jax.random.key(1), x, train=False))(x)
    # Zeroing the last BN's scale and shift silences the branch: the unit is then relu(x).
    zeroed = jax.tree_util.tree_map(jnp.zeros_like, variables["params"]["conv3"]["bn"])
    params = {**variables["params"], "conv3": {**variables["params"]["conv3"], "bn": zeroed}}
    out = jax.jit(lambda v, x: unit.apply(v, x, train=False))({**variables, "params": params}, x)
    np.testing.assert_allclose(out, jax.nn.relu(x), rtol=1e-6)


def test_v2_stride1_unit_passes_half_the_channels_through_interleaved():
    x = jax.random.normal(jax.random.key(0), (2, 4, 4, 16))
    out, _ = jax.jit(lambda x: ShuffleUnitV2(16).init_with_output(jax.random.key(1), x, train=False))(x)
    # concat([x[:8], branch]) shuffled with 2 groups puts the untouched half on the even channels.
    np.testing.assert_array_equal(out[..., 0::2], x[..., :8])


def test_v2_has_no_drop_path_and_rejects_odd_widths():
    with pytest.raises(ValueError, match="cannot honour drop_path_rate"):
        cnn_jax.create_model("shufflenet_v2_x1_0", drop_path_rate=0.1)
    with pytest.raises(ValueError, match="output channels 17 must be even"):
        ShuffleUnitV2(17, strides=2).init(jax.random.key(0), jnp.zeros((1, 4, 4, 8)), train=False)


def test_v1_accepts_drop_path_rate():
    model = cnn_jax.create_model("shufflenet_v1_g3", drop_path_rate=0.1)
    assert model.drop_path_rate == 0.1


@pytest.mark.parametrize("scale", ["x0_5", "x1_0"])
def test_v2_small_image_variant_keeps_a_4x4_map_at_conv5(scale):
    """Conv1 at stride 1 without the max pool: the ImageNet layout's parameters, and at 32 px Conv5 sees 4x4
    instead of 1x1."""
    from cnn_jax.analysis import layer_table

    small = cnn_jax.create_model(f"shufflenet_v2_{scale}_cifar", num_classes=10)
    imagenet = cnn_jax.create_model(f"shufflenet_v2_{scale}", num_classes=10)
    images = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)

    def params(model):
        return jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), images)["params"]

    assert count_params(params(small)) == count_params(params(imagenet))
    assert "stem_pool" not in {layer.path for layer in layer_table(small, 32)}
    conv5 = {layer.path: layer.output_shape[1:3] for layer in layer_table(small, 32)}["conv5/conv"]
    assert conv5 == (4, 4)
    assert {layer.path: layer.output_shape[1:3] for layer in layer_table(imagenet, 32)}["conv5/conv"] == (1, 1)
