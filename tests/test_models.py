"""Registry-wide model tests: every registered model is checked the same way.

- exact parameter count against its ``param_counts.csv`` row (``jax.eval_shape``: nothing is computed);
- a training step at the smallest resolution the layout accepts (heavy variants of a tested code path only with
  ``CNN_JAX_EXTENDED_TESTS=1``): output shape, a non-zero gradient for every
  parameter, BatchNorm statistics that move in train mode and stay put in eval mode;
- drop-path (one model per class that has it): identity in eval mode, random in train mode.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import count_params, load_param_counts, synthetic_variables

import cnn_jax
from cnn_jax.registry import module_fields

ALL_MODELS = cnn_jax.list_models()
PARAM_COUNTS = load_param_counts()
NUM_CLASSES_SMALL = 7  # an odd class count, so a head hard-wired to 1000 or 10 shows up


# The mission's families, one registered name each at least (a family dropped from the registry fails here).
MISSION_MODELS = (
    "lenet5", "alexnet", "zfnet", "vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg16_bn", "vgg19_bn",
    "nin_imagenet", "googlenet_aux", "inception_v3", "inception_v4", "inception_resnet_v2", "resnet18", "resnet34",
    "resnet50", "resnet101", "resnet152", "resnetv2_50", "preact_resnet164", "resnext50_32x4d", "wide_resnet50_2",
    "wrn28_10", "resnet110_sd", "densenet121", "densenet_bc100_k12", "seresnet50", "seresnext50_32x4d", "senet154",
    "resnest50d", "mobilenet_v1_100", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small", "shufflenet_v1_g3",
    "shufflenet_v2_x1_0", *(f"efficientnet_b{i}" for i in range(8)), "efficientnet_phi", "mnasnet1_0", "resnet20",
    "resnet56", "resnet110", "plain20", "plain56",
)


def test_every_family_of_the_mission_is_registered():
    missing = sorted(set(MISSION_MODELS) - set(ALL_MODELS))
    assert not missing, missing


def _init_shapes(name: str, resolution: int, num_classes: int):
    info = cnn_jax.model_info(name)
    model = cnn_jax.create_model(name, num_classes=num_classes)
    images = jax.ShapeDtypeStruct((1, resolution, resolution, info.in_channels), jnp.float32)
    return jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), images)


@pytest.mark.parametrize("name", [n for n in ALL_MODELS if cnn_jax.model_info(n).reference])
def test_parameter_count_matches_reference(name):
    info = cnn_jax.model_info(name)
    row = PARAM_COUNTS[info.reference]
    shapes = _init_shapes(name, info.resolution, info.reference_classes)
    got = count_params(shapes["params"])
    assert row["params"].isdigit(), f"{name}: reference row {info.reference!r} has no exact count"
    assert got == int(row["params"]), (
        f"{name}: {got:,} parameters, reference row {info.reference!r} ({row['exact']}, {row['source']}) says "
        f"{int(row['params']):,}"
    )


def _train_eval_check(model, images, labels, variables, rng):
    """One jitted program: a training step's gradients and BN update, and an eval pass (whose BN must not move)."""

    def loss_fn(params):
        out, new_state = model.apply(
            {**variables, "params": params}, images, train=True, rngs={"dropout": rng}, mutable=["batch_stats"]
        )
        loss = optax.softmax_cross_entropy_with_integer_labels(out.logits, labels).mean()
        for aux in out.aux_logits.values():
            loss += optax.softmax_cross_entropy_with_integer_labels(aux, labels).mean()
        return loss, (out, new_state)

    grads, (train_out, new_state) = jax.grad(loss_fn, has_aux=True)(variables["params"])
    eval_out, eval_state = model.apply(variables, images, train=False, mutable=["batch_stats"])
    return grads, train_out, new_state, eval_out, eval_state


