"""Shared layers: rounding, drop-path rules and behaviour, BatchNorm conventions, pooling, SE."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax import layers


@pytest.mark.parametrize(
    "value, expected",
    [(32, 32), (33.6, 32), (35.2, 32), (36, 40), (16 * 0.25, 8), (24 * 1.1, 24), (112 * 1.1, 120), (14, 16)],
)
def test_make_divisible_rounds_to_nearest_multiple_of_8(value, expected):
    assert layers.make_divisible(value) == expected


def test_make_divisible_never_shrinks_more_than_ten_percent():
    for value in np.arange(8, 2000, 0.7):
        rounded = layers.make_divisible(value)
        assert rounded % 8 == 0 and rounded >= 0.9 * value, value


def test_drop_path_rules():
    # Huang et al. 2016: p_L = 0.5 over L = 54 blocks (ResNet-110); block l (1-based) drops l/L * 0.5.
    huang = layers.drop_path_rates(0.5, 54, "huang")
    assert huang[0] == pytest.approx(0.5 / 54) and huang[-1] == pytest.approx(0.5)
    assert layers.drop_path_rates(0.2, 16, "efficientnet") == pytest.approx([0.2 * i / 16 for i in range(16)])
    linspace = layers.drop_path_rates(0.1, 5, "linspace")
    assert linspace == pytest.approx([0.0, 0.025, 0.05, 0.075, 0.1])
    with pytest.raises(ValueError, match="unknown drop-path rule 'cosine'"):
        layers.drop_path_rates(0.1, 5, "cosine")


def test_drop_path_drops_whole_samples_and_rescales():
    x = jnp.ones((512, 4, 4, 3))
    out = layers.DropPath(0.25).apply({}, x, train=True, rngs={"dropout": jax.random.key(0)})
    per_sample = np.asarray(out).reshape(512, -1)
    # Each sample is either all zeros or all 1/keep: dropped as a whole, never per element.
    values = np.unique(per_sample)
    assert len(values) == 2 and values[0] == 0.0 and values[1] == pytest.approx(1 / 0.75)
    assert np.all(per_sample.min(axis=1) == per_sample.max(axis=1))
    kept = (per_sample[:, 0] > 0).mean()
    assert 0.65 < kept < 0.85  # binomial(512, 0.75): 0.75 +- 4.6 sigma
    np.testing.assert_array_equal(layers.DropPath(0.25).apply({}, x, train=False), x)


@pytest.mark.parametrize(("convention", "decay", "epsilon"), [("tf", 0.99, 1e-3), ("pytorch", 0.9, 1e-5)])
def test_batch_norm_conventions_update_and_normalise_as_their_frameworks(convention, decay, epsilon):
    """One training step moves the running mean by (1 - decay) of the batch mean (TF's decay, PyTorch's 1 -
    momentum), and evaluation divides by sqrt(running variance + epsilon)."""
    x = jax.random.normal(jax.random.key(0), (16, 3)) * 2.0 + 5.0
    train = layers.batch_norm(convention, train=True)
    variables = train.init(jax.random.key(1), x)
    _, updated = train.apply(variables, x, mutable=["batch_stats"])
    stats = updated["batch_stats"]
    np.testing.assert_allclose(stats["mean"], (1 - decay) * x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(stats["var"], decay + (1 - decay) * x.var(0), rtol=1e-5)
    evaluated = layers.batch_norm(convention, train=False).apply({**variables, "batch_stats": stats}, x)
    np.testing.assert_allclose(evaluated, (x - stats["mean"]) / np.sqrt(stats["var"] + epsilon), rtol=1e-4,
                               atol=1e-5)


def test_an_unknown_batch_norm_convention_is_refused():
    with pytest.raises(ValueError, match="unknown BatchNorm convention 'caffe'"):
        layers.batch_norm("caffe", train=True)


def test_conv_norm_act_zero_init_and_padding():
    x = jnp.ones((1, 9, 9, 4))
    for padding, expected in (("symmetric", (1, 5, 5, 8)), ("same", (1, 5, 5, 8))):
        block = layers.ConvNormAct(8, 3, strides=2, padding=padding, zero_init_norm=True)
        variables = block.init(jax.random.key(0), x, train=False)
        assert variables["params"]["bn"]["scale"].sum() == 0
        assert block.apply(variables, x, train=False).shape == expected
    with pytest.raises(ValueError, match="unknown padding mode 'reflect'"):
        layers.conv_padding(3, 1, 1, "reflect")


def test_same_and_symmetric_padding_differ_at_stride_2():
    # TF "SAME" pads (0, 1) for k=3, s=2 on an even input; symmetric pads (1, 1): same shape, shifted windows.
    x = jax.random.normal(jax.random.key(1), (1, 8, 8, 1))
    sym = layers.ConvNormAct(1, 3, strides=2, padding="symmetric", norm=False, act=None)
    same = layers.ConvNormAct(1, 3, strides=2, padding="same", norm=False, act=None)
    params = sym.init(jax.random.key(0), x, train=False)
    a, b = sym.apply(params, x, train=False), same.apply(params, x, train=False)
    assert a.shape == b.shape == (1, 4, 4, 1)
    assert not np.allclose(a, b)


@pytest.mark.parametrize("size, window, stride, padding", [(56, 3, 2, 0), (112, 3, 2, 0), (14, 3, 2, 0), (7, 3, 2, 1)])
def test_pool_ceil_mode_matches_pytorch_output_size(size, window, stride, padding):
    expected = -(-(size + 2 * padding - window) // stride) + 1
    if (expected - 1) * stride >= size + padding:
        expected -= 1
    x = jnp.zeros((1, size, size, 2))
    out = layers.Pool("max", window, stride, padding=padding, ceil_mode=True).apply({}, x)
    assert out.shape == (1, expected, expected, 2)


def test_avg_pool_count_include_pad():
    x = jnp.ones((1, 4, 4, 1))
    with_pad = layers.Pool("avg", 3, 1, padding=1, count_include_pad=True).apply({}, x)
    without = layers.Pool("avg", 3, 1, padding=1, count_include_pad=False).apply({}, x)
    assert float(with_pad[0, 0, 0, 0]) == pytest.approx(4 / 9)  # corner: 4 real pixels of 9
    np.testing.assert_allclose(without, 1.0)


def test_adaptive_avg_pool_matches_pytorch_bins():
    x = jnp.arange(5 * 5, dtype=jnp.float32).reshape(1, 5, 5, 1)
    out = layers.adaptive_avg_pool(x, 3)
    # PyTorch bins for 5 -> 3: [0,2), [1,4), [3,5)
    bins = [(0, 2), (1, 4), (3, 5)]
    expected = np.array([[np.asarray(x)[0, a:b, c:d, 0].mean() for c, d in bins] for a, b in bins])
    np.testing.assert_allclose(out[0, :, :, 0], expected)
    assert layers.adaptive_avg_pool(jnp.ones((2, 1, 1, 4)), 7).shape == (2, 7, 7, 4)


def test_squeeze_excite_uses_explicit_reduced_channels():
    se = layers.SqueezeExcite(reduced_channels=4)
    x = jnp.ones((2, 3, 3, 64))
    params = se.init(jax.random.key(0), x)["params"]
    assert params["reduce"]["kernel"].shape == (1, 1, 64, 4)
    assert params["expand"]["kernel"].shape == (1, 1, 4, 64)
    assert se.apply({"params": params}, x).shape == x.shape


def test_hard_swish_matches_definition():
    x = jnp.linspace(-5, 5, 101)
    np.testing.assert_allclose(layers.hard_swish(x), x * np.clip(x + 3, 0, 6) / 6, rtol=1e-6)


def test_check_images_names_model_and_shape():
    with pytest.raises(ValueError, match=r"lenet5 expects images of shape \(batch, height, width, 1\).*\(2, 32, 32\)"):
        layers.check_images(jnp.zeros((2, 32, 32)), 1, "lenet5")
