"""Pretrained-weight import (cnn_jax.tools.import_weights) against the real reference implementations.

Each case builds the reference model with random weights (torchvision / timm with ``weights=None`` /
``pretrained=False``, keras.applications with ``weights=None``), gives its BatchNorm layers non-trivial running
statistics (calibrated on a random batch, then perturbed), saves its weights to a file, imports the file through
the CLI's function and compares logits in eval mode. Inputs are the smallest sizes the references accept.
"""

from __future__ import annotations

import json
import os
import sys

# Keras (for the Keras cases) must run on JAX; set before any test module imports it.
os.environ.setdefault("KERAS_BACKEND", "jax")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import cnn_jax  # noqa: E402
from cnn_jax import weights  # noqa: E402
from cnn_jax.tools import import_weights as tool  # noqa: E402
from cnn_jax.weights import layout  # noqa: E402
from cnn_jax.weights.convert import ConversionError  # noqa: E402
from cnn_jax.weights.sources import keras_prng  # noqa: E402

torch = pytest.importorskip("torch")
# One thread: the references are tiny, and CI runs two test workers on two cores (spinning OpenMP threads of two
# processes made a ResNet-50 forward at 32x32 take seconds instead of milliseconds).
torch.set_num_threads(1)

TORCHVISION_OP_SCHEMAS = {
    "nms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor",
}


def import_torchvision():
    """``import torchvision``, declaring its C++ operator schemas first where its compiled ops cannot load.

    The PyPI torchvision wheel is a CUDA build: on the CPU-only torch its ``_C`` library does not load, and its
    Python side then fails registering fake kernels (``operator torchvision::nms does not exist``). Declaring the
    schemas with ``torch.library`` is enough for the models, which never call these ops.
    """
    try:
        import torchvision
    except RuntimeError as error:
        if "torchvision::" not in str(error):
            raise
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        for op, schema in TORCHVISION_OP_SCHEMAS.items():
            try:
                torch.library.define(f"torchvision::{op}", schema)
            except RuntimeError:  # declared already (another test module)
                pass
        import torchvision
    return torchvision


def logits_of(model_name: str, overrides: dict, variables: dict, images: np.ndarray) -> np.ndarray:
    model = cnn_jax.create_model(model_name, **overrides)
    return np.asarray(jax.jit(lambda v, x: model.apply(v, x, train=False).logits)(variables, images))


def assert_logits_match(got: np.ndarray, expected: np.ndarray) -> None:
    atol = 2e-5 * np.abs(expected).max()
    # The two inputs must give logits far apart compared with the tolerance, or the comparison would not see
    # most of the weights (a network whose BatchNorm statistics do not fit its activations forgets its input).
    assert np.abs(expected[0] - expected[1]).max() > 100 * atol
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=atol)


# ---- PyTorch ----------------------------------------------------------------------------------------------------
def randomize_torch_batchnorm(model, images, seed: int = 1) -> None:
    """Random BN affine parameters; running statistics set from a training-mode pass, then perturbed, so every
    layer sees well-scaled inputs (raw random statistics make deep networks forget their input)."""
    gen = torch.Generator().manual_seed(seed)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for bn in norms:
            bn.weight.copy_(torch.rand(bn.num_features, generator=gen) + 0.5)
            bn.bias.copy_(torch.randn(bn.num_features, generator=gen) * 0.1)
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average: one batch gives its own statistics
        # torchvision's Inception v3 auxiliary head needs 299x299 inputs: leave it out of the calibration pass.
        aux, has_aux = getattr(model, "AuxLogits", None), hasattr(model, "AuxLogits")
        if has_aux:
            model.AuxLogits = None
        model.train()
        model(images)
        if has_aux:
            model.AuxLogits = aux
        for bn in norms:
            noise = torch.rand(bn.num_features, generator=gen) * 0.4 + 0.8
            bn.running_var.mul_(noise).add_(0.2 * bn.running_var.mean() + 1e-3)
            bn.running_mean.add_(torch.randn(bn.num_features, generator=gen) * 0.05)
    model.eval()


def torch_reference(fmt: str, name: str, resolution: int):
    torch.manual_seed(0)
    if fmt == "torchvision":
        models = import_torchvision().models
        kwargs = {"init_weights": False} if name in ("googlenet", "inception_v3") else {}  # skip scipy's slow init
        model = getattr(models, name)(weights=None, num_classes=10, **kwargs)
    else:
        import_torchvision()
        import timm

        model = timm.create_model(name, pretrained=False, num_classes=10)
    images = np.random.default_rng(0).standard_normal((4, 3, resolution, resolution)).astype(np.float32)
    randomize_torch_batchnorm(model, torch.from_numpy(images))
    return model, images[:2]