# Variants whose code path a sibling exercises in CI (efficientnet_b0 for b1-b7 and efficientnet_phi,
# densenet_bc100_k12 for the DenseNets (their ImageNet stem runs forward in CI's torchvision import test),
# inception_v4's modules for inception_resnet_v2 (whose residual blocks run forward in CI's timm import test),
# resnet50 for resnet101/152, resnet50d's deep stem for 50c/50s, vgg11_bn for vgg11-19 (alexnet for the convs
# without BN), mobilenet_v2 / efficientnet_b0 for MNASNet's MBConvNet, the aux variants of
# GoogLeNet and Inception v3 for the plain ones, plain20 for plain32-56, preact_resnet1001 for 164, resnet20 with
# drop-path (test_drop_path_is_identity_in_eval_and_random_in_train) for resnet110_sd,
# seresnext50 for seresnet50, ...): their training step is an "extended" case, which keeps CI within its 25-minute
# budget. Their exact parameter counts are tested in CI like every model's.
HEAVY_VARIANTS = {f"efficientnet_b{i}" for i in range(1, 8)} | {f"vgg{d}{b}" for d in (13, 16, 19) for b in ("", "_bn")}
HEAVY_VARIANTS |= {
    "googlenet", "googlenet_paper", "inception_v3", "resnet101", "resnetv2_34", "resnetv2_101", "resnet32",
    "resnet44", "resnet110", "wrn28_10", "wrn40_4", "wide_resnet50_2", "mobilenet_v1_025", "mobilenet_v1_050",
    "mobilenet_v1_075", "mnasnet0_5", "shufflenet_v1_g1", "shufflenet_v1_g2", "shufflenet_v1_g4", "shufflenet_v1_g8",
    "shufflenet_v2_x1_0", "shufflenet_v2_x1_5", "shufflenet_v2_x2_0", "efficientnet_phi", "preact_resnet164",
    "resnet50c", "resnet50s", "mobilenet_v3_large", "seresnet50", "densenet121", "densenet161", "densenet169",
    "densenet201", "inception_resnet_v2", "mnasnet1_0", "vgg11",
    "densenet_bc190_k40", "senet154", "resnet152", "resnetv2_152", "wide_resnet101_2", "resnest101e",
    "resnext101_32x8d", "resnext101_64x4d", "plain32", "plain44", "plain56", "shufflenet_v2_x1_5_cifar",
    "shufflenet_v2_x2_0_cifar", "resnet110_sd",
    # the small-image layouts: their ImageNet siblings here, their Fashion-MNIST recipes in tests/test_train.py
    "mobilenet_v2_cifar", "efficientnet_b0_cifar", "shufflenet_v2_x0_5_cifar", "shufflenet_v2_x1_0_cifar"}


def test_extended_cases_name_registered_models():
    assert not (HEAVY_VARIANTS | DROP_PATH_EXTENDED) - set(ALL_MODELS)


@pytest.mark.slow
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.extended) if n in HEAVY_VARIANTS else n
                                  for n in ALL_MODELS])
def test_train_step_gradients_and_batchnorm(name):
    info = cnn_jax.model_info(name)
    model = cnn_jax.create_model(name, num_classes=NUM_CLASSES_SMALL)
    if "drop_path_rate" in module_fields(type(model)):
        # A block dropped for both samples of the batch legitimately gets no gradient (resnet110_sd defaults to 0.5);
        # drop-path has its own test below.
        model = model.clone(drop_path_rate=0.0)
    batch, res = 2, info.min_resolution
    images = jax.random.normal(jax.random.key(1), (batch, res, res, info.in_channels))
    labels = jnp.arange(batch) % NUM_CLASSES_SMALL
    variables = synthetic_variables(model, images)
    grads, train_out, new_state, eval_out, eval_state = jax.jit(
        lambda v, x, y: _train_eval_check(model, x, y, v, jax.random.key(2))
    )(variables, images, labels)

    assert train_out.logits.shape == (batch, NUM_CLASSES_SMALL)
    assert eval_out.logits.shape == (batch, NUM_CLASSES_SMALL)
    assert eval_out.aux_logits == {}, f"{name}: auxiliary logits must be absent in eval mode"
    for head, aux in train_out.aux_logits.items():
        assert aux.shape == (batch, NUM_CLASSES_SMALL), f"{name}: aux head {head} has shape {aux.shape}"
    assert np.isfinite(np.asarray(train_out.logits)).all() and np.isfinite(np.asarray(eval_out.logits)).all()

    flat_grads = jax.tree_util.tree_flatten_with_path(grads)[0]
    dead = [jax.tree_util.keystr(path) for path, g in flat_grads if not np.any(np.asarray(g) != 0)]
    assert not dead, f"{name}: parameters with an all-zero gradient: {dead[:10]}"

    stats = variables.get("batch_stats", {})
    if stats:
        moved = jax.tree_util.tree_map(lambda a, b: bool(np.any(np.asarray(a) != np.asarray(b))), stats,
                                       new_state["batch_stats"])
        assert all(jax.tree_util.tree_leaves(moved)), f"{name}: some BatchNorm statistics did not update in train mode"
        same = jax.tree_util.tree_map(lambda a, b: bool(np.array_equal(a, b)), stats, eval_state["batch_stats"])
        assert all(jax.tree_util.tree_leaves(same)), f"{name}: BatchNorm statistics changed in eval mode"


