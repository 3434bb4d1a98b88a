"""MBConv families (MobileNet v1/v2/v3, MnasNet, EfficientNet): stage-string decoder, rounding rules, SE reduction,
compound scaling, padding and BatchNorm conventions. Shape/count checks use ``jax.eval_shape``."""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import count_params

import cnn_jax
from cnn_jax import layers
from cnn_jax.analysis import analyze, layer_table
from cnn_jax.layers.mbconv import (
    BlockGroup,
    BlockSpec,
    InvertedResidual,
    MBConvNet,
    build_blocks,
    decode_block_group,
    round_channels,
    round_repeats,
)
from cnn_jax.models.efficientnet import (
    EFFICIENTNET_B0_STAGES,
    EFFICIENTNET_PARAMS,
    EfficientNetPhi,
    compound_scale,
    efficientnet_phi_resolution,
)
from cnn_jax.models.mobilenet import MOBILENET_V3_LARGE_STAGES


def _params(model: nn.Module, resolution: int = 32) -> dict:
    images = jax.ShapeDtypeStruct((1, resolution, resolution, model.in_channels), jnp.float32)
    return jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), images)["params"]


def _record(model: nn.Module, module_type: type, attributes: tuple[str, ...], *, train: bool = False) -> list:
    """Attributes of every ``module_type`` called in one abstract forward."""
    seen = []

    def interceptor(next_fun, args, kwargs, context):
        if isinstance(context.module, module_type) and context.method_name == "__call__":
            seen.append(tuple(getattr(context.module, a) for a in attributes))
        return next_fun(*args, **kwargs)

    images = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), images)
    with nn.intercept_methods(interceptor):
        jax.eval_shape(lambda v, x: model.apply(v, x, train=train, rngs={"dropout": jax.random.key(0)},
                                                mutable=["batch_stats"]), variables, images)
    return seen


# ---------------------------------------------------------------------------------------------------------------
# Stage strings


def test_decode_block_group_reads_every_token():
    assert decode_block_group("ir_r2_k5_s2_e6_c40_se0.25") == BlockGroup("ir", 2, 5, 2, 40, expansion=6.0,
                                                                         se_ratio=0.25)
    assert decode_block_group("ir_r1_k3_s1_x184_c80_relu_noskip") == BlockGroup(
        "ir", 1, 3, 1, 80, expanded_channels=184, act="relu", skip=False)
    assert decode_block_group("ds_r6_k3_s2_c512") == BlockGroup("ds", 6, 3, 2, 512)


@pytest.mark.parametrize(
    "text, message",
    [
        ("mb_r1_k3_s1_e1_c16", "unknown block kind 'mb'"),
        ("ir_r1_k3_s1_e1_c16_sw1sh", "unknown token 'sw1sh'"),
        ("ir_r1.5_k3_s1_e1_c16", "'r1.5' needs an integer"),
        ("ir_k3_s1_e1_c16", r"lacks \['repeats'\]"),
        ("ir_r1_k3_s1_c16", "exactly one of e<ratio> or x<channels>"),
        ("ir_r1_k3_s1_e6_x96_c16", "exactly one of e<ratio> or x<channels>"),
        ("ds_r1_k3_s1_e6_c16", "'ds' has no expansion"),
    ],
)
def test_decode_block_group_errors_name_the_fault(text, message):
    with pytest.raises(ValueError, match=message):
        decode_block_group(text)


# ---------------------------------------------------------------------------------------------------------------
# Rounding rules


def test_round_channels_is_a_multiple_of_8_never_more_than_10_percent_smaller():
    for tenths in range(10, 40):
        width = tenths / 10
        for channels in (16, 24, 32, 40, 80, 112, 192, 320, 1280):
            rounded = round_channels(channels, width)
            assert rounded % 8 == 0
            assert rounded >= 0.9 * channels * width, (channels, width, rounded)
            assert abs(rounded - channels * width) <= 8
    assert round_channels(32, 1.1) == 32  # 35.2 -> nearest multiple of 8
    assert round_channels(40, 1.1) == 48  # 44 -> 48 (halves up)
    assert round_channels(12, 1.0) == 16  # 12 -> 8 would shrink by a third
    assert round_channels(3, 1.0) == 8  # never below the divisor