def torch_logits(model, images: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out = model(torch.from_numpy(images))
    return getattr(out, "logits", out).numpy()


TORCH_CASES = [
    # (format, reference model, cnn_jax model, input size)
    ("torchvision", "resnet18", "resnet18", 32),
    ("torchvision", "resnet50", "resnet50", 32),
    ("torchvision", "vgg16", "vgg16", 64),  # 2x2 before the 7x7 adaptive pool: fc6's row order matters
    ("torchvision", "densenet121", "densenet121", 32),
    ("torchvision", "mobilenet_v2", "mobilenet_v2", 32),
    ("torchvision", "efficientnet_b0", "efficientnet_b0", 32),
    ("torchvision", "googlenet", "googlenet_aux", 32),
    ("torchvision", "inception_v3", "inception_v3", 75),
    ("torchvision", "alexnet", "alexnet", 127),  # 3x3 before the 6x6 adaptive pool: fc6's row order matters
    ("torchvision", "shufflenet_v2_x0_5", "shufflenet_v2_x0_5", 64),
    ("torchvision", "mobilenet_v3_small", "mobilenet_v3_small", 64),
    ("torchvision", "mobilenet_v3_large", "mobilenet_v3_large", 64),
    ("torchvision", "mnasnet0_5", "mnasnet0_5", 64),
    ("timm", "resnet50", "resnet50", 32),
    ("timm", "efficientnet_b0", "efficientnet_b0", 32),
]


@pytest.mark.parametrize("fmt,reference,name,resolution", TORCH_CASES, ids=[f"{c[0]}-{c[2]}" for c in TORCH_CASES])
def test_torch_import_matches_reference(fmt, reference, name, resolution, tmp_path):
    model, images = torch_reference(fmt, reference, resolution)
    src = tmp_path / "model.pth"
    torch.save(model.state_dict(), src)
    result = tool.import_weights(fmt, name, src)
    expected = torch_logits(model, images)
    got = logits_of(name, result.meta["overrides"], result.variables, images.transpose(0, 2, 3, 1))
    assert_logits_match(got, expected)
    # torchvision's GoogLeNet / Inception v3 keep auxiliary heads in the file; only inception_v3 (no aux) leaves
    # them unused, and says so.
    unused = result.conversion.unused
    assert all(n.startswith("AuxLogits.") for n in unused) and bool(unused) == (name == "inception_v3")
    if name == "googlenet_aux":
        check_googlenet_aux(model, result.variables)


def check_googlenet_aux(model, variables) -> None:
    """The auxiliary heads (eval mode skips them in both networks): fc1 reads a flattened 128 x 4 x 4 map, so
    its rows must have been permuted from NCHW to NHWC order."""
    from cnn_jax.models.googlenet import AuxClassifier

    features = np.random.default_rng(2).standard_normal((2, 512, 6, 6)).astype(np.float32)
    with torch.no_grad():
        expected = model.aux1(torch.from_numpy(features)).numpy()
    aux = AuxClassifier(10, pool="adaptive", norm=True)
    got = aux.apply({"params": variables["params"]["aux1"], "batch_stats": variables["batch_stats"]["aux1"]},
                    features.transpose(0, 2, 3, 1), train=False)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())