def _one_model_per_class_with_drop_path() -> list[str]:
    seen, chosen = set(), []
    # Shortest name first: the smallest variant of a family (resnet18 before resnet101) compiles fastest.
    for name in sorted(ALL_MODELS, key=lambda n: (len(n), n)):
        model = cnn_jax.create_model(name)
        cls = type(model)
        # The plain CIFAR nets (residual=False) share CifarResNet's class but refuse drop-path: no shortcuts.
        if "drop_path_rate" in module_fields(cls) and cls not in seen and getattr(model, "residual", True):
            seen.add(cls)
            chosen.append(name)
    return chosen


# InceptionResNetV2's is CI's costliest compile (its training step runs there); EfficientNetPhi is EfficientNet's body.
DROP_PATH_EXTENDED = {"inception_resnet_v2", "efficientnet_phi"}


@pytest.mark.slow
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.extended) if n in DROP_PATH_EXTENDED else n
                                  for n in _one_model_per_class_with_drop_path()])
def test_drop_path_is_identity_in_eval_and_random_in_train(name):
    info = cnn_jax.model_info(name)
    plain = cnn_jax.create_model(name, num_classes=NUM_CLASSES_SMALL)
    dropped = cnn_jax.create_model(name, num_classes=NUM_CLASSES_SMALL, drop_path_rate=0.5)
    images = jax.random.normal(jax.random.key(1), (4, info.min_resolution, info.min_resolution, info.in_channels))
    variables = synthetic_variables(plain, images)

    @jax.jit
    def outputs(v, x):
        eval_plain = plain.apply(v, x, train=False).logits
        eval_dropped = dropped.apply(v, x, train=False).logits
        train = [
            dropped.apply(v, x, train=True, rngs={"dropout": jax.random.key(s)}, mutable=["batch_stats"])[0].logits
            for s in (10, 11)
        ]
        return eval_plain, eval_dropped, train

    eval_plain, eval_dropped, (train_a, train_b) = outputs(variables, images)
    np.testing.assert_array_equal(eval_plain, eval_dropped)
    assert not np.allclose(train_a, train_b), f"{name}: drop_path_rate=0.5 changed nothing between two train draws"


def test_registering_a_class_without_the_model_contract_fails():
    """Every registered class has the contract fields because registration refuses one that lacks any."""
    from cnn_jax.registry import register_model

    class NoDropRate(nn.Module):
        num_classes: int = 10
        in_channels: int = 3
        dtype: Any = jnp.float32
        param_dtype: Any = jnp.float32

    with pytest.raises(TypeError, match=r"NoDropRate lacks the model-contract fields \['drop_rate'\]"):
        register_model("no_drop_rate", NoDropRate, cnn_jax.model_info("lenet5"))
    assert "no_drop_rate" not in cnn_jax.list_models()


def test_unknown_model_suggests_close_names():
    with pytest.raises(ValueError, match=r"unknown model 'resnet5'.*did you mean.*resnet50"):
        cnn_jax.create_model("resnet5")


def test_unknown_override_names_model_and_accepted_arguments():
    name = ALL_MODELS[0]
    with pytest.raises(TypeError, match=rf"model '{name}'.*unknown argument 'no_such_knob'.*accepted:.*num_classes"):
        cnn_jax.create_model(name, no_such_knob=3)


@pytest.mark.parametrize("shape", [(8, 8, 3), (1, 8, 8, 5), (1, 3, 8, 8, 1)])
def test_wrong_image_shape_is_a_clear_error(shape):
    name = "resnet18" if "resnet18" in ALL_MODELS else ALL_MODELS[0]
    model = cnn_jax.create_model(name)
    with pytest.raises(ValueError, match=r"expects images of shape \(batch, height, width, 3\).*got shape"):
        model.init(jax.random.key(0), jnp.zeros(shape), train=False)
