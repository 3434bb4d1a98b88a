"""Pretrained-weight import (cnn_jax.tools.import_weights) against the real reference implementations.

Each case builds the reference model with random weights (torchvision / timm with ``weights=None`` /
``pretrained=False``, keras.applications with ``weights=None``), gives its BatchNorm layers non-trivial running
statistics (calibrated on a random batch, then perturbed), saves its weights to a file, imports the file through
the CLI's function and compares logits in eval mode. Inputs are the smallest sizes the references accept.
"""

from __future__ import annotations

import json
import os
import pathlib

# Keras (for the Keras cases) must run on JAX; set before any test module imports it.
os.environ.setdefault("KERAS_BACKEND", "jax")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import cnn_jax  # noqa: E402
from cnn_jax import weights  # noqa: E402
from cnn_jax.tools import import_weights as tool  # noqa: E402
from cnn_jax.weights import (  # noqa: E402
    coverage,  # noqa: E402
    layout,
    preprocessing,
)
from cnn_jax.weights.convert import ConversionError  # noqa: E402
from cnn_jax.weights.coverage import CASES  # noqa: E402
from cnn_jax.weights.references import build_reference, import_torchvision  # noqa: E402
from cnn_jax.weights.sources import keras_prng  # noqa: E402

torch = pytest.importorskip("torch")
# One thread: the references are tiny, and CI runs two test workers on two cores (spinning OpenMP threads of two
# processes made a ResNet-50 forward at 32x32 take seconds instead of milliseconds).
torch.set_num_threads(1)

def uint8_images(resolution: int) -> np.ndarray:
    """Four RGB uint8 images (NHWC) of noise, the odd ones darkened by a ramp across the width: different global
    statistics, so that the logits of images 0 and 1 differ even after a deep network's global pooling."""
    pixels = np.random.default_rng(0).integers(0, 256, (4, resolution, resolution, 3), dtype=np.uint8)
    ramp = np.linspace(0.1, 1.0, resolution, dtype=np.float32)[None, :, None]
    pixels[1::2] = (pixels[1::2] * ramp).astype(np.uint8)
    return pixels


def logits_of(model_name: str, overrides: dict, variables: dict, images: np.ndarray) -> np.ndarray:
    model = cnn_jax.create_model(model_name, **overrides)
    return np.asarray(jax.jit(lambda v, x: model.apply(v, x, train=False).logits)(variables, images))


def assert_logits_match(got: np.ndarray, expected: np.ndarray) -> None:
    atol = 1e-4 * np.abs(expected).max()  # float32 sums over 150 layers (ResNet-152) differ by ~5e-5 of the scale
    # The two inputs must give logits far apart compared with the tolerance, or the comparison would not see
    # most of the weights (a network whose BatchNorm statistics do not fit its activations forgets its input).
    assert np.abs(expected[0] - expected[1]).max() > 20 * atol
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
    """The reference with random weights and calibrated BatchNorm statistics, two uint8 RGB images (NCHW) and the
    reference's own preprocessing of them (torchvision: ImageNet mean/std, with ``transform_input=True`` for
    GoogLeNet / Inception v3 as their pretrained weights set it; timm: the model's ``pretrained_cfg``)."""
    torch.manual_seed(0)
    model = build_reference(fmt, name, 10, transform_input=True if name in ("googlenet", "inception_v3") else None)
    if fmt == "torchvision":
        mean, std = preprocessing.IMAGENET_MEAN, preprocessing.IMAGENET_STD
    else:
        mean, std = model.pretrained_cfg["mean"], model.pretrained_cfg["std"]
    pixels = uint8_images(resolution).transpose(0, 3, 1, 2)
    shape = (1, 3, 1, 1)
    images = ((pixels / np.float32(255) - np.reshape(mean, shape)) / np.reshape(std, shape)).astype(np.float32)
    randomize_torch_batchnorm(model, torch.from_numpy(images))
    return model, pixels[:2], images[:2]


