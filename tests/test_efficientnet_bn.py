"""EfficientNet's BatchNorm statistics and depthwise initialisation: the running statistics are the EMA of the batch
statistics the trainer saw, eval mode with a batch's own statistics reproduces train mode, and the depthwise init
convention keeps short runs from collapsing in eval mode (cnn_jax/models/efficientnet.py, "Why the init convention
matters"). A tiny EfficientNet-B0 body (width 0.25, depth 0.25: one block per stage) at 32x32, so the last stages
run on 1x1 maps as in the Fashion-MNIST proxy."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax import layers
from cnn_jax.models.efficientnet import EfficientNet

BATCH, SIZE = 8, 32


def _model(init_convention: str = "tf") -> EfficientNet:
    return EfficientNet(num_classes=10, in_channels=1, drop_rate=0.0, width_mult=0.25, depth_mult=0.25,
                        norm_convention="pytorch", init_convention=init_convention)


def _images(seed: int) -> jax.Array:
    return jax.random.normal(jax.random.key(seed), (BATCH, SIZE, SIZE, 1))


@functools.cache
def _variables(init_convention: str) -> dict:
    if init_convention == "tf":
        return jax.jit(_model("tf").init, static_argnames="train")(jax.random.key(0), _images(0), train=False)
    variables = _variables("tf")
    # The 'pytorch' init draws the same normals (same key) scaled by sqrt(2 / (k^2 C)) instead of sqrt(2 / k^2):
    # rescale the depthwise kernels rather than compiling a second initialiser (that the model hands its depthwise
    # convs the 'pytorch' initialiser is checked in test_efficientnet_depthwise_init_follows_the_convention).
    def rescale(path, leaf):
        depthwise = jax.tree_util.keystr(path).endswith("['depthwise']['conv']['kernel']")
        return leaf / leaf.shape[-1] ** 0.5 if depthwise else leaf

    return {**variables, "params": jax.tree_util.tree_map_with_path(rescale, variables["params"])}


def _flat(tree) -> dict[str, jax.Array]:
    return {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


@jax.jit
def _train_forward(variables, images):
    """Train-mode logits, the updated batch_stats and every BatchNorm's input (the output of its conv)."""
    out, state = _model().apply(variables, images, train=True, mutable=["batch_stats", "intermediates"],
                                capture_intermediates=lambda module, _: module.name == "conv")
    return out.logits, state["batch_stats"], state["intermediates"]


@jax.jit
def _eval_logits(variables, images):
    return _model().apply(variables, images, train=False).logits


def _batch_moments(intermediates) -> dict[str, tuple[jax.Array, jax.Array]]:
    """Per-channel (mean, biased variance) of each BatchNorm's input, keyed like the batch_stats ``mean`` leaves."""
    moments = {}
    for key, value in _flat(intermediates).items():
        if "['conv']" in key and "['se']" not in key:
            prefix = key.split("['conv']")[0]
            moments[f"{prefix}['bn']['mean']"] = (value.mean(axis=(0, 1, 2)), value.var(axis=(0, 1, 2)))
    return moments


def test_grouped_conv_kernel_init_per_group_fan_out():
    key, shape = jax.random.key(0), (5, 5, 1, 4096)  # a depthwise kernel of 4096 channels
    tf = layers.grouped_conv_kernel_init(4096, "tf")(key, shape)
    torch = layers.grouped_conv_kernel_init(4096, "pytorch")(key, shape)
    # He et al. 2015 over the fan-out: TF/timm count kh * kw * out / groups = 25, PyTorch kh * kw * out.
    assert float(jnp.std(tf)) == pytest.approx((2 / 25) ** 0.5, rel=0.03)
    assert float(jnp.std(torch)) == pytest.approx((2 / (25 * 4096)) ** 0.5, rel=0.03)
    dense = (3, 3, 16, 32)  # ungrouped convs: the conventions agree
    np.testing.assert_array_equal(layers.grouped_conv_kernel_init(1, "tf")(key, dense),
                                  layers.grouped_conv_kernel_init(1, "pytorch")(key, dense))
    with pytest.raises(ValueError, match="unknown init convention 'keras'; expected one of"):
        layers.grouped_conv_kernel_init(4, "keras")


