"""DenseNet: CIFAR/ImageNet layouts, bottleneck/compression options, conv dropout, the memory-efficient option
(same outputs and gradients, lower compiled training-step memory) and BatchNorm moments shared across a block."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import cnn_jax
from cnn_jax.models.densenet import ConcatBatchNorm, DenseNet, batch_moments
from cnn_jax.tools.train_memory import KEEP_REMAT_OPTIONS, train_step_memory

# A small DenseNet-BC: two blocks of four bottleneck layers on 8x8 inputs keeps each compile to a few seconds.
SMALL = dict(block_sizes=(4, 4), growth_rate=4, stem="cifar", num_classes=5)


def _param_shapes(model, resolution: int) -> dict:
    images = jax.ShapeDtypeStruct((1, resolution, resolution, 3), jnp.float32)
    return jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), images)["params"]


def test_cifar_densenet_bc100_layout():
    params = _param_shapes(cnn_jax.create_model("densenet_bc100_k12", num_classes=10), 32)
    assert params["stem"]["kernel"].shape == (3, 3, 3, 24)  # 2k channels, no bias
    assert "bias" not in params["stem"]
    for b in (1, 2, 3):  # (100 - 4) / 6 = 16 bottleneck layers per block
        assert {k for k in params if k.startswith(f"block{b}_")} == {f"block{b}_layer{i}" for i in range(16)}
    assert not any(k.startswith("block4_") for k in params)
    layer = params["block1_layer0"]
    assert layer["conv1"]["conv"]["kernel"].shape == (1, 1, 24, 48)  # bottleneck 4k
    assert layer["conv2"]["conv"]["kernel"].shape == (3, 3, 48, 12)  # growth k
    # 24 + 16 * 12 = 216 -> floor(0.5 * 216) = 108; 108 + 192 = 300 -> 150; 150 + 192 = 342.
    assert params["transition1"]["conv"]["kernel"].shape == (1, 1, 216, 108)
    assert params["transition2"]["conv"]["kernel"].shape == (1, 1, 300, 150)
    assert params["final_bn"]["scale"].shape == (342,)
    assert params["head"]["fc"]["kernel"].shape == (342, 10)


@pytest.mark.parametrize("name, stem, final", [("densenet121", 64, 1024), ("densenet161", 96, 2208)])
def test_imagenet_stem_and_final_width(name, stem, final):
    params = _param_shapes(cnn_jax.create_model(name), 32)
    assert params["stem"]["conv"]["kernel"].shape == (7, 7, 3, stem)
    assert params["final_bn"]["scale"].shape == (final,)


def test_no_bottleneck_and_no_compression():
    params = _param_shapes(DenseNet(**SMALL, bn_size=None, compression=1.0), 8)
    assert params["block1_layer0"]["conv1"]["conv"]["kernel"].shape == (3, 3, 8, 4)
    assert "conv2" not in params["block1_layer0"]
    assert params["transition1"]["conv"]["kernel"].shape == (1, 1, 24, 24)  # 8 + 4 * 4, kept whole


def test_invalid_options_are_clear_errors():
    with pytest.raises(ValueError, match="compression must be in"):
        _param_shapes(DenseNet(**{**SMALL, "compression": 0.0}), 8)
    with pytest.raises(ValueError, match="unknown stem 'tiny'"):
        _param_shapes(DenseNet(**{**SMALL, "stem": "tiny"}), 8)
    with pytest.raises(ValueError, match="cannot honour drop_path_rate"):
        cnn_jax.create_model("densenet121", drop_path_rate=0.1)


def _train_outputs(model, variables, images, labels, rng):
    def loss_fn(params):
        out, state = model.apply(
            {**variables, "params": params}, images, train=True, rngs={"dropout": rng}, mutable=["batch_stats"]
        )
        return optax.softmax_cross_entropy_with_integer_labels(out.logits, labels).mean(), (out.logits, state)

    return jax.grad(loss_fn, has_aux=True)(variables["params"])


def test_memory_efficient_gives_the_same_outputs_gradients_and_statistics():
    # Conv dropout is on, so the recomputation must also replay the same dropout masks.
    plain = DenseNet(**SMALL, conv_drop_rate=0.2)
    remat = DenseNet(**SMALL, conv_drop_rate=0.2, memory_efficient=True)
    images = jax.random.normal(jax.random.key(1), (4, 8, 8, 3))
    labels = jnp.arange(4) % 5
    variables = jax.jit(lambda x: plain.init(jax.random.key(0), x, train=False))(images)
    remat_shapes = jax.eval_shape(lambda x: remat.init(jax.random.key(0), x, train=False), images)
    assert jax.tree_util.tree_structure(variables) == jax.tree_util.tree_structure(remat_shapes)

    def both(v, x, y):
        rng = jax.random.key(3)
        return _train_outputs(plain, v, x, y, rng), _train_outputs(remat, v, x, y, rng)

    # Compiled so that the rematerialisation survives on CPU too (see KEEP_REMAT_OPTIONS).
    compiled = jax.jit(both).lower(variables, images, labels).compile(compiler_options=KEEP_REMAT_OPTIONS)
    (grads_p, (logits_p, state_p)), (grads_r, (logits_r, state_r)) = compiled(variables, images, labels)
    np.testing.assert_allclose(logits_r, logits_p, rtol=1e-5, atol=1e-6)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), grads_r, grads_p)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), state_r, state_p)


def test_memory_efficient_lowers_compiled_train_step_memory():
    plain = train_step_memory(DenseNet(**SMALL), batch=8, resolution=8)
    remat = train_step_memory(DenseNet(**SMALL, memory_efficient=True), batch=8, resolution=8)
    assert remat.argument_bytes == plain.argument_bytes  # same parameters and inputs
    assert remat.temp_bytes < plain.temp_bytes
    assert remat.total_bytes < plain.total_bytes


def test_conv_dropout_is_random_in_train_and_off_in_eval():
    model = DenseNet(**SMALL, conv_drop_rate=0.5)
    images = jax.random.normal(jax.random.key(1), (2, 8, 8, 3))
    variables = jax.jit(lambda x: model.init(jax.random.key(0), x, train=False))(images)

    @jax.jit
    def outputs(v, x):
        train = [
            model.apply(v, x, train=True, rngs={"dropout": jax.random.key(s)}, mutable=["batch_stats"])[0].logits
            for s in (1, 2)
        ]
        return train, model.apply(v, x, train=False).logits, DenseNet(**SMALL).apply(v, x, train=False).logits

    (train_a, train_b), eval_dropped, eval_plain = outputs(variables, images)
    assert not np.allclose(train_a, train_b)
    np.testing.assert_array_equal(eval_dropped, eval_plain)


def test_shared_norm_statistics_equal_reducing_every_concatenation():
    """Each feature map's batch moments computed once (default) give the textbook formulation's outputs, gradients
    and running statistics; memory-efficient remat with shared moments too."""
    textbook = DenseNet(**SMALL, share_norm_statistics=False)
    images = jax.random.normal(jax.random.key(1), (4, 8, 8, 3))
    labels = jnp.arange(4) % 5
    variables = jax.jit(lambda x: textbook.init(jax.random.key(0), x, train=False))(images)

    @jax.jit
    def outputs(v, x, y):
        rng = jax.random.key(3)
        return [_train_outputs(m, v, x, y, rng) for m in
                (textbook, DenseNet(**SMALL), DenseNet(**SMALL, memory_efficient=True))]

    (grads_t, (logits_t, state_t)), *shared = outputs(variables, images, labels)
    for grads, (logits, state) in shared:
        np.testing.assert_allclose(logits, logits_t, rtol=1e-5, atol=1e-6)
        jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), grads, grads_t)
        jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), state, state_t)
    # ... and the textbook path is Flax's own BatchNorm: one layer's BN against nn.BatchNorm on its input.
    x = jax.random.normal(jax.random.key(4), (4, 8, 8, 6)) * 3 + 1
    ours = ConcatBatchNorm(momentum=0.9, epsilon=1e-5)
    flax_bn = nn.BatchNorm(use_running_average=False, momentum=0.9, epsilon=1e-5)
    bn_vars = flax_bn.init(jax.random.key(0), x)
    chunks = (x[..., :2], x[..., 2:])
    y, new = ours.apply(bn_vars, x, [batch_moments(c) for c in chunks], True, mutable=["batch_stats"])
    y_ref, new_ref = flax_bn.apply(bn_vars, x, mutable=["batch_stats"])
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), new, new_ref)
    updated = {**bn_vars, **new}
    np.testing.assert_allclose(ours.apply(updated, x, None, False),
                               flax_bn.clone(use_running_average=True).apply(updated, x), rtol=1e-5, atol=1e-5)