def torch_logits(model, images: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out = model(torch.from_numpy(images))
    return getattr(out, "logits", out).numpy()


def _case_params(formats: tuple[str, ...]) -> list:
    params = []
    for case in CASES:
        if case.fmt in formats:
            marks = [] if case.ci else [pytest.mark.extended]
            if case.resolution >= 224:
                marks.append(pytest.mark.slow)
            name = f"{case.fmt}-{case.model}" + (f"-from-{case.reference}" if case.reference != case.model else "")
            params.append(pytest.param(case.reference, case.model, case.resolution, marks=marks, id=name)
                          if case.fmt == "keras" else
                          pytest.param(case.fmt, case.reference, case.model, case.resolution, marks=marks, id=name))
    return params


@pytest.mark.parametrize("fmt,reference,name,resolution", _case_params(("torchvision", "timm", "timm_tf")))
def test_torch_import_matches_reference(fmt, reference, name, resolution, tmp_path):
    """From the same uint8 images, each side's own preprocessing and model give the same logits: the name tables,
    the conventions and the input convention recorded with the weights."""
    model, pixels, images = torch_reference(fmt, reference, resolution)
    src = tmp_path / "model.pth"
    torch.save(model.state_dict(), src)
    result = tool.import_weights(fmt, name, src)
    expected = torch_logits(model, images)
    convention = preprocessing.InputConvention.from_meta(result.meta["input"])
    inputs = convention.preprocess(pixels.transpose(0, 2, 3, 1))
    got = logits_of(name, result.meta["overrides"], result.variables, inputs)
    assert_logits_match(got, expected)
    # torchvision's GoogLeNet / Inception v3 keep auxiliary heads in the file: unused (and reported) only where
    # the cnn_jax model has none.
    unused = result.conversion.unused
    if name in ("inception_v3", "googlenet"):
        assert unused and all(n.startswith(("AuxLogits.", "aux1.", "aux2.")) for n in unused), unused
    else:
        assert unused == []
    if name == "googlenet_aux":
        check_googlenet_aux(model, result.variables)


# Export: each mapping's feature that export inverts (NCHW-flatten rows + auxiliary heads, the ResNet-D shortcut,
# blocks regrouped into other stages + a 1x1-conv head, Inception branch names, a 1x1-conv classifier) in CI; every
# other PyTorch case extended.
EXPORT_IN_CI = {("torchvision", "googlenet_aux"), ("timm", "resnet50d"), ("timm", "mobilenet_v3_large"),
                ("timm", "inception_resnet_v2"), ("timm", "resnetv2_50")}


def _export_params() -> list:
    params = []
    for case in CASES:
        if case.fmt != "keras":
            marks = [] if (case.fmt, case.model) in EXPORT_IN_CI else [pytest.mark.extended]
            name = f"{case.fmt}-{case.model}" + (f"-from-{case.reference}" if case.reference != case.model else "")
            params.append(pytest.param(case.fmt, case.reference, case.model, case.resolution, marks=marks, id=name))
    return params


@pytest.mark.parametrize("fmt,reference,name,resolution", _export_params())
def test_export_round_trips_into_a_strict_state_dict(fmt, reference, name, resolution, tmp_path):
    """reference -> import -> export: the state dict loads with strict=True into a fresh reference, every tensor is
    the original one, and the reloaded reference gives the original logits."""
    from cnn_jax.weights import export

    model, _, images = torch_reference(fmt, reference, resolution)
    state = model.state_dict()
    torch.save(state, tmp_path / "model.pth")
    result = tool.import_weights(fmt, name, tmp_path / "model.pth")
    net = cnn_jax.create_model(name, **result.meta["overrides"])
    exported = export.export_state_dict(fmt, name, net, result.variables, reference=reference)
    aux = name in ("googlenet_aux", "inception_v3_aux") if reference in ("googlenet", "inception_v3") else None
    fresh = build_reference(fmt, reference, 10, aux_logits=aux,
                            transform_input=True if reference in ("googlenet", "inception_v3") else None)
    fresh.load_state_dict(exported.torch_state_dict(), strict=True)
    for key, value in exported.state_dict.items():
        if not key.endswith("num_batches_tracked"):
            np.testing.assert_allclose(value, state[key].numpy(), rtol=1e-6, atol=1e-7, err_msg=key)
    np.testing.assert_allclose(torch_logits(fresh, images), torch_logits(model, images), rtol=1e-5, atol=1e-6)


def test_export_cli_writes_safetensors_and_refuses_another_function(tmp_path, capsys):
    """The CLI from a weights directory to .safetensors (loaded strictly); a model trained with TF padding is
    refused for torchvision, naming the convention, exit status 2; the BatchNorm epsilon of another convention is
    folded (the exported reference computes what the cnn_jax model computes)."""
    from safetensors.torch import load_file

    from cnn_jax.weights import export

    model, _, images = torch_reference("torchvision", "mobilenet_v2", 32)
    torch.save(model.state_dict(), tmp_path / "m.pth")
    result = tool.import_weights("torchvision", "mobilenet_v2", tmp_path / "m.pth", tmp_path / "w")
    out = tmp_path / "exported.safetensors"
    from cnn_jax.tools import export_weights

    assert export_weights.main(["--format", "torchvision", "--checkpoint", str(tmp_path / "w"), "--out", str(out)]) == 0
    assert f"wrote {len(model.state_dict())} tensors of torchvision mobilenet_v2" in capsys.readouterr().out
    fresh = build_reference("torchvision", "mobilenet_v2", 10)
    fresh.load_state_dict(load_file(str(out)), strict=True)
    np.testing.assert_allclose(torch_logits(fresh, images), torch_logits(model, images), rtol=1e-5, atol=1e-6)

    meta = {**result.meta, "overrides": {**result.meta["overrides"], "padding": "same"}}
    weights.save_variables(tmp_path / "same", result.variables, meta)
    assert export_weights.main(["--format", "torchvision", "--checkpoint", str(tmp_path / "same"), "--out",
                                str(tmp_path / "x.pth")]) == 2
    error = capsys.readouterr().err
    assert "mobilenet_v2 has padding='same', but torchvision MobileNetV2 computes padding='symmetric'" in error
    assert not (tmp_path / "x.pth").exists()

    tf_model = cnn_jax.create_model("mobilenet_v2", **{**result.meta["overrides"], "norm_convention": "tf"})
    folded = export.export_state_dict("torchvision", "mobilenet_v2", tf_model, result.variables)
    assert folded.folded_epsilon == sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    fresh.load_state_dict({k: torch.from_numpy(v) for k, v in folded.state_dict.items()}, strict=True)
    expected = logits_of("mobilenet_v2", {**result.meta["overrides"], "norm_convention": "tf"}, result.variables,
                         images.transpose(0, 2, 3, 1))
    np.testing.assert_allclose(torch_logits(fresh, images), expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


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

    model, pixels, images = torch_reference("torchvision", "resnet18", 32)
    src = tmp_path / "resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(src))
    out = tmp_path / "weights"
    assert tool.main(["--format", "torchvision", "--model", "resnet18", "--src", str(src), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "every source tensor was used" in printed and "20 x conv OIHW -> HWIO" in printed
    assert "input: (RGB uint8 / 255 - (0.485, 0.456, 0.406)) / (0.229, 0.224, 0.225)" in printed
    assert "outputs: logits (no softmax)" in printed
    pretrained = weights.load_model(out)
    meta = pretrained.meta
    assert meta["model"] == "resnet18" and meta["overrides"]["num_classes"] == 10 and meta["format"] == "torchvision"
    # The ready-to-use pipeline: raw uint8 images in, the reference's logits out.
    inputs = pretrained.preprocess(pixels.transpose(0, 2, 3, 1))
    got = np.asarray(pretrained.model.apply(pretrained.variables, inputs, train=False).logits)
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
KERAS_PREPROCESS_MODULE = {"ResNet50": "resnet", "MobileNetV2": "mobilenet_v2", "EfficientNetB0": "efficientnet",
                           "DenseNet121": "densenet", "InceptionV3": "inception_v3", "VGG16": "vgg16"}


def keras_reference(application: str, resolution: int):
    """The application with random weights and calibrated BatchNorm statistics, two uint8 RGB images (NHWC) and
    their ``keras.applications.<module>.preprocess_input`` (EfficientNet: the model rescales itself)."""
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "jax":
        pytest.skip(f"Keras runs on {keras.backend.backend()}, these cases need KERAS_BACKEND=jax")
    with keras_prng():
        model = getattr(keras.applications, application)(weights=None, classes=10, classifier_activation=None,
                                                         input_shape=(resolution, resolution, 3))
    rng = np.random.default_rng(0)
    pixels = uint8_images(resolution)
    module = getattr(keras.applications, KERAS_PREPROCESS_MODULE[application])
    images = np.asarray(module.preprocess_input(pixels.astype(np.float32)), np.float32)
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
    return model, pixels[:2], images[:2]


@pytest.mark.parametrize("application,name,resolution", _case_params(("keras",)))
def test_keras_import_matches_reference(application, name, resolution, tmp_path):
    """From the same uint8 images: Keras' preprocess_input and model vs the imported weights' own preprocessing
    (BGR "caffe" mode folded into the first conv, in-model Rescaling/Normalization as the input convention)."""
    model, pixels, images = keras_reference(application, resolution)
    src = tmp_path / "model.weights.h5"
    model.save_weights(str(src))
    with keras_prng():
        expected = np.asarray(model.predict(images, verbose=0))
    result = tool.import_weights("keras", name, src)
    assert result.conversion.unused == []
    assert [p["class"] for p in result.meta.get("preprocessing", [])] == [
        type(layer).__name__ for layer in model.layers if type(layer).__name__ in ("Rescaling", "Normalization")]
    convention = preprocessing.InputConvention.from_meta(result.meta["input"])
    got = logits_of(name, result.meta["overrides"], result.variables, convention.preprocess(pixels))
    assert_logits_match(got, expected)


def test_keras_errors_are_one_line_with_exit_status_2(tmp_path, capfd):
    """A truncated .weights.h5 and another model's file: one line on stderr naming the file (Keras' per-layer warnings
    suppressed), exit status 2."""
    model, _, _ = keras_reference("MobileNetV2", 32)
    good = tmp_path / "mobilenet_v2.weights.h5"
    model.save_weights(str(good))
    truncated = tmp_path / "truncated.weights.h5"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    capfd.readouterr()
    for src, model_name, expected in ((truncated, "mobilenet_v2", "not a readable HDF5 file"),
                                      (good, "resnet50", "Keras could not load it into keras.applications.ResNet50")):
        status = tool.main(["--format", "keras", "--model", model_name, "--src", str(src), "--out",
                            str(tmp_path / "out")])
        err = capfd.readouterr().err
        lines = [line for line in err.splitlines() if line.strip()]
        assert status == 2 and len(lines) == 1, err[-3000:]
        assert expected in lines[0] and str(src) in lines[0], lines[0]


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

    from cnn_jax.layers import BN_CONVENTIONS
    from cnn_jax.weights.mappings import find_mapping

    source = getattr(import_torchvision().models, name)(num_classes=3)
    eps = {m.eps for m in source.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    mapping = find_mapping("torchvision", name)
    assert eps == {mapping.bn_eps}, (name, eps, mapping.family)
    _, target_eps = BN_CONVENTIONS[mapping.overrides["norm_convention"]]
    assert target_eps == mapping.bn_eps  # the imported model normalises with the source's epsilon


# ---- Input conventions and coverage ------------------------------------------------------------------------------
def test_input_convention_reaches_init_from_and_evaluate(tmp_path):
    """train.init_from's pipeline normalises with the weights' convention; evaluate re-normalises an imported member
    whose convention differs from the pipeline's, exactly."""
    import types

    import ml_collections

    from cnn_jax.data import pipeline
    from cnn_jax.tools import evaluate

    variables = {"params": {"fc": {"kernel": np.zeros((2, 3), np.float32)}}, "batch_stats": {}}
    meta = {"model": "lenet5", "overrides": {"num_classes": 3}, "input": preprocessing.INCEPTION.to_meta()}
    weights.save_variables(tmp_path / "w", variables, meta)
    config = ml_collections.ConfigDict({"train": {"init_from": str(tmp_path / "w")}, "data": {"name": "imagenette"}})
    rgb = types.SimpleNamespace(mean=preprocessing.IMAGENET_MEAN, std=preprocessing.IMAGENET_STD)
    mean, std, origin = pipeline.input_stats(config, rgb)
    assert (mean, std) == ((0.5,) * 3, (0.5,) * 3) and "train.init_from" in origin
    with pytest.raises(ValueError, match=r"train.init_from=.*expect 3-channel images, data.name='imagenette' has 1"):
        pipeline.input_stats(config, types.SimpleNamespace(mean=(0.3,), std=(0.3,)))
    config.train.init_from = None
    assert pipeline.input_stats(config, rgb)[:2] == (preprocessing.IMAGENET_MEAN, preprocessing.IMAGENET_STD)

    pixels = np.random.default_rng(0).integers(0, 256, (2, 4, 4, 3), dtype=np.uint8)
    scale, shift = preprocessing.INCEPTION.renormalizer(preprocessing.IMAGENET_MEAN, preprocessing.IMAGENET_STD)
    np.testing.assert_allclose(preprocessing.IMAGENET.preprocess(pixels) * scale + shift,
                               preprocessing.INCEPTION.preprocess(pixels), rtol=1e-5, atol=1e-5)
    imported = evaluate.Member("w", None, {}, None, preprocessing.INCEPTION)
    trained = evaluate.Member("run", None, {}, ml_collections.ConfigDict(), None)
    assert evaluate.input_stats([imported], config, rgb) == ((0.5,) * 3, (0.5,) * 3)  # nothing re-normalised
    assert evaluate.input_stats([imported, trained], config, rgb)[0] == preprocessing.IMAGENET_MEAN


def test_keras_preprocessing_layers_compose_into_one_convention():
    layers = [{"class": "Rescaling", "scale": 1 / 255.0, "offset": 0.0, "layer": "rescaling"},
              {"class": "Normalization", "mean": [0.4, 0.5, 0.6], "variance": [0.04, 0.09, 0.01],
               "layer": "normalization"}]
    convention = preprocessing.from_keras_layers(layers)
    pixels = np.arange(3 * 5, dtype=np.uint8).reshape(5, 3) * 17
    expected = (pixels / 255.0 - np.array([0.4, 0.5, 0.6])) / np.sqrt([0.04, 0.09, 0.01])
    np.testing.assert_allclose(convention.preprocess(pixels), expected, rtol=1e-5)
    caffe = preprocessing.KERAS_CAFFE.preprocess(pixels)  # p - mean_rgb on the 0..255 scale
    np.testing.assert_allclose(caffe, pixels - np.array([123.68, 116.779, 103.939]), rtol=1e-5, atol=1e-3)


def test_every_torchvision_and_timm_reference_model_has_a_reference_comparison():
    """Each torchvision / timm row of the reference parameter counts is imported and compared in some case."""
    import csv

    rows = list(csv.DictReader((pathlib.Path(__file__).parent / "reference" / "param_counts.csv").open()))
    references = {(c.fmt if c.fmt != "timm_tf" else "timm", c.reference) for c in CASES}
    missing = []
    for row in rows:
        for fmt in ("torchvision", "timm"):
            if row["source"].startswith(fmt) and "(" not in row["variant"]:
                if (fmt, row["variant"]) not in references and (fmt, row["variant"]) not in coverage.NOT_COMPARED:
                    missing.append(f"{fmt} {row['variant']}")
    assert not missing, missing
    # and every case names a registered model its format maps
    for case in CASES:
        assert case.model in cnn_jax.list_models() and coverage.supported(case.fmt, case.model), case


def test_readme_coverage_table_is_generated_from_the_mappings():
    readme = (pathlib.Path(__file__).parents[1] / "README.md").read_text()
    start, end = "<!-- coverage table: python -m cnn_jax.weights.coverage -->\n", "<!-- end of coverage table -->"
    assert start in readme and end in readme
    table = readme.split(start, 1)[1].split(end, 1)[0]
    assert table.strip() == coverage.readme_table().strip(), "regenerate it: python -m cnn_jax.weights.coverage"
    assert "untested" not in table
