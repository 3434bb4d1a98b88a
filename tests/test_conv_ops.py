"""The XLA:CPU rewrites of ``cnn_jax.ops.conv_ops`` equal the plain lax/flax ops, values and gradients."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from cnn_jax.ops import conv_ops, onednn

# What flax.linen.Conv passes for NHWC inputs.
NHWC = lax.ConvDimensionNumbers(lhs_spec=(0, 3, 1, 2), rhs_spec=(3, 2, 0, 1), out_spec=(0, 3, 1, 2))
PAD1 = ((1, 1), (1, 1))


@pytest.mark.parametrize(
    "size,cin,cout,kernel,stride,padding,groups,dilation",
    [
        (9, 8, 16, 1, 1, ((0, 0), (0, 0)), 1, 1),  # pointwise -> oneDNN (dot_general without it)
        (9, 8, 16, 1, 2, ((0, 0), (0, 0)), 1, 1),  # strided pointwise (ResNet downsample shortcut)
        (8, 8, 16, 1, 2, "VALID", 1, 1),
        (9, 8, 8, 3, 1, PAD1, 8, 1),  # depthwise -> shifted multiply-adds
        (9, 8, 8, 3, 2, PAD1, 8, 1),
        (10, 8, 8, 5, 2, "SAME", 8, 1),  # TF "SAME": asymmetric padding at stride 2
        (9, 8, 8, 3, 1, ((2, 2), (2, 2)), 8, 2),  # dilated depthwise
        (9, 8, 16, 3, 1, PAD1, 1, 1),  # dense 3x3 -> oneDNN (lax where it is not installed)
        (10, 8, 16, 3, 2, "SAME", 1, 1),  # asymmetric padding at stride 2
        (10, 8, 16, 3, 2, "VALID", 1, 1),  # a row and column left over
        (12, 1, 6, 5, 1, ((2, 2), (2, 2)), 1, 1),  # LeNet's C1: one input channel
        (16, 3, 8, 7, 2, ((3, 3), (3, 3)), 1, 1),  # ResNet stem
        (10, 4, 4, 3, 1, ((2, 2), (2, 2)), 1, 2),  # dilated dense
        (9, 8, 16, 3, 1, PAD1, 4, 1),  # grouped: left to lax
        (9, 8, 16, 3, 1, PAD1, 8, 1),  # depthwise with channel multiplier 2: left to lax
    ],
)
@pytest.mark.parametrize("onednn_convs", [True, False], ids=["onednn", "xla"])
def test_conv_matches_lax_values_and_gradients(size, cin, cout, kernel, stride, padding, groups, dilation,
                                               onednn_convs):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, size, size, cin)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((kernel, kernel, cin // groups, cout)), jnp.float32)

    def loss(conv):
        def f(x, w):
            y = conv(x, w, (stride, stride), padding, rhs_dilation=(dilation, dilation), dimension_numbers=NHWC,
                     feature_group_count=groups)
            return jnp.sum(jnp.sin(y)), y.shape

        return jax.jit(jax.value_and_grad(f, argnums=(0, 1), has_aux=True))

    (ref, ref_shape), ref_grads = loss(lax.conv_general_dilated)(x, w)
    with conv_ops.rewrites(True, onednn_convs=onednn_convs):  # without oneDNN: the matmul 1x1s, XLA's others
        (new, new_shape), new_grads = loss(conv_ops.conv_general_dilated)(x, w)
    assert new_shape == ref_shape
    np.testing.assert_allclose(new, ref, rtol=1e-4, atol=1e-3)
    for a, b in zip(new_grads, ref_grads, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def _lowered(fn, *args, platform: str = "cpu") -> str:
    """The StableHLO of ``fn`` lowered for ``platform`` (from this CPU host), where ``lax.platform_dependent`` has
    kept only that platform's branch."""
    # A fresh function each time: jit caches traces per function, and the rewrites switch is not in its key.
    fresh = jax.jit(lambda *a: fn(*a))
    if platform == "cpu":  # this host's own lowering (jax.export refuses the oneDNN custom calls: no stable ABI)
        return fresh.lower(*args).as_text()
    return jax.export.export(fresh, platforms=(platform,))(*args).mlir_module()


def test_pointwise_filter_gradient_contracts_batch_and_space_without_a_transpose():
    """Without oneDNN, the 1x1 filter gradient is stated as (in, out) = x contracted with the output gradient over
    (N, H, W): JAX's transpose rule would compute (out, in) and transpose it, a form XLA:CPU sends to Eigen (1.33x
    slower MobileNet v2 step)."""
    x, w = jnp.ones((2, 8, 8, 4)), jnp.ones((1, 1, 4, 6))
    with conv_ops.rewrites(True, onednn_convs=False):
        text = _lowered(jax.grad(lambda w: jnp.sum(conv_ops.conv_general_dilated(
            x, w, (1, 1), "VALID", dimension_numbers=NHWC) ** 2)), w)
    assert "contracting_dims = [0, 1, 2] x [0, 1, 2]" in text, text
    assert "stablehlo.transpose" not in text and "stablehlo.convolution" not in text