def test_safetensors_and_cli_write_a_weights_directory(tmp_path, capsys):
    """The CLI reads a .safetensors file, writes a weights directory that cnn_jax.weights reads back exactly."""
    from safetensors.torch import save_file

    model, images = torch_reference("torchvision", "resnet18", 32)
    src = tmp_path / "resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(src))
    out = tmp_path / "weights"
    assert tool.main(["--format", "torchvision", "--model", "resnet18", "--src", str(src), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "every source tensor was used" in printed and "20 x conv OIHW -> HWIO" in printed
    model_jax, variables, meta = weights.load_model(out)
    assert meta["model"] == "resnet18" and meta["overrides"]["num_classes"] == 10 and meta["format"] == "torchvision"
    got = np.asarray(model_jax.apply(variables, images.transpose(0, 2, 3, 1), train=False).logits)
    np.testing.assert_allclose(got, torch_logits(model, images), rtol=1e-4, atol=1e-5)


def resnet18_state_dict():
    models = import_torchvision().models
    return {k: v.clone() for k, v in models.resnet18(weights=None, num_classes=10).state_dict().items()}


def test_mismatch_names_the_first_tensor_that_does_not_fit(tmp_path):
    state = resnet18_state_dict()
    state["layer2.0.conv1.weight"] = torch.zeros(128, 32, 3, 3)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(ConversionError) as error:
        tool.import_weights("torchvision", "resnet18", tmp_path / "bad.pth")
    message = str(error.value)
    for part in ("'layer2.0.conv1.weight'", "(128, 32, 3, 3)", "params/stage2_block0/conv1/conv/kernel",
                 "(3, 3, 64, 128)", "(128, 64, 3, 3)"):
        assert part in message, message


def test_missing_and_unused_tensors_are_reported(tmp_path):
    state = resnet18_state_dict()
    state["extra.weight"] = torch.zeros(3)
    torch.save(state, tmp_path / "extra.pth")
    result = tool.import_weights("torchvision", "resnet18", tmp_path / "extra.pth")
    assert result.conversion.unused == ["extra.weight"] and "UNUSED source tensors (1): extra.weight" in result.report()
    del state["layer3.1.bn2.running_var"]
    torch.save(state, tmp_path / "missing.pth")
    with pytest.raises(ConversionError, match=r"no tensor 'layer3.1.bn2.running_var' for cnn_jax "
                                              r"batch_stats/stage3_block1/conv2/bn/var"):
        tool.import_weights("torchvision", "resnet18", tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="no timm mapping for model 'googlenet'; supported: .*resnet50"):
        tool.import_weights("timm", "googlenet", tmp_path / "extra.pth")


def test_grouped_conv_conversion_matches_torch():
    """Grouped convs (ResNeXt) and depthwise convs convert with the same OIHW -> HWIO transpose."""
    import flax.linen as nn

    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 8, 5, 5)).astype(np.float32)
    for groups, out in ((4, 12), (8, 8)):
        weight = rng.standard_normal((out, 8 // groups, 3, 3)).astype(np.float32)
        expected = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(weight), padding=1,
                                              groups=groups).numpy()
        kernel, how = layout.conv_oihw_to_hwio(weight, groups)
        assert how == (layout.DEPTHWISE_OIHW if groups == 8 else layout.GROUPED_OIHW)
        conv = nn.Conv(out, (3, 3), padding=1, feature_group_count=groups, use_bias=False)
        got = conv.apply({"params": {"kernel": kernel}}, x.transpose(0, 2, 3, 1))
        np.testing.assert_allclose(np.asarray(got).transpose(0, 3, 1, 2), expected, rtol=1e-5, atol=1e-5)


# ---- Keras ------------------------------------------------------------------------------------------------------
KERAS_CASES = [
    # (keras.applications constructor, cnn_jax model, input size)
    ("ResNet50", "resnet50", 32),
    ("MobileNetV2", "mobilenet_v2", 32),
    # EfficientNet's and DenseNet's rules are checked against torchvision in CI; the Keras cases are extended.
    pytest.param("EfficientNetB0", "efficientnet_b0", 32, marks=pytest.mark.extended),
    pytest.param("DenseNet121", "densenet121", 32, marks=pytest.mark.extended),
    ("InceptionV3", "inception_v3", 75),
    # include_top fixes fc1 at 7x7x512 inputs: the only case at full size (~550 MB of weights written and read).
    pytest.param("VGG16", "vgg16", 224, marks=[pytest.mark.slow, pytest.mark.extended]),
]


def keras_reference(application: str, resolution: int):
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "jax":
        pytest.skip(f"Keras runs on {keras.backend.backend()}, these cases need KERAS_BACKEND=jax")
    with keras_prng():
        model = getattr(keras.applications, application)(weights=None, classes=10, classifier_activation=None,
                                                         input_shape=(resolution, resolution, 3))
    rng = np.random.default_rng(0)
    images = rng.standard_normal((4, resolution, resolution, 3)).astype(np.float32)
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    if norms:
        for bn in norms:
            bn.momentum = 0.0  # the training pass below stores its batch statistics
            if bn.gamma is not None:
                bn.gamma.assign(rng.uniform(0.5, 1.5, bn.gamma.shape).astype(np.float32))
            if bn.beta is not None:
                bn.beta.assign(rng.normal(0.0, 0.1, bn.beta.shape).astype(np.float32))
        # One compiled training-mode pass (stateless_call) instead of hundreds of eager ops.
        trainable = [v.value for v in model.trainable_variables]
        fixed = [v.value for v in model.non_trainable_variables]
        with keras_prng():
            _, fixed = jax.jit(lambda t, f, x: model.stateless_call(t, f, x, training=True))(trainable, fixed,
                                                                                             images)
        for variable, value in zip(model.non_trainable_variables, fixed, strict=True):
            variable.assign(value)
        for bn in norms:
            var = np.asarray(bn.moving_variance.numpy())
            bn.moving_variance.assign((var * rng.uniform(0.8, 1.2, var.shape) + 0.2 * var.mean() + 1e-3)
                                      .astype(np.float32))
    return model, images[:2]


@pytest.mark.parametrize("application,name,resolution", KERAS_CASES,
                         ids=["resnet50", "mobilenet_v2", "efficientnet_b0", "densenet121", "inception_v3", "vgg16"])
def test_keras_import_matches_reference(application, name, resolution, tmp_path):
    model, images = keras_reference(application, resolution)
    src = tmp_path / "model.weights.h5"
    model.save_weights(str(src))
    with keras_prng():
        expected = np.asarray(model.predict(images, verbose=0))
    result = tool.import_weights("keras", name, src)
    assert result.conversion.unused == []
    # Keras EfficientNet rescales and normalises inside the model: cnn_jax models take preprocessed images.
    inputs = images
    for layer in model.layers:
        if type(layer).__name__ in ("Rescaling", "Normalization"):
            inputs = np.asarray(layer(inputs))
    assert [p["class"] for p in result.meta.get("preprocessing", [])] == [
        type(layer).__name__ for layer in model.layers if type(layer).__name__ in ("Rescaling", "Normalization")]
    got = logits_of(name, result.meta["overrides"], result.variables, inputs)
    assert_logits_match(got, expected)


# ---- The weights directory ----------------------------------------------------------------------------------------
def test_weights_directory_round_trip_and_errors(tmp_path):
    variables = {"params": {"fc": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3)}}, "batch_stats": {}}
    meta = {"model": "lenet5", "overrides": {"num_classes": 3}, "source": "x.pth", "format": "torchvision"}
    weights.save_variables(tmp_path / "w", variables, meta)
    loaded, loaded_meta = weights.load_variables(tmp_path / "w")
    np.testing.assert_array_equal(loaded["params"]["fc"]["kernel"], variables["params"]["fc"]["kernel"])
    assert loaded["batch_stats"] == {} and loaded_meta == meta
    with pytest.raises(weights.WeightsError, match="no such directory"):
        weights.load_variables(tmp_path / "absent")
    (tmp_path / "w" / "meta.json").write_text("{not json")
    with pytest.raises(weights.WeightsError, match=r"meta.json: not readable JSON"):
        weights.load_variables(tmp_path / "w")
    (tmp_path / "w" / "meta.json").write_text(json.dumps(meta))
    for item in (tmp_path / "w" / "variables").rglob("*"):
        if item.is_file():
            item.write_bytes(b"garbage")
    with pytest.raises(weights.WeightsError, match=r"variables: could not restore the orbax checkpoint"):
        weights.load_variables(tmp_path / "w")
    with pytest.raises(weights.WeightsError, match=r"meta lacks \['overrides'\]"):
        weights.save_variables(tmp_path / "v", variables, {"model": "lenet5"})


@pytest.mark.parametrize("name", ["efficientnet_b0", "efficientnet_b7"])
def test_torchvision_efficientnet_mapping_uses_the_models_batchnorm_epsilon(name):
    """torchvision's B0-B4 keep PyTorch's BatchNorm eps 1e-5, its B5-B7 (ported from TF) use 1e-3."""
    import torch

    from cnn_jax.models.layers import BN_CONVENTIONS
    from cnn_jax.weights.mappings import find_mapping

    source = getattr(import_torchvision().models, name)(num_classes=3)
    eps = {m.eps for m in source.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    mapping = find_mapping("torchvision", name)
    assert eps == {mapping.bn_eps}, (name, eps, mapping.family)
    _, target_eps = BN_CONVENTIONS[mapping.overrides["norm_convention"]]
    assert target_eps == mapping.bn_eps  # the imported model normalises with the source's epsilon
