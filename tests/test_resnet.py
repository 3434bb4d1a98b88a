"""ResNet-family conventions: stride placement, zero-init, stems, shortcuts, widths, SE, drop-path, ResNeSt."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import count_params

import cnn_jax
from cnn_jax.layers import DropPath
from cnn_jax.layers.blocks import BasicBlock, Bottleneck
from cnn_jax.models.resnest import SplitAttention, SplitAttentionBottleneck
from cnn_jax.models.resnet import ResNet, Stem

KEY = jax.random.key(0, impl="rbg")  # compiles much faster than threefry on CPU
EPS = 1e-5  # the "pytorch" BatchNorm epsilon: a fresh BN in eval mode divides by sqrt(1 + EPS)


def _init_shapes(model: nn.Module, shape: tuple[int, ...], **kwargs):
    images = jax.ShapeDtypeStruct(shape, jnp.float32)
    return jax.eval_shape(lambda x: model.init(KEY, x, train=False, **kwargs), images)


def _init_apply(module: nn.Module, x: jax.Array):
    """Variables of a fresh ``module`` and its eval-mode output on ``x``, in one compiled program."""
    return jax.jit(lambda x: module.init_with_output(KEY, x, train=False)[::-1])(x)


def _out_hw(intermediates, *path: str) -> tuple[int, int]:
    node = intermediates
    for key in path:
        node = node[key]
    return tuple(node["__call__"][0].shape[1:3])


def test_stride_in_1x1_moves_the_stride_but_not_the_parameters():
    shapes = {}
    for v1 in (False, True):
        model = cnn_jax.create_model("resnet50", stride_in_1x1=v1)
        shapes[v1] = _init_shapes(model, (1, 64, 64, 3), capture_intermediates=True)
    assert count_params(shapes[False]["params"]) == count_params(shapes[True]["params"])
    # Stage 2 starts at 16x16 and ends at 8x8; v1.5 strides the 3x3 (conv2), v1 the first 1x1 (conv1).
    v15, v1 = shapes[False]["intermediates"], shapes[True]["intermediates"]
    assert _out_hw(v15, "stage2_block0", "conv1") == (16, 16)
    assert _out_hw(v1, "stage2_block0", "conv1") == (8, 8)
    assert _out_hw(v15, "stage2_block0", "conv2") == _out_hw(v1, "stage2_block0", "conv2") == (8, 8)


@pytest.mark.parametrize("block", [BasicBlock, Bottleneck])
def test_zero_init_residual_makes_a_fresh_block_its_shortcut(block):
    planes = 4
    x = jax.nn.relu(jax.random.normal(jax.random.key(1), (2, 5, 5, planes * block.expansion)))  # a block input
    last = "conv2" if block is BasicBlock else "conv3"
    variables, out = _init_apply(block(planes=planes, zero_init_residual=True, se_reduction=2), x)
    np.testing.assert_array_equal(variables["params"][last]["bn"]["scale"], 0.0)
    np.testing.assert_array_equal(variables["params"]["conv1"]["bn"]["scale"], 1.0)
    np.testing.assert_allclose(out, x, atol=1e-6)

    variables, out = _init_apply(block(planes=planes, se_reduction=2), x)
    np.testing.assert_array_equal(variables["params"][last]["bn"]["scale"], 1.0)
    assert not np.allclose(out, x)


def test_zero_init_residual_reaches_every_block_of_the_network():
    model = ResNet(stage_sizes=(1, 2), stage_widths=(4, 8), block=BasicBlock, zero_init_residual=True, num_classes=3)
    variables = jax.jit(lambda x: model.init(KEY, x, train=False))(jnp.zeros((1, 32, 32, 3)))["params"]
    blocks = [name for name in variables if name.startswith("stage")]
    assert blocks == ["stage1_block0", "stage2_block0", "stage2_block1"]
    for name in blocks:
        np.testing.assert_array_equal(variables[name]["conv2"]["bn"]["scale"], 0.0)


STEM_SIZES = [  # (kind, output channels, conv weights + BN gamma/beta)
    ("b", 64, 7 * 7 * 3 * 64 + 2 * 64),
    ("c", 64, 9 * (3 * 32 + 32 * 32 + 32 * 64) + 2 * (32 + 32 + 64)),
    ("s", 128, 9 * (3 * 64 + 64 * 64 + 64 * 128) + 2 * (64 + 64 + 128)),
]


@pytest.mark.parametrize("kind, channels, params", STEM_SIZES)
def test_stem_variants_output_shape_and_size(kind, channels, params):
    images = jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)
    variables, out = jax.eval_shape(lambda x: Stem(kind).init_with_output(KEY, x, train=False)[::-1], images)
    assert out.shape == (1, 56, 56, channels)  # stride 2 conv + stride 2 max pool
    assert count_params(variables["params"]) == params


def test_unknown_stem_is_a_clear_error():
    with pytest.raises(ValueError, match=r"unknown ResNet stem 'x'.*\['b', 'c', 's'\]"):
        _init_shapes(Stem("x"), (1, 32, 32, 3))


@pytest.mark.parametrize("size", [8, 7])
def test_projection_shortcuts(size):
    """With a zero-init branch, a strided block outputs relu(BN(conv1x1(shortcut input))), fresh BN ~ 1/sqrt(1+eps):
    option B subsamples the input, ResNet-D ("avg") averages 2x2 windows (ceil mode, padding left out of the mean)."""
    x = jax.random.normal(jax.random.key(1), (2, size, size, 8))
    outputs = {}
    for shortcut in ("conv", "avg"):
        block = Bottleneck(planes=4, strides=2, shortcut=shortcut, zero_init_residual=True)
        variables, out = _init_apply(block, x)
        outputs[shortcut] = out, variables["params"]["downsample"]["conv"]["kernel"][0, 0]
    out, kernel = outputs["conv"]
    np.testing.assert_allclose(out, jax.nn.relu(x[:, ::2, ::2] @ kernel / np.sqrt(1 + EPS)), rtol=1e-5, atol=1e-5)
    out, kernel = outputs["avg"]
    padded = jnp.pad(x, ((0, 0), (0, size % 2), (0, size % 2), (0, 0)))
    ones = jnp.pad(jnp.ones((1, size, size, 1)), ((0, 0), (0, size % 2), (0, size % 2), (0, 0)))
    window_mean = lambda a: a.reshape(a.shape[0], -1, 2, a.shape[2] // 2, 2, a.shape[3]).sum(axis=(2, 4))  # noqa: E731
    pooled = window_mean(padded) / window_mean(ones)
    assert out.shape[1:3] == ((size + 1) // 2,) * 2
    np.testing.assert_allclose(out, jax.nn.relu(pooled @ kernel / np.sqrt(1 + EPS)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "name, conv1, conv2",
    [
        ("resnet50", (1, 1, 64, 64), (3, 3, 64, 64)),
        ("resnext50_32x4d", (1, 1, 64, 128), (3, 3, 4, 128)),  # 32 groups of 4 channels
        ("resnext101_64x4d", (1, 1, 64, 256), (3, 3, 4, 256)),
        ("wide_resnet50_2", (1, 1, 64, 128), (3, 3, 128, 128)),  # inner 3x3 twice as wide
    ],
)
def test_bottleneck_widths(name, conv1, conv2):
    params = _init_shapes(cnn_jax.create_model(name), (1, 32, 32, 3))["params"]["stage1_block0"]
    assert params["conv1"]["conv"]["kernel"].shape == conv1
    assert params["conv2"]["conv"]["kernel"].shape == conv2
    assert params["conv3"]["conv"]["kernel"].shape[-1] == 256


def test_se_reduces_block_output_channels_by_16():
    params = _init_shapes(cnn_jax.create_model("seresnet50"), (1, 32, 32, 3))["params"]
    for stage, channels in zip(range(1, 5), (256, 512, 1024, 2048), strict=True):
        se = params[f"stage{stage}_block0"]["se"]
        assert se["reduce"]["kernel"].shape == (1, 1, channels, channels // 16)
        assert se["expand"]["kernel"].shape == (1, 1, channels // 16, channels)


def test_senet154_modifications():
    model = cnn_jax.create_model("senet154")
    assert model.drop_rate == 0.2
    params = _init_shapes(model, (1, 32, 32, 3))["params"]
    assert params["stem"]["conv3"]["conv"]["kernel"].shape == (3, 3, 64, 128)  # deep stem 64-64-128
    block = params["stage1_block0"]
    assert block["conv1"]["conv"]["kernel"].shape == (1, 1, 128, 128)  # first 1x1 halved (256 / 2)
    assert block["conv2"]["conv"]["kernel"].shape == (3, 3, 2, 256)  # 64 groups
    assert block["downsample"]["conv"]["kernel"].shape == (1, 1, 128, 256)  # stride 1: stays 1x1
    assert params["stage2_block0"]["downsample"]["conv"]["kernel"].shape == (3, 3, 256, 512)  # strided: 3x3


def _drop_path_rates(model: nn.Module) -> list[float]:
    rates = []

    def record(next_fun, args, kwargs, context):
        if isinstance(context.module, DropPath) and context.method_name == "__call__":
            call_rate = kwargs.get("rate")  # the stage runner's per-call rate, else the module's own
            rates.append(context.module.rate if call_rate is None else call_rate)
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(record):
        _init_shapes(model, (1, 32, 32, 3))
    return rates


@pytest.mark.parametrize(
    "rule, expected", [("huang", [0.125, 0.25, 0.375, 0.5]), ("linspace", [0.0, 1 / 6, 2 / 6, 0.5])]
)
def test_drop_path_rates_decay_linearly_over_all_blocks(rule, expected):
    model = ResNet(
        stage_sizes=(1, 1, 2),
        stage_widths=(4, 8, 8),
        block=BasicBlock,
        num_classes=3,
        drop_path_rate=0.5,
        drop_path_rule=rule,
    )
    np.testing.assert_allclose(_drop_path_rates(model), expected)


def test_default_drop_path_rule_is_huang():
    model = cnn_jax.create_model("resnet18", drop_path_rate=0.4)
    np.testing.assert_allclose(_drop_path_rates(model), [0.4 * (i + 1) / 8 for i in range(8)])


def test_basic_block_rejects_groups():
    with pytest.raises(ValueError, match="BasicBlock supports only groups=1"):
        _init_shapes(cnn_jax.create_model("resnet18", groups=32), (1, 32, 32, 3))


# ----------------------------------------------------------------------------------------------------- ResNeSt
def test_split_attention_is_a_convex_combination_of_the_splits():
    """With both splits identical, the r-softmax weights (summing to 1 over the splits) return that split."""
    features, radix = 8, 2
    half = jax.random.normal(jax.random.key(1), (2, 6, 6, 4))
    x = jnp.concatenate([half, half], axis=-1)  # each of the 2 conv groups sees the same input
    module = SplitAttention(features, radix=radix)

    @jax.jit
    def run(x):
        variables = module.init(KEY, x, train=False)
        kernel = variables["params"]["conv"]["conv"]["kernel"]
        variables["params"]["conv"]["conv"]["kernel"] = kernel.at[..., features:].set(kernel[..., :features])
        return variables, module.apply(variables, x, train=False, capture_intermediates=True)

    variables, (out, state) = run(x)
    split = state["intermediates"]["conv"]["__call__"][0][..., :features]  # same weights, so the same splits
    np.testing.assert_allclose(out, split, rtol=1e-5, atol=1e-6)
    assert variables["params"]["fc1"]["kernel"].shape == (1, 1, features, 32)  # max(8 * 2 / 4, 32)


def test_resnest_block_moves_the_stride_to_an_average_pool():
    block = SplitAttentionBottleneck(planes=64, strides=2, shortcut="avg")
    shapes = _init_shapes(block, (1, 16, 16, 256), capture_intermediates=True)
    assert _out_hw(shapes["intermediates"], "conv2") == (16, 16)
    assert _out_hw(shapes["intermediates"], "avd_pool") == (8, 8)
    params = shapes["params"]
    assert params["conv2"]["conv"]["conv"]["kernel"].shape == (3, 3, 32, 128)  # radix 2 x 64, 2 groups
    assert params["conv2"]["fc1"]["kernel"].shape == (1, 1, 64, 32)
    assert params["conv2"]["fc2"]["kernel"].shape == (1, 1, 32, 128)


def test_resnest_uses_the_resnet_builder_with_deep_stem_and_avg_shortcuts():
    model = cnn_jax.create_model("resnest50d")
    assert isinstance(model, ResNet) and model.block is SplitAttentionBottleneck
    assert (model.stem, model.shortcut, model.radix, model.groups) == ("c", "avg", 2, 1)
    assert cnn_jax.create_model("resnest101e").stem == "s"


def test_resnest_rejects_options_its_block_lacks():
    with pytest.raises(ValueError, match="no se_reduction option"):
        _init_shapes(cnn_jax.create_model("resnest50d", se_reduction=16), (1, 32, 32, 3))