@pytest.mark.parametrize("kernel", [1, 3])
def test_rewrites_are_keyed_on_the_lowering_platform_and_can_be_switched_off(kernel):
    x, w = jnp.ones((conv_ops.ONEDNN_MIN_POINTWISE_ROWS // 64, 8, 8, 4)), jnp.ones((kernel, kernel, 4, 6))

    def conv(x, w):
        return conv_ops.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=NHWC)

    if not onednn.available():
        pytest.skip(f"oneDNN unavailable: {onednn.unavailable_reason()}")
    cpu = "cnn_jax_onednn_conv_forward"
    assert cpu in _lowered(conv, x, w) and "stablehlo.convolution" not in _lowered(conv, x, w)
    for platform in ("cuda", "tpu"):  # the same trace lowered for an accelerator keeps XLA's convolution
        text = _lowered(conv, x, w, platform=platform)
        assert "stablehlo.convolution" in text and cpu not in text
    with conv_ops.rewrites(False):
        assert "stablehlo.convolution" in _lowered(conv, x, w)
    with conv_ops.rewrites(True, onednn_convs=False):  # 1x1: the matmul fallback; others: XLA's convolution
        assert ("stablehlo.dot_general" if kernel == 1 else "stablehlo.convolution") in _lowered(conv, x, w)
    if kernel == 1:  # a 1x1 over fewer positions stays a matmul, where oneDNN is slower
        small = _lowered(conv, x[:1], w)
        assert "stablehlo.dot_general" in small and cpu not in small


def test_bfloat16_depthwise_accumulates_in_float32():
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((1, 6, 6, 4)), jnp.bfloat16)
    w = jnp.asarray(rng.standard_normal((3, 3, 1, 4)), jnp.bfloat16)
    y = conv_ops.conv_general_dilated(x, w, (1, 1), PAD1, dimension_numbers=NHWC, feature_group_count=4)
    ref = lax.conv_general_dilated(x.astype(jnp.float32), w.astype(jnp.float32), (1, 1), PAD1,
                                   dimension_numbers=NHWC, feature_group_count=4)
    assert y.dtype == jnp.bfloat16
    np.testing.assert_allclose(y.astype(jnp.float32), ref, rtol=1e-2, atol=2e-2)


@pytest.mark.parametrize("rewrite", [True, False], ids=["cpu_views", "reduce_window"])
@pytest.mark.parametrize("window,stride,pad", [(3, 2, 1), (3, 1, 1), (2, 2, 0), (3, 2, 0)])
def test_max_pool_matches_flax_values_and_gradients(window, stride, pad, rewrite):
    """Both paths: the strided views of XLA:CPU and the reduce_window of other backends (which must stay
    differentiable under jit: GPU/TPU training goes through it)."""
    x = jnp.asarray(np.random.default_rng(2).standard_normal((2, 11, 11, 4)), jnp.float32)
    pads = [(pad, pad), (pad, pad)]

    def ref(x):
        return jnp.sum(jnp.sin(nn.max_pool(x, (window, window), (stride, stride), padding=pads)))

    def new(x):
        return jnp.sum(jnp.sin(conv_ops.max_pool(x, (window, window), (stride, stride), pads)))

    with conv_ops.rewrites(rewrite):
        (b, gb) = jax.jit(jax.value_and_grad(new))(x)
    (a, ga) = jax.value_and_grad(ref)(x)
    np.testing.assert_allclose(b, a, rtol=1e-6)
    np.testing.assert_allclose(gb, ga, atol=1e-6)  # distinct values: no ties for the gradient to split


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_models_train_with_the_rewrites_off_as_on_gpu_and_tpu(name):
    """With the rewrites off (every non-CPU backend) the same models differentiate under jit to the same
    gradients: max pooling, 1x1 and depthwise convolutions through the plain lax ops."""
    import cnn_jax

    model = cnn_jax.create_model(name, num_classes=3)
    x = jnp.asarray(np.random.default_rng(3).standard_normal((2, 32, 32, 3)), jnp.float32)
    variables = model.init(jax.random.key(0), x, train=False)

    def loss(params):
        # Eval-mode BatchNorm: train mode at 1x1 maps and batch 2 amplifies rounding differences without bound.
        return jnp.sum(jnp.sin(model.apply({**variables, "params": params}, x, train=False).logits))

    grads = {}
    for rewrite in (True, False):
        with conv_ops.rewrites(rewrite):
            grads[rewrite] = jax.jit(jax.grad(loss))(variables["params"])
    for a, b in zip(jax.tree_util.tree_leaves(grads[True]), jax.tree_util.tree_leaves(grads[False]), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-3 * float(np.abs(b).max()) + 1e-6)  # summation order differs
