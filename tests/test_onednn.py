"""The oneDNN convolution kernels (``cnn_jax.ops.onednn``): built, loaded, equal to XLA's convolution."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from cnn_jax.ops import onednn

NHWC = ("NHWC", "HWIO", "NHWC")
needs_onednn = pytest.mark.skipif(not onednn.available(), reason=f"oneDNN unavailable: {onednn.unavailable_reason()}")


def test_kernels_build_and_load_where_ci_installs_onednn():
    """CI installs oneDNN and g++ (.ci/run): there a silent fallback to XLA's convolutions would hide a broken build."""
    if not os.environ.get("CI"):
        pytest.skip("only asserted in CI, which installs requirements.txt and g++")
    assert onednn.available(), onednn.unavailable_reason()


def _reference(x, w, strides, pads, dilation):
    return lax.conv_general_dilated(x, w, strides, pads, rhs_dilation=dilation, dimension_numbers=NHWC,
                                    precision=lax.Precision.HIGHEST)


@needs_onednn
@pytest.mark.parametrize(
    "shape,kernel,cout,strides,pads,dilation",
    [
        ((2, 9, 7, 3), 3, 5, (1, 1), ((1, 1), (1, 1)), (1, 1)),  # non-square map, 3 input channels
        ((3, 8, 8, 16), 3, 16, (2, 2), ((0, 1), (0, 1)), (1, 1)),  # TF "SAME" at stride 2: asymmetric
        ((2, 10, 10, 4), 3, 6, (2, 2), ((0, 0), (0, 0)), (1, 1)),  # VALID, a row and column left over
        ((2, 10, 10, 4), 3, 4, (1, 1), ((2, 2), (2, 2)), (2, 2)),  # dilated
        ((2, 12, 12, 1), 5, 6, (1, 1), ((0, 0), (0, 0)), (1, 1)),  # LeNet's C1
        ((2, 16, 16, 3), 7, 8, (2, 2), ((3, 3), (3, 3)), (1, 1)),  # ResNet stem
        ((2, 6, 6, 8), 1, 12, (1, 1), ((0, 0), (0, 0)), (1, 1)),  # 1x1
        ((2, 6, 5, 8), (1, 3), 4, (1, 1), ((0, 0), (1, 1)), (1, 1)),  # Inception's factorised 1x3
    ],
)
def test_conv_and_both_gradients_equal_xla(shape, kernel, cout, strides, pads, dilation):
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal(shape), jnp.float32)
    w = jnp.asarray(rng.standard_normal((kh, kw, shape[3], cout)), jnp.float32)
    y_ref, vjp_ref = jax.vjp(lambda x, w: _reference(x, w, strides, pads, dilation), x, w)
    y, vjp = jax.vjp(jax.jit(lambda x, w: onednn.conv(x, w, strides, pads, dilation)), x, w)
    assert y.shape == y_ref.shape and y.dtype == jnp.float32
    np.testing.assert_allclose(y, y_ref, rtol=1e-4, atol=1e-4)
    g = jnp.asarray(rng.standard_normal(y.shape), jnp.float32)
    for got, want in zip(vjp(g), vjp_ref(g), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@needs_onednn
def test_bfloat16_conv_and_gradients_stay_bfloat16_and_close_to_float32():
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((4, 8, 8, 16)), jnp.bfloat16)
    w = jnp.asarray(rng.standard_normal((3, 3, 16, 16)) * 0.2, jnp.bfloat16)
    args = ((1, 1), ((1, 1), (1, 1)), (1, 1))
    y, vjp = jax.vjp(lambda x, w: onednn.conv(x, w, *args), x, w)
    y_ref, vjp_ref = jax.vjp(lambda x, w: _reference(x, w, *args), x.astype(jnp.float32), w.astype(jnp.float32))
    assert y.dtype == jnp.bfloat16
    np.testing.assert_allclose(y.astype(jnp.float32), y_ref, rtol=2e-2, atol=5e-2)
    g = jnp.ones_like(y)
    for got, want in zip(vjp(g), vjp_ref(g.astype(jnp.float32)), strict=True):
        assert got.dtype == jnp.bfloat16
        scale = float(jnp.max(jnp.abs(want)))
        np.testing.assert_allclose(got.astype(jnp.float32), want, atol=2e-2 * scale)


@needs_onednn
def test_vmapped_conv_runs_one_call_per_group():
    """The trainer's BatchNorm groups vmap the model over groups of examples."""
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.standard_normal((3, 2, 6, 6, 4)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((3, 3, 4, 5)), jnp.float32)
    args = ((1, 1), ((1, 1), (1, 1)), (1, 1))
    grads = jax.vmap(jax.grad(lambda x: jnp.sum(onednn.conv(x, w, *args) ** 2)))(x)
    want = jax.vmap(jax.grad(lambda x: jnp.sum(_reference(x, w, *args) ** 2)))(x)
    np.testing.assert_allclose(grads, want, rtol=1e-4, atol=1e-3)


@needs_onednn
def test_build_is_cached_by_source_and_toolchain(tmp_path):
    first = onednn.build(tmp_path)
    modified = first.stat().st_mtime_ns
    assert onednn.build(tmp_path) == first and first.stat().st_mtime_ns == modified  # not rebuilt
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no partial files left behind


def test_missing_onednn_names_the_places_searched_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("CNN_JAX_ONEDNN_ROOT", str(tmp_path))
    with pytest.raises(onednn.OneDnnUnavailable, match=f"no oneDNN >= 3 .*{tmp_path}.*pip install onednn-cpu-gomp"):
        onednn.find_onednn_root()
    (tmp_path / "include" / "oneapi" / "dnnl").mkdir(parents=True)
    (tmp_path / "include" / "oneapi" / "dnnl" / "dnnl_version.h").write_text("#define DNNL_VERSION_MAJOR 2\n")
    with pytest.raises(onednn.OneDnnUnavailable, match=r"found .* \(version 2\)"):
        onednn.find_onednn_root()


def test_failed_build_reports_the_compiler_error(tmp_path, monkeypatch):
    if not onednn.available():
        pytest.skip(f"oneDNN unavailable: {onednn.unavailable_reason()}")
    broken = tmp_path / "broken.cc"
    broken.write_text("this is not C++\n")
    monkeypatch.setattr(onednn, "SOURCE", broken)
    with pytest.raises(onednn.OneDnnUnavailable, match="building broken.cc failed"):
        onednn.build(tmp_path / "cache")
