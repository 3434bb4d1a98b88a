"""Smoke tests of the benchmark tool at tiny sizes (no timing assertions: the CI machine is shared)."""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest

from cnn_jax.tools import bench


@pytest.fixture
def threefry_keys():
    """Keras's seed generators hold raw threefry key data; conftest makes "rbg" the default for speed."""
    previous = jax.config.jax_default_prng_impl
    jax.config.update("jax_default_prng_impl", "threefry2x32")
    yield
    jax.config.update("jax_default_prng_impl", previous)


def _rows(out: str) -> dict[tuple[str, str, str], list[str]]:
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) == 10 and cells[1] in bench.MODES:
            rows[(cells[0], cells[1], cells[2])] = cells[3:]
    return rows


@pytest.mark.extended  # ~1 min of compiles on 2 cores; the torch peer test covers the peer machinery in CI
def test_bench_ours_and_keras_one_window(capsys, threefry_keys):
    pytest.importorskip("keras")
    results = bench.main(["--model", "mobilenet_v2", "--batch", "2", "--resolution", "32", "--windows", "1",
                          "--warmup", "0", "--mode", "train", "--peers", "keras", "--matmul-size", "256"])
    out = capsys.readouterr().out
    assert "keras 3." in out and "GFLOP/s" in out
    rows = _rows(out)
    assert set(rows) == {("mobilenet_v2", "train", c) for c in ("ours", "keras")}, out
    res = results[("mobilenet_v2", "train")]
    for name in ("ours", "keras"):
        r = res[name]
        assert r.images_per_s > 0 and r.first_step_s >= r.compile_s > 0
        assert r.peak_bytes > 0  # XLA's memory analysis of the compiled step
    ratio = float(rows[("mobilenet_v2", "train", "keras")][-1])
    assert math.isfinite(ratio) and ratio > 0
    # Every contender is charged our step's flops; a train step is ~3 forward passes of ~6 MFLOPs at 32x32.
    assert 1e7 < res["ours"].flops_per_image < 1e8


def test_ours_train_step_moves_parameters_and_batch_stats():
    images, labels = bench.synthetic_batch(2, 32)
    contender = bench.ours("resnet18", "train", images, labels)  # compiled, and one step taken
    state, _ = contender.current()
    before = jax.tree_util.tree_map(np.asarray, (state.params, state.batch_stats))
    contender.step()  # the state is donated: the contender keeps the new one
    contender.sync()
    state, metrics = contender.current()
    assert int(state.step) == 2 and np.isfinite(float(metrics["train/loss"]))
    after = (state.params, state.batch_stats)
    moved = jax.tree_util.tree_map(lambda a, b: not np.array_equal(a, b), before, after)
    assert all(jax.tree_util.tree_leaves(moved))


def test_torch_peer_trains_and_infers_torchvision_through_the_shim():
    """The PyTorch peer does the work it is timed for: a train step moves every layer's weights (first and last
    included) and gives the batch's logits; an eval step leaves the weights and repeats its logits exactly."""
    torch = pytest.importorskip("torch")
    images, labels = bench.synthetic_batch(2, 32)
    train = bench.torch_peer("resnet18", "train", images, labels)  # built, and one step taken
    before, _ = train.current()
    train.step()
    after, logits = train.current()
    assert train.name == "torch" and tuple(logits.shape) == (2, bench.NUM_CLASSES)
    moved = {k for k in before if before[k].is_floating_point() and not torch.equal(before[k], after[k])}
    assert {"conv1.weight", "layer4.1.conv2.weight", "fc.weight", "fc.bias"} <= moved
    infer = bench.torch_peer("resnet18", "eval", images, labels)
    before, first = infer.current()
    infer.step()
    after, second = infer.current()
    assert torch.equal(first, second) and all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("name", ["resnet20", "resnet56", "wrn16_8", "preact_resnet164", "densenet_bc100_k12",
                                  "lenet5"])
def test_torch_twins_have_our_parameter_counts(name):
    pytest.importorskip("torch")
    import cnn_jax
    from cnn_jax.tools import torch_twins

    model = cnn_jax.create_model(name, num_classes=10)
    channels = cnn_jax.model_info(name).in_channels
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), np.zeros((1, 32, 32, channels)), train=False))
    ours = sum(leaf.size for leaf in jax.tree_util.tree_leaves(variables["params"]))
    twin = torch_twins.build(name, 10, expected_params=ours)  # raises on a mismatch
    assert sum(p.numel() for p in twin.parameters()) == ours
    with pytest.raises(AssertionError, match=f"PyTorch twin of {name} has"):
        torch_twins.build(name, 10, expected_params=ours + 1)