def test_round_repeats_rounds_up():
    assert [round_repeats(r, 1.1) for r in (1, 2, 3, 4)] == [2, 3, 4, 5]
    assert [round_repeats(r, 3.1) for r in (1, 2, 3, 4)] == [4, 7, 10, 13]
    assert round_repeats(3, 1.0) == 3


@pytest.mark.parametrize("variant, blocks", [("b0", 16), ("b1", 23), ("b4", 32), ("b7", 55)])
def test_efficientnet_depth_scaling_block_counts(variant, blocks):
    stages = build_blocks(EFFICIENTNET_B0_STAGES, 32, act="swish", depth_mult=EFFICIENTNET_PARAMS[variant].depth)
    assert sum(map(len, stages)) == blocks


# ---------------------------------------------------------------------------------------------------------------
# Squeeze-and-excitation reduction


def test_efficientnet_se_reduces_from_block_input():
    stages = build_blocks(EFFICIENTNET_B0_STAGES, 32, act="swish")
    block = stages[1][0]  # MBConv6 16 -> 24: expanded 96
    assert (block.in_channels, block.expanded_channels, block.se_channels) == (16, 96, 4)
    from_expanded = build_blocks(EFFICIENTNET_B0_STAGES, 32, act="swish", se_rule="expanded")[1][0]
    assert from_expanded.se_channels == 24
    params = _params(cnn_jax.create_model("efficientnet_b0"))
    assert params["stage2_block0"]["se"]["reduce"]["kernel"].shape == (1, 1, 96, 4)


def test_mobilenet_v3_se_reduces_from_expanded_width_rounded_to_8():
    stages = build_blocks(MOBILENET_V3_LARGE_STAGES, 16, act="hswish", se_rule="expanded")
    block = stages[2][0]  # exp 72 -> make_divisible(18) = 24 (16 would shrink by > 10%)
    assert (block.expanded_channels, block.se_channels, block.act) == (72, 24, "relu")
    assert stages[3][0].act == "hswish" and stages[3][0].se_channels == 0


def test_mobilenet_v3_se_gate_is_hard_sigmoid():
    seen = _record(cnn_jax.create_model("mobilenet_v3_small"), layers.SqueezeExcite, ("act", "gate"))
    assert seen and all(gate is layers.hard_sigmoid and act is nn.relu for act, gate in seen)
    seen = _record(cnn_jax.create_model("efficientnet_b0"), layers.SqueezeExcite, ("act", "gate"))
    assert seen and all(gate is nn.sigmoid and act is nn.swish for act, gate in seen)


# ---------------------------------------------------------------------------------------------------------------
# Compound scaling


def test_compound_scale_follows_the_paper():
    a, b, g = 1.2, 1.1, 1.15
    assert a * b**2 * g**2 == pytest.approx(1.92, abs=0.005)  # "alpha * beta^2 * gamma^2 ~= 2" (Sec. 3.3)
    for phi in (0.0, 1.0, 2.5, 7.0):
        assert compound_scale(phi) == pytest.approx((a**phi, b**phi, g**phi))
    assert compound_scale(0) == (1.0, 1.0, 1.0)
    assert compound_scale(2, alpha=1.4, beta=1.2, gamma=1.0) == pytest.approx((1.96, 1.44, 1.0))
    assert [efficientnet_phi_resolution(p) for p in (0, 1, 2, 3)] == [224, 258, 296, 341]  # 224 * 1.15^phi
    assert efficientnet_phi_resolution(1, gamma=1.3) == 291  # 291.2


def test_efficientnet_phi_matches_the_published_models_where_coefficients_agree():
    b0 = count_params(_params(cnn_jax.create_model("efficientnet_b0")))
    assert count_params(_params(EfficientNetPhi(phi=0.0))) == b0
    # phi = 1 gives width 1.1, depth 1.2: B2's published coefficients (B2 trains at 260, phi=1 at 258).
    b2 = count_params(_params(cnn_jax.create_model("efficientnet_b2")))
    assert count_params(_params(cnn_jax.create_model("efficientnet_phi", phi=1.0))) == b2


