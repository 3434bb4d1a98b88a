"""The plain families: LeNet-5, AlexNet / ZFNet, VGG, NiN (paper facts, options and conventions)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import count_params

import cnn_jax
from cnn_jax.analysis import layer_table, model_stats
from cnn_jax.models.alexnet import LRN_CONVENTIONS, LocalResponseNorm
from cnn_jax.models.lenet import LECUN_C3_TABLE, EuclideanRBF, PartialConv, Subsampling, scaled_tanh

PLAIN = ["lenet5", "lenet5_paper", "alexnet", "alexnet_paper", "zfnet", "nin_imagenet"] + [
    f"vgg{d}{bn}" for d in (11, 13, 16, 19) for bn in ("", "_bn")
]


def _params(model, resolution: int, channels: int = 3):
    images = jax.ShapeDtypeStruct((1, resolution, resolution, channels), jnp.float32)
    return jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), images)["params"]


def _sizes(name: str, resolution: int, **overrides) -> dict[str, tuple[int, ...]]:
    layers = layer_table(cnn_jax.create_model(name, **overrides), resolution)
    return {layer.path: layer.output_shape[1:] for layer in layers}


@pytest.mark.parametrize("name", PLAIN)
def test_no_drop_path_on_networks_without_residual_blocks(name):
    with pytest.raises(ValueError, match="no residual blocks"):
        cnn_jax.create_model(name, drop_path_rate=0.1)


# ---------------------------------------------------------------------------------------------------------------
# LeNet-5

# Table I of LeCun et al. 1998: rows = S2 maps, columns = C3 maps, X = connected.
TABLE_I = """
X...XXX..XXXX.XX
XX...XXX..XXXX.X
XXX...XXX..X.XXX
.XXX..XXXX..X.XX
..XXX..XXXX.XX.X
...XXX..XXXX.XXX
"""
# Per layer: (parameters, connections) from Sec. II.B (10 RBF output units of 84 inputs each).
LENET_PAPER_LAYERS = {
    "c1": (156, 122_304),
    "s2": (12, 5_880),
    "c3": (1_516, 151_600),
    "s4": (32, 2_000),
    "c5": (48_120, 48_120),
    "f6": (10_164, 10_164),
    "output": (840, 840),
}


def test_c3_connection_table_is_table_one():
    rows = TABLE_I.split()
    from_table = tuple(frozenset(s2 for s2 in range(6) if rows[s2][c3] == "X") for c3 in range(16))
    assert tuple(frozenset(m) for m in LECUN_C3_TABLE) == from_table
    assert all(row.count("X") == 10 for row in rows)  # every S2 map feeds 10 C3 maps


def test_lenet5_paper_per_layer_counts_are_the_papers():
    layers = layer_table(cnn_jax.create_model("lenet5_paper", num_classes=10), 32)
    groups: dict[str, list] = {}
    for layer in layers:
        groups.setdefault(layer.path.split("/")[0], []).append(layer)
    assert list(groups) == list(LENET_PAPER_LAYERS)
    for name, (params, connections) in LENET_PAPER_LAYERS.items():
        rows = groups[name]
        assert sum(r.params for r in rows) == params, name
        # Connections = weighted inputs + one bias per unit (none on the RBF output). A subsampling unit has 4
        # inputs (the pool window) and a bias; its coefficient multiply is no connection.
        units = sum(math.prod(r.output_shape[1:]) for r in rows if r.kind in ("conv", "dense"))
        weighted = rows[0].macs if name in ("s2", "s4") else sum(r.macs for r in rows)
        assert weighted + (0 if name == "output" else units) == connections, name
    assert sum(p for n, (p, _) in LENET_PAPER_LAYERS.items() if n != "output") == 60_000  # paper's figure
    assert sum(c for _, c in LENET_PAPER_LAYERS.values()) == 340_908  # paper's connection count
    assert count_params(_params(cnn_jax.create_model("lenet5_paper", num_classes=10), 32, 1)) == 60_840


def test_lenet5_modern_matches_the_computed_row():
    """models.md "LeNet-5 modern (full C3, 120-84-10)": 61,706 params, 416,520 MACs at 28x28 with conv1 padding 2;
    32x32 without padding has the same layer sizes."""
    for resolution, pad in ((28, 2), (32, 0)):
        stats = model_stats("lenet5", resolution, conv1_padding=pad)
        assert (stats.params, stats.macs, stats.num_classes) == (61_706, 416_520, 10)


def test_lenet5_rejects_other_sizes_clearly():
    model = cnn_jax.create_model("lenet5", num_classes=10)
    with pytest.raises(ValueError, match=r"LeNet5 needs 32x32 images .* got 4x4 from 28x28"):
        _params(model, 28, 1)


def test_lenet_layers():
    assert scaled_tanh(jnp.array(1.0)) == pytest.approx(1.0, abs=1e-4)  # A, S chosen so that f(1) = 1

    x = jax.random.normal(jax.random.key(0), (2, 6, 6, 3))
    coefficient, bias = jnp.array([2.0, 3.0, 4.0]), jnp.array([0.5, -1.0, 0.0])
    variables = {"params": {"scale": {"kernel": coefficient.reshape(1, 1, 1, 3), "bias": bias}}}
    windows = x.reshape(2, 3, 2, 3, 2, 3).sum(axis=(2, 4))
    out = jax.jit(Subsampling().apply)(variables, x)
    np.testing.assert_allclose(out, windows / 4 * coefficient + bias, rtol=1e-5)

    features = jax.random.normal(jax.random.key(1), (3, 84))
    rbf = EuclideanRBF(10)
    v = jax.jit(rbf.init)(jax.random.key(2), features)
    centres = np.asarray(v["params"]["centres"]["kernel"])
    assert set(np.unique(centres).tolist()) == {-1.0, 1.0}  # +-1 codes
    expected = -np.sum((np.asarray(features)[:, :, None] - centres[None]) ** 2, axis=1)
    np.testing.assert_allclose(jax.jit(rbf.apply)(v, features), expected, rtol=1e-4)


def test_partial_conv_output_maps_see_only_their_table_inputs():
    conv = PartialConv(LECUN_C3_TABLE)
    x = jax.random.normal(jax.random.key(0), (1, 7, 7, 6))
    v = jax.jit(conv.init)(jax.random.key(1), x)
    # Row s2 of the batch perturbs S2 map s2; row 6 is the unperturbed input.
    out = np.asarray(jax.jit(conv.apply)(v, jnp.concatenate([x + jnp.eye(7, 6)[i] for i in range(7)])))
    for s2 in range(6):
        changed = np.abs(out[s2] - out[6]).max(axis=(0, 1)) > 0
        assert set(np.flatnonzero(changed)) == {c3 for c3, inputs in enumerate(LECUN_C3_TABLE) if s2 in inputs}


# ---------------------------------------------------------------------------------------------------------------
# AlexNet / ZFNet


@pytest.mark.parametrize("convention", sorted(LRN_CONVENTIONS))
def test_local_response_norm_conventions(convention):
    c = LRN_CONVENTIONS[convention]
    a = np.asarray(jax.random.normal(jax.random.key(0), (2, 3, 3, 9))) * 20
    n = c["size"]
    alpha = c["alpha"] / n if c["alpha_per_size"] else c["alpha"]
    expected = np.empty_like(a)
    for i in range(a.shape[-1]):  # Krizhevsky et al. Sec. 3.3: sum over max(0, i - n/2) .. min(N - 1, i + n/2)
        window = a[..., max(0, i - n // 2) : min(a.shape[-1], i + n // 2 + 1)]
        expected[..., i] = a[..., i] / (c["k"] + alpha * (window**2).sum(-1)) ** c["beta"]
    out = jax.jit(LocalResponseNorm(**c).apply)({}, jnp.asarray(a))
    np.testing.assert_allclose(out, expected, rtol=1e-5)
    assert (convention == "paper") == (c["k"] == 2.0 and not c["alpha_per_size"])


def test_alexnet_lrn_option_adds_normalisation_layers_only():
    plain = [layer.path for layer in layer_table(cnn_jax.create_model("alexnet"), 224)]
    with_lrn = [layer.path for layer in layer_table(cnn_jax.create_model("alexnet", lrn=True), 224)]
    assert with_lrn == plain[:1] + ["lrn1"] + plain[1:3] + ["lrn2"] + plain[3:]
    assert count_params(_params(cnn_jax.create_model("alexnet", lrn=True), 224)) == 61_100_840


# Krizhevsky et al. 2012 Sec. 5: biases 1 in conv2, conv4, conv5 and the hidden FC layers, 0 elsewhere.
PAPER_INIT_BIASES = {"conv1": 0, "conv2": 1, "conv3": 0, "conv4": 1, "conv5": 1, "fc6": 1, "fc7": 1, "fc8": 0}


def test_alexnet_paper_layout_sizes_groups_and_init():
    sizes = _sizes("alexnet_paper", 227)
    expected = {"conv1": 55, "pool1": 27, "conv2": 27, "pool2": 13, "conv3": 13, "conv5": 13, "pool5": 6}
    assert {k: sizes[k][0] for k in expected} == expected
    model = cnn_jax.create_model("alexnet_paper", fc_features=64)  # narrow FC layers: same initialisers, less work
    params = jax.jit(lambda x: model.init(jax.random.key(0), x, train=False))(jnp.zeros((1, 67, 67, 3)))["params"]
    assert params["conv2"]["kernel"].shape == (5, 5, 48, 256)  # groups=2: each half sees 48 of conv1's 96 maps
    assert params["conv3"]["kernel"].shape == (3, 3, 256, 384)  # conv3 sees both towers
    for name, bias in PAPER_INIT_BIASES.items():
        assert np.all(np.asarray(params[name]["bias"]) == bias), name
    assert float(jnp.std(params["conv3"]["kernel"])) == pytest.approx(0.01, rel=0.05)


def test_zfnet_map_sizes_follow_figure_3():
    sizes = _sizes("zfnet", 224)
    expected = {
        "conv1": (110, 110, 96),
        "pool1": (55, 55, 96),
        "conv2": (26, 26, 256),
        "pool2": (13, 13, 256),
        "conv3": (13, 13, 384),
        "conv4": (13, 13, 384),
        "conv5": (13, 13, 256),
        "pool5": (6, 6, 256),
    }
    assert {k: sizes[k] for k in expected} == expected


def test_alexnet_family_params_do_not_depend_on_resolution():
    for name in ("alexnet", "zfnet"):
        counts = {count_params(_params(cnn_jax.create_model(name), r)) for r in (96, 224, 320)}
        assert len(counts) == 1, name


# ---------------------------------------------------------------------------------------------------------------
# VGG and NiN


@pytest.mark.parametrize("depth", [11, 13, 16, 19])
def test_vgg_depth_counts_weight_layers(depth):
    layers = layer_table(cnn_jax.create_model(f"vgg{depth}_bn"), 32)
    assert sum(layer.kind in ("conv", "dense") for layer in layers) == depth  # Table 1's "weight layers"
    assert sum(layer.kind == "norm" for layer in layers) == depth - 3
    params = _params(cnn_jax.create_model(f"vgg{depth}_bn"), 32)
    assert "bias" in params["conv1_1"] and set(params["bn1_1"]) == {"scale", "bias"}  # torchvision keeps the bias


def test_nin_caffe_map_sizes_and_nonnegative_logits():
    sizes = _sizes("nin_imagenet", 224)
    expected = {"conv1": 54, "pool1": 27, "pool2": 13, "pool3": 6}  # Caffe pools keep the partial last window
    assert {k: sizes[k][0] for k in expected} == expected
    assert sizes["cccp8"] == (6, 6, 1000)
    model = cnn_jax.create_model("nin_imagenet", num_classes=5)
    images = jax.random.normal(jax.random.key(0), (2, 39, 39, 3))
    variables = jax.jit(lambda x: model.init(jax.random.key(1), x, train=False))(images)
    logits = jax.jit(lambda v, x: model.apply(v, x, train=False).logits)(variables, images)
    assert logits.shape == (2, 5) and bool(jnp.all(logits >= 0))  # ReLU after cccp8, then the average