def test_efficientnet_depthwise_init_follows_the_convention():
    assert EfficientNet().init_convention == "tf"
    kernels = {k: v for k, v in _flat(_variables("tf")["params"]).items()
               if k.endswith("['depthwise']['conv']['kernel']")}
    assert len(kernels) == 7  # one block per stage
    for key, kernel in kernels.items():
        kh, kw, per_group, _ = kernel.shape
        assert per_group == 1
        # Normal samples of std sqrt(2 / (kh kw)); a loose bound: the first block's kernel has only 72 values.
        assert float(jnp.std(kernel)) == pytest.approx((2 / (kh * kw)) ** 0.5, rel=0.3), key

    # Which initialiser each conv receives, under both conventions (abstract forward, nothing compiled).
    for convention in ("tf", "pytorch"):
        seen = []

        def interceptor(next_fun, args, kwargs, context, seen=seen):
            module = context.module
            if isinstance(module, nn.Conv) and context.method_name == "__call__" and module.name == "conv":
                seen.append((module.feature_group_count, module.kernel_size, module.kernel_init))
            return next_fun(*args, **kwargs)

        with nn.intercept_methods(interceptor):
            jax.eval_shape(lambda x, c=convention: _model(c).init(jax.random.key(0), x, train=False), _images(0))
        assert sum(groups > 1 for groups, _, _ in seen) == 7
        for groups, (kh, kw), init in seen:
            if groups == 1:  # stem, expand, project and head convs: the conventions agree
                assert init is layers.conv_kernel_init
                continue
            fan_out = kh * kw * (groups if convention == "pytorch" else 1)
            kernel = init(jax.random.key(1), (kh, kw, 1, groups))
            assert float(jnp.std(kernel)) == pytest.approx((2 / fan_out) ** 0.5, rel=0.3), (convention, groups)


def test_running_stats_are_the_ema_of_the_batch_stats_and_eval_with_them_is_train_mode():
    # (That the train step carries these statistics into the next state: tests/test_train_system.py.)
    momentum, _ = layers.BN_CONVENTIONS["pytorch"]  # Flax's momentum is the decay: 0.9 = PyTorch's momentum 0.1
    variables = _variables("tf")
    stats = variables["batch_stats"]
    expected = _flat(stats)
    # stem, head, 7 blocks of 3 BatchNorms but the first (no expansion conv): every one is checked below
    assert len(expected) == 2 * 22
    for step in range(3):
        _, stats, captured = _train_forward({"params": variables["params"], "batch_stats": stats}, _images(step + 1))
        moments = _batch_moments(captured)
        assert len(moments) == 22
        for mean_key, (mean, var) in moments.items():
            var_key = mean_key.replace("['mean']", "['var']")
            expected[mean_key] = momentum * expected[mean_key] + (1 - momentum) * mean
            expected[var_key] = momentum * expected[var_key] + (1 - momentum) * var
        got = _flat(stats)
        assert got.keys() == expected.keys()
        for key in got:
            np.testing.assert_allclose(got[key], expected[key], rtol=2e-4, atol=1e-6, err_msg=f"update {step} {key}")

    # Eval mode whose running statistics are a batch's own statistics computes exactly what train mode computes.
    images = _images(10)
    train_logits, _, captured = _train_forward({"params": variables["params"], "batch_stats": stats}, images)
    own = _flat(stats)
    for mean_key, (mean, var) in _batch_moments(captured).items():
        own[mean_key], own[mean_key.replace("['mean']", "['var']")] = mean, var
    own_tree = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(stats), [own[k] for k in _flat(stats)])
    eval_logits = _eval_logits({"params": variables["params"], "batch_stats": own_tree}, images)
    np.testing.assert_allclose(eval_logits, train_logits, rtol=1e-3, atol=1e-4)
    # ... and it reads the running averages, not the batch's statistics, when those differ.
    eval_running = _eval_logits({"params": variables["params"], "batch_stats": stats}, images)
    assert np.abs(eval_running - train_logits).max() > 1e-2


@pytest.mark.parametrize("convention", ["tf", "pytorch"])
def test_eval_mode_after_a_short_statistics_warmup(convention):
    """The regression of the Fashion-MNIST proxy's eval-mode collapse: 40 BatchNorm updates at decay 0.9 leave
    0.9^40 = 1.5% of the initial running variance of 1. Under the 'pytorch' depthwise init the deep depthwise convs
    output variances of ~1e-4 on the 1x1 maps, so that remainder dominates and eval mode shrinks the features
    block after block until the logits hardly depend on the image; under the 'tf' init (EfficientNet's default)
    the eval-mode logits keep a spread of the order of train mode's (measured 0.40 vs 2.5e-4 of it)."""
    variables = _variables(convention)
    stats = variables["batch_stats"]
    for step in range(40):
        _, stats, _ = _train_forward({"params": variables["params"], "batch_stats": stats}, _images(100 + step))
    images = _images(1)
    train_logits, _, _ = _train_forward({"params": variables["params"], "batch_stats": stats}, images)
    eval_logits = _eval_logits({"params": variables["params"], "batch_stats": stats}, images)
    spread = float(jnp.std(eval_logits, axis=0).mean() / jnp.std(train_logits, axis=0).mean())
    if convention == "tf":
        assert spread > 0.2, spread
    else:
        assert spread < 0.01, spread
