"""The accelerator path, checked from this CPU host: the trainer's step exported for ``cuda`` and ``tpu``.

The CPU formulations of ``cnn_jax.ops.conv_ops`` (matmul 1x1s, tap-loop depthwise, oneDNN custom calls,
strided-view max pooling) are ``lax.platform_dependent`` branches, so a program lowered for another platform must
carry XLA's own convolutions and ``reduce_window`` pooling and none of the CPU code, whatever host lowered it.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax.config import base_config, build_model
from cnn_jax.train import optim, steps


def _traced_train_step(model_name: str, dtype: str = "float32", resolution: int = 64):
    """The trainer's jitted step traced on abstract inputs, and the abstract state."""
    config = base_config()
    config.model.name = model_name
    config.model.num_classes = 10
    config.model.dtype = dtype
    model = build_model(config)
    lr_fn = optim.learning_rate_schedule(config.optimizer, 0.1, 1, 1)
    tx = optim.make_optimizer(config.optimizer, lr_fn)
    images = jax.ShapeDtypeStruct((2, resolution, resolution, 3), jnp.float32)

    state = jax.eval_shape(steps.state_initializer(model, tx, images.shape), jax.random.key(0))
    step = jax.jit(steps.make_train_step(model, tx, config, lr_fn))
    labels = jax.ShapeDtypeStruct((2,), jnp.int32)
    return step, (state, images, labels, jax.random.key(1))


def _conv_kernels(params) -> int:
    return sum(leaf.ndim == 4 for leaf in jax.tree_util.tree_leaves(params))


@pytest.mark.slow
@pytest.mark.parametrize("model_name,max_pool,depthwise", [
    ("resnet50", True, False),
    ("mobilenet_v2", False, True),
    ("densenet121", True, False),
])
def test_train_step_lowered_for_accelerators_has_native_convolutions_and_pooling(model_name, max_pool, depthwise):
    step, args = _traced_train_step(model_name)
    traced = step.trace(*args)  # traced once (both branches of every platform_dependent), lowered per platform
    for platform in ("cuda", "tpu"):
        _check_accelerator_program(traced.lower(lowering_platforms=(platform,)).as_text(), args[0], max_pool,
                                   depthwise)


def _check_accelerator_program(text: str, state, max_pool: bool, depthwise: bool) -> None:
    assert "cnn_jax_onednn" not in text and "stablehlo.custom_call" not in text
    convs = _conv_kernels(state.params)
    # Forward, filter gradient and (all but the first layer's) input gradient of every conv are convolutions ...
    assert text.count("stablehlo.convolution") >= 3 * convs - 1, (text.count("stablehlo.convolution"), convs)
    # ... and the only matmuls are the classifier's (forward, its two gradients): no 1x1 conv became a dot.
    assert text.count("stablehlo.dot_general") <= 3
    assert ("stablehlo.reduce_window" in text and "stablehlo.select_and_scatter" in text) == max_pool
    groups = {int(g) for g in re.findall(r"feature_group_count = (\d+)", text)}
    assert (max(groups) > 1) == depthwise, groups  # depthwise convs stay grouped convolutions


def test_bfloat16_step_exported_for_cuda_keeps_bfloat16_convolutions_and_float32_statistics():
    step, args = _traced_train_step("resnet50", dtype="bfloat16", resolution=32)
    exported, state = jax.export.export(step, platforms=("cuda",))(*args), args[0]
    text = exported.mlir_module()
    conv_types = re.findall(r"stablehlo\.convolution.*?: \((tensor<[^>]*>), (tensor<[^>]*>)\) -> (tensor<[^>]*>)", text)
    assert len(conv_types) >= 3 * _conv_kernels(state.params) - 1
    assert all(t.endswith("xbf16>") for types in conv_types for t in types), conv_types[:3]
    new_state, metrics = jax.tree_util.tree_unflatten(exported.out_tree, exported.out_avals)
    assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(new_state.batch_stats)} == {np.dtype(np.float32)}
    assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(new_state.params)} == {np.dtype(np.float32)}
    assert metrics["train/loss"].dtype == np.float32 and metrics["train/grad_norm"].dtype == np.float32