def test_efficientnet_phi_flops_roughly_double_per_step():
    # Sec. 3.3: FLOPs scale by (alpha * beta^2 * gamma^2)^phi = 1.92^phi. Single steps drift from 1.92 because widths
    # snap to multiples of 8 (up to ~+-5% per width, squared in the FLOPs), repeats round up (a stage gains a whole
    # block or none: phi 0 -> 1 takes B0's 16 blocks to 23, x1.44 instead of x1.2, hence ~2.6), the resolution is an
    # integer and the stem/head scale with width only. [1.6, 2.8] per step and [1.8, 2.2] on the geometric mean
    # over three steps allow that drift and still reject linear (~1.3x) or missing (1x / ~4x) scaling.
    macs = [analyze(EfficientNetPhi(phi=float(p)), efficientnet_phi_resolution(p)).macs for p in range(4)]
    ratios = [b / a for a, b in zip(macs, macs[1:], strict=False)]
    assert all(1.6 <= r <= 2.8 for r in ratios), ratios
    assert 1.8 <= (macs[3] / macs[0]) ** (1 / 3) <= 2.2, ratios
    # B0 at 224: 0.386 G multiply-adds (models.md Sec. 3, torchvision _ops 0.386; paper 0.39B).
    assert macs[0] == pytest.approx(0.386e9, rel=0.002)


# ---------------------------------------------------------------------------------------------------------------
# Conventions: padding, BatchNorm, drop-path


def test_padding_same_shifts_stride2_sampling_but_not_shapes_or_counts():
    spec = BlockSpec("ir", 8, 16, 48, 5, 2, 2, "swish")
    images = jax.random.normal(jax.random.key(0), (1, 8, 8, 8))
    symmetric = InvertedResidual(spec, padding="symmetric")
    same = InvertedResidual(spec, padding="same")
    variables = symmetric.init(jax.random.key(1), images, train=False)
    out_symmetric = symmetric.apply(variables, images, train=False)
    out_same = same.apply(variables, images, train=False)  # the same parameters fit both
    assert out_symmetric.shape == out_same.shape == (1, 4, 4, 16)
    assert not np.allclose(out_symmetric, out_same)
    model = cnn_jax.create_model("efficientnet_b0")
    assert count_params(_params(model)) == count_params(_params(model.clone(padding="same")))


@pytest.mark.parametrize(
    "name, convention",
    [("mobilenet_v1_100", "pytorch"), ("mobilenet_v2", "pytorch"), ("mobilenet_v3_large", "tf"),
     ("mnasnet1_0", "tf"), ("efficientnet_b0", "tf")],
)
def test_batchnorm_convention_is_a_field(name, convention):
    model = cnn_jax.create_model(name)
    assert model.norm_convention == convention
    seen = set(_record(model, nn.BatchNorm, ("momentum", "epsilon")))
    assert seen == {layers.BN_CONVENTIONS[convention]}
    other = "pytorch" if convention == "tf" else "tf"
    assert set(_record(model.clone(norm_convention=other), nn.BatchNorm, ("momentum", "epsilon"))) == {
        layers.BN_CONVENTIONS[other]}


def test_drop_connect_grows_linearly_over_blocks():
    model = cnn_jax.create_model("efficientnet_b0", drop_path_rate=0.2)
    rates = [r for (r,) in _record(model, layers.DropPath, ("rate",), train=True)]
    # 16 blocks, rate * i / 16 for the residual ones (blocks 0, 1, 3, 5, 8, 11 change shape: no drop-path).
    expected = [0.2 * i / 16 for i in (2, 4, 6, 7, 9, 10, 12, 13, 14)]
    assert rates == pytest.approx(expected)


# ---------------------------------------------------------------------------------------------------------------
# Family specifics


def test_mobilenet_v1_width_multipliers_match_paper_table_6():
    # Table 6: 1.0 / 0.75 / 0.5 / 0.25 MobileNet-224 have 4.2 / 2.6 / 1.3 / 0.5 million parameters.
    for name, millions in (("mobilenet_v1_100", 4.2), ("mobilenet_v1_075", 2.6), ("mobilenet_v1_050", 1.3),
                           ("mobilenet_v1_025", 0.5)):
        assert round(count_params(_params(cnn_jax.create_model(name))) / 1e6, 1) == millions, name
    params = _params(cnn_jax.create_model("mobilenet_v1_025"))
    assert params["stem"]["conv"]["kernel"].shape[-1] == 8
    assert params["head"]["fc"]["kernel"].shape == (256, 1000)