def test_bench_times_a_cifar_model_against_its_torch_twin_and_xla_convs(capsys):
    pytest.importorskip("torch")
    results = bench.main(["--model", "resnet20", "--batch", "4", "--resolution", "32", "--windows", "1",
                          "--warmup", "0", "--mode", "train", "--peers", "torch", "--xla-convs",
                          "--matmul-size", "256"])
    rows = _rows(capsys.readouterr().out)
    assert set(rows) == {("resnet20", "train", c) for c in ("ours", "ours-xla-convs", "torch")}
    res = results[("resnet20", "train")]
    assert all(r.images_per_s > 0 for r in res.values())
    # The work charged is XLA's count of the textbook step (custom calls count nothing): ~3 x 2 x 41 M MACs.
    assert 1.5e8 < res["ours"].flops_per_image < 4e8
    assert res["ours"].flops_per_image == res["ours-xla-convs"].flops_per_image


def test_matmul_peak_and_bad_arguments():
    assert bench.matmul_peak_flops(128, repeats=2) > 1e8
    assert bench.matmul_peak_flops(128, repeats=2, dtype="bfloat16") > 1e7
    with pytest.raises(ValueError, match="dtype 'float16'"):
        bench.matmul_peak_flops(128, dtype="float16")
    assert bench.parse_variant("x:xla_cpu_multi_thread_eigen=false,xla_cpu_prefer_vector_width=512,t=A|B") == (
        "x", {"xla_cpu_multi_thread_eigen": False, "xla_cpu_prefer_vector_width": 512, "t": "A,B"})
    with pytest.raises(ValueError, match="NAME:KEY=VALUE"):
        bench.parse_variant("no_options")
    # model.FIELD entries of a variant are model overrides, not XLA options
    name, options = bench.parse_variant("seven:model.num_classes=7")
    images, _ = bench.synthetic_batch(1, 32)
    variables, _ = bench.ours("resnet18", "infer", images, images[:, 0, 0, 0], options=options, name=name).current()
    assert variables["params"]["head"]["fc"]["kernel"].shape == (512, 7)
    with pytest.raises(ValueError, match="unknown peer 'tf'"):
        bench.measure("resnet18", "infer", batch=1, resolution=32, peers=("tf",))
    with pytest.raises(ValueError, match="no Keras application for 'resnet18'"):
        bench.keras_peer("resnet18", "infer", np.zeros((1, 32, 32, 3), np.float32), np.zeros(1, np.int32))
    with pytest.raises(SystemExit):
        bench.main(["--model", "resnet18", "--mode", "fit"])


def test_bfloat16_table_charges_each_row_against_the_peak_of_its_own_dtype(capsys):
    bench.main(["--model", "resnet18", "--mode", "infer", "--batch", "1", "--resolution", "32", "--windows", "1",
                "--warmup", "0", "--dtype", "bfloat16", "--matmul-size", "256"])
    out = capsys.readouterr().out
    peaks = {line.split()[1]: float(line.split(": ")[1].split()[0]) for line in out.splitlines()
             if line.startswith("# ") and " matmul peak " in line}
    assert set(peaks) == {"float32", "bfloat16"}, out
    rows = _rows(out)
    assert set(rows) == {("resnet18", "infer", c) for c in ("ours", "ours-float32")}, out
    for (_, _, name), cells in rows.items():  # ... img/s (spread) | peak MiB | GFLOP/s | % of peak | ours / contender
        achieved, percent = float(cells[-3]), float(cells[-2])
        peak = peaks["float32" if name == "ours-float32" else "bfloat16"]
        assert percent == pytest.approx(100 * achieved / peak, rel=0.05, abs=0.15), (name, cells, peaks)


def test_first_step_in_fresh_processes_times_each_contender_and_names_a_failing_one(capsys):
    # --windows 0: no throughput, only ours and ours relaunched on the cache an untimed launch filled (3 processes)
    assert bench.main(["--model", "resnet18", "--mode", "infer", "--batch", "1", "--resolution", "32",
                       "--windows", "0", "--first-step-runs", "1"]) == {}
    rows = {line.split(" | ")[0]: line.split(" | ")[1:] for line in capsys.readouterr().out.splitlines()
            if line.startswith("resnet18 infer ")}
    assert list(rows) == ["resnet18 infer ours", f"resnet18 infer {bench.WARM_CACHE}"]
    for cells in rows.values():  # launch to first step, ratio, the first step's run, ready to step, ratio
        total, step, ready = float(cells[0].split()[0]), float(cells[2]), float(cells[3])
        assert 0 < step < total < 300 and ready == pytest.approx(total - step, abs=0.15)
    with pytest.raises(RuntimeError, match="--first-step-of no_such_contender .*before its first step"):
        bench.first_step_in_fresh_processes("resnet18", "infer", ["no_such_contender"], runs=1, batch=1,
                                            resolution=32, dtype="float32")
