"""Smoke test of the peer benchmark tool at a tiny size (no timing assertions: the CI machine is shared)."""

from __future__ import annotations

import math

import pytest

from cnn_jax.tools import bench_peers


@pytest.fixture
def threefry_keys():
    """Keras's seed generators hold raw threefry key data; conftest makes "rbg" the default for speed."""
    import jax

    previous = jax.config.jax_default_prng_impl
    jax.config.update("jax_default_prng_impl", "threefry2x32")
    yield
    jax.config.update("jax_default_prng_impl", previous)


def test_bench_peers_ours_and_keras_one_window(capsys, threefry_keys):
    pytest.importorskip("keras")
    bench_peers.main(["mobilenet_v2", "--batch", "2", "--resolution", "32", "--steps", "1", "--windows", "1",
                      "--mode", "train"])
    out = capsys.readouterr().out
    assert "keras 3." in out
    rows = [line for line in out.splitlines() if line.startswith("mobilenet_v2 | train | 2 |")]
    assert len(rows) == 1, out
    ratio = float(rows[0].rsplit("|", 1)[1])
    assert math.isfinite(ratio) and ratio > 0


def test_bench_peers_ours_eval_runs_without_keras():
    res = bench_peers.compare("mobilenet_v2", batch_size=1, resolution=32, train=False, steps=1, windows=1,
                              warmup=0, frameworks=("ours",))
    assert set(res) == {"ours"}
    assert res["ours"]["images_per_s"] > 0 and res["ours"]["compile_s"] > 0


def test_ours_train_step_moves_parameters_and_batch_stats():
    import jax
    import jax.numpy as jnp
    import numpy as np

    batch = (jax.random.normal(jax.random.key(0), (2, 32, 32, 3)), jnp.array([1, 2]))
    runner = bench_peers.ours("mobilenet_v2", batch, train=True, num_classes=10)
    before = jax.tree_util.tree_map(np.asarray, runner.state[0])
    (after, _), loss = runner.step(runner.state, batch)
    assert np.isfinite(float(loss))
    for collection in ("params", "batch_stats"):
        moved = jax.tree_util.tree_map(lambda a, b: not np.array_equal(a, b), before[collection], after[collection])
        assert all(jax.tree_util.tree_leaves(moved)), collection