def test_mobilenet_v2_last_conv_is_not_thinned():
    thin = _params(cnn_jax.create_model("mobilenet_v2", width_mult=0.5))
    wide = _params(cnn_jax.create_model("mobilenet_v2", width_mult=1.4))
    assert thin["head_conv"]["conv"]["kernel"].shape[-1] == 1280
    assert wide["head_conv"]["conv"]["kernel"].shape[-1] == 1792
    assert thin["stage7_block0"]["project"]["conv"]["kernel"].shape[-1] == 160


def test_mnasnet_sepconv_has_no_expansion_and_no_skip():
    stages = build_blocks(cnn_jax.create_model("mnasnet0_5").stages, 16, act="relu", width_mult=0.5)
    sepconv = stages[0][0]
    assert (sepconv.in_channels, sepconv.expanded_channels, sepconv.out_channels) == (16, 16, 8)
    tiny = build_blocks(cnn_jax.create_model("mnasnet0_5").stages, 8, act="relu", width_mult=0.25)[0][0]
    assert tiny.in_channels == tiny.out_channels == 8 and not tiny.residual  # noskip, as the official B1
    params = _params(cnn_jax.create_model("mnasnet1_0"))
    assert "expand" not in params["stage1_block0"] and "se" not in params["stage4_block1"]


def test_expansion_conv_only_where_widths_differ():
    params = _params(cnn_jax.create_model("efficientnet_b7"))
    assert "expand" not in params["stage1_block1"] and "expand" in params["stage2_block0"]
    assert params["stage1_block0"]["depthwise"]["conv"]["kernel"].shape == (3, 3, 1, 64)
    assert math.prod(params["head"]["fc"]["kernel"].shape) == 2560 * 1000


@pytest.mark.parametrize("small, imagenet", [("mobilenet_v2_cifar", "mobilenet_v2"),
                                             ("efficientnet_b0_cifar", "efficientnet_b0")])
def test_small_image_variants_move_the_stem_stride_only(small, imagenet):
    """The 28-32 px variants: the same parameters; at 32 px the stem keeps the full resolution, so every layer
    after it sees what the ImageNet layout sees at 64 px (same multiply-adds) and the last stage runs at 2x2."""
    model, reference = cnn_jax.create_model(small, num_classes=10), cnn_jax.create_model(imagenet, num_classes=10)
    assert count_params(_params(model)) == count_params(_params(reference))
    assert analyze(model, 32).program_macs == analyze(reference, 64).program_macs
    sizes = {layer.path: layer.output_shape[1:3] for layer in layer_table(model, 32)}
    assert sizes["stem/conv"] == (32, 32) and sizes["head_conv/conv"] == (2, 2)
    images = jax.ShapeDtypeStruct((2, 28, 28, 3), jnp.float32)  # Fashion-MNIST's own size runs too
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), images)
    logits = jax.eval_shape(lambda v, x: model.apply(v, x, train=False).logits, variables, images)
    assert logits.shape == (2, 10)


def test_the_mbconv_families_are_one_network_with_their_defaults():
    """MobileNet v2/v3, MnasNet and EfficientNet are MBConvNet with their own stage strings and head (their exact
    parameter counts are checked against the references in test_models.py); efficientnet_phi's multipliers come
    from its coefficients only."""
    for name in ("mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small", "mnasnet1_0", "efficientnet_b0",
                 "efficientnet_phi"):
        assert isinstance(cnn_jax.create_model(name), MBConvNet), name
    with pytest.raises(ValueError, match=r"width_mult=2.0, depth_mult=1.0; expected 1"):
        _params(EfficientNetPhi(width_mult=2.0))
    with pytest.raises(ValueError, match=r"head='pooled'; expected one of"):
        _params(MBConvNet(stages=EFFICIENTNET_B0_STAGES, head="pooled"))
