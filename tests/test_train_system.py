"""Train-step options (gradient accumulation, ghost BatchNorm, EMA, LARS, bf16) and the process-level guarantees:
a SIGKILLed run resumes from its last complete checkpoint, a checkpoint restores onto another device count, and
two ``jax.distributed`` processes train like one."""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import cnn_jax
from cnn_jax.config import base_config
from cnn_jax.runtime import allocator
from cnn_jax.train import losses, optim, steps
from cnn_jax.train.checkpoint import Checkpointer
from cnn_jax.train.loop import train_and_evaluate
from cnn_jax.train.metrics import read_metrics

REPO = pathlib.Path(__file__).resolve().parents[1]
LENET = "experiments/fashion_mnist/lenet5.py"
# A short real-data run shared by the process-level tests (Fashion-MNIST subset, LeNet-5).
SMALL_RUN = {"data.max_train_examples": 2048, "data.max_eval_examples": 200, "train.global_batch": 64,
             "train.eval_batch": 200, "train.eval_every_epochs": 100.0, "train.log_every_steps": 1}


def _config(overrides: dict):
    from experiments.fashion_mnist.lenet5 import get_config

    config = get_config()
    for key, value in overrides.items():
        section, name = key.split(".")
        config[section][name] = value
    return config


def _launch(workdir, overrides: dict, *, devices: int = 1, extra: tuple[str, ...] = (), wait: bool = True):
    # A test-local persistent compilation cache, written at any compile time: relaunches load from it.
    args = [sys.executable, "launch.py", "--config", LENET, "--workdir", str(workdir),
            "--compilation_cache_dir", str(pathlib.Path(workdir).parent / "xla_cache"), *extra]
    args += [f"--config.{k}={v}" for k, v in overrides.items()]
    flags = f"--xla_force_host_platform_device_count={devices} {os.environ.get('XLA_FLAGS', '')}"
    # The same PRNG as this process (conftest picks "rbg"), so in-process runs are comparable.
    env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu", JAX_DEFAULT_PRNG_IMPL=jax.config.jax_default_prng_impl,
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    if not wait:
        return subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    proc = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout


def _final(workdir):
    checkpointer = Checkpointer(workdir, keep=3)
    state, meta = checkpointer.read()
    checkpointer.close()
    return meta["step"], state


def _assert_trees_close(a, b, rtol=1e-5, atol=1e-6):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def _step_config(**train):
    c = base_config()
    c.optimizer.name, c.optimizer.momentum, c.optimizer.weight_decay = "sgd", 0.0, 0.0
    for key, value in train.items():
        c.train[key] = value
    return c


def _bn_model_and_batch(batch: int = 8):
    model = cnn_jax.create_model("resnet20", num_classes=10, in_channels=1)
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.standard_normal((batch, 8, 8, 1)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, 10, batch), jnp.int32)
    variables = model.init(jax.random.key(0), images, train=False)
    return model, variables, images, labels


def _lenet_and_batch(batch: int, seed: int):
    model = cnn_jax.create_model("lenet5", num_classes=10, in_channels=1)
    rng = np.random.default_rng(seed)
    images = jnp.asarray(rng.standard_normal((batch, 32, 32, 1)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, 10, batch), jnp.int32)
    return model, model.init(jax.random.key(0), images, train=False), images, labels


def _state(variables, tx, ema=False):
    return steps.create_train_state(variables["params"], variables.get("batch_stats", {}), tx, ema=ema)


def _apply_train(model, params, batch_stats, images, labels):
    out, new = model.apply({"params": params, "batch_stats": batch_stats}, images, train=True,
                           mutable=["batch_stats"])
    return jnp.mean(losses.cross_entropy(out.logits, labels)), new["batch_stats"]


def test_gradient_accumulation_equals_the_full_batch():
    """LeNet (no BatchNorm): 4 microbatches give the same update as one batch."""
    model, variables, images, labels = _lenet_and_batch(16, seed=1)
    tx = optax.sgd(0.5)
    results = {}
    for k in (1, 4):
        step = jax.jit(steps.make_train_step(model, tx, _step_config(microbatches=k), lambda s: 0.5))
        results[k] = step(_state(variables, tx), images, labels, jax.random.key(0))
    _assert_trees_close(results[1][0].params, results[4][0].params, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(results[1][1]["train/loss"], results[4][1]["train/loss"], rtol=1e-6)
    assert not np.allclose(results[1][0].params["c1"]["kernel"], variables["params"]["c1"]["kernel"])


def test_microbatches_update_batchnorm_statistics_in_order():
    """Microbatch j holds examples j, j+k, ...; the running statistics see them one after another."""
    model, variables, images, labels = _bn_model_and_batch()
    tx = optax.sgd(0.0)
    step = jax.jit(steps.make_train_step(model, tx, _step_config(microbatches=2), lambda s: 0.0))
    state, metrics = step(_state(variables, tx), images, labels, jax.random.key(0))
    loss0, stats = _apply_train(model, variables["params"], variables["batch_stats"], images[0::2], labels[0::2])
    loss1, stats = _apply_train(model, variables["params"], stats, images[1::2], labels[1::2])
    _assert_trees_close(state.batch_stats, stats, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(metrics["train/loss"], (loss0 + loss1) / 2, rtol=1e-5)


def test_ghost_batchnorm_uses_per_group_statistics():
    model, variables, images, labels = _bn_model_and_batch()
    tx = optax.sgd(0.0)
    results = {}
    for group in (0, 8, 4):
        step = jax.jit(steps.make_train_step(model, tx, _step_config(bn_group_size=group), lambda s: 0.0))
        results[group] = step(_state(variables, tx), images, labels, jax.random.key(0))
    _assert_trees_close(results[0][0].batch_stats, results[8][0].batch_stats)  # one group == global statistics
    halves = [_apply_train(model, variables["params"], variables["batch_stats"], images[i : i + 4], labels[i : i + 4])
              for i in (0, 4)]
    expected_stats = jax.tree_util.tree_map(lambda a, b: (a + b) / 2, halves[0][1], halves[1][1])
    _assert_trees_close(results[4][0].batch_stats, expected_stats, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(results[4][1]["train/loss"], (halves[0][0] + halves[1][0]) / 2, rtol=1e-5)
    assert not np.allclose(results[4][1]["train/loss"], results[0][1]["train/loss"])


def test_ema_follows_tensorflow_moving_average_with_warmup():
    model, variables, images, labels = _lenet_and_batch(8, seed=2)
    tx = optax.sgd(0.1)
    step = jax.jit(steps.make_train_step(model, tx, _step_config(ema_decay=0.9, ema_warmup=True), lambda s: 0.1))
    state = _state(variables, tx, ema=True)
    expected = variables["params"]
    for t in range(4):
        state, _ = step(state, images, labels, jax.random.key(0))
        decay = min(0.9, (1 + t) / (10 + t))
        expected = jax.tree_util.tree_map(lambda e, p, d=decay: d * e + (1 - d) * p, expected, state.params)
    _assert_trees_close(state.ema_params, expected, rtol=1e-5, atol=1e-7)
    assert not np.allclose(state.ema_params["c1"]["kernel"], state.params["c1"]["kernel"])


def test_lars_scales_kernels_by_trust_ratio_and_leaves_batchnorm_alone():
    c = base_config().optimizer
    c.name, c.weight_decay, c.momentum, c.lars_trust_coefficient = "lars", 1e-3, 0.9, 0.001
    tx = optim.make_optimizer(c, optax.constant_schedule(2.0))
    rng = np.random.default_rng(3)
    params = {"conv": {"kernel": jnp.asarray(rng.standard_normal((3, 3, 2, 4)), jnp.float32)},
              "bn": {"scale": jnp.ones((4,)), "bias": jnp.zeros((4,))}}
    grads = jax.tree_util.tree_map(lambda p: jnp.asarray(rng.standard_normal(p.shape), jnp.float32), params)
    updates, _ = tx.update(grads, tx.init(params), params)
    w, g = params["conv"]["kernel"], grads["conv"]["kernel"]
    decayed = g + 1e-3 * w
    trust = 0.001 * jnp.linalg.norm(w) / jnp.linalg.norm(decayed)
    np.testing.assert_allclose(updates["conv"]["kernel"], -2.0 * trust * decayed, rtol=1e-5)
    np.testing.assert_allclose(updates["bn"]["scale"], -2.0 * grads["bn"]["scale"], rtol=1e-6)


def test_bfloat16_compute_keeps_float32_parameters_statistics_and_loss():
    model = cnn_jax.create_model("resnet20", num_classes=10, in_channels=1, dtype=jnp.bfloat16)
    _, variables, images, labels = _bn_model_and_batch()
    out, new = model.apply(variables, images, train=True, mutable=["batch_stats"])
    assert out.logits.dtype == jnp.bfloat16
    assert {x.dtype for x in jax.tree_util.tree_leaves((variables, new))} == {jnp.dtype(jnp.float32)}
    tx = optax.sgd(0.1)
    step = jax.jit(steps.make_train_step(model, tx, _step_config(), lambda s: 0.1))
    state, metrics = step(_state(variables, tx), images, labels, jax.random.key(0))
    assert metrics["train/loss"].dtype == jnp.float32
    assert {x.dtype for x in jax.tree_util.tree_leaves((state.params, state.batch_stats))} == {jnp.dtype(jnp.float32)}
    # Close to the float32 loss: bf16 has ~3 significant digits.
    loss32, _ = _apply_train(cnn_jax.create_model("resnet20", num_classes=10, in_channels=1),
                             variables["params"], variables["batch_stats"], images, labels)
    np.testing.assert_allclose(metrics["train/loss"], loss32, rtol=3e-2)


@pytest.mark.slow
def test_bfloat16_run_with_ema_learns_and_reports_both_evaluations(tmp_path):
    config = _config(SMALL_RUN | {"train.num_steps": 120, "train.ema_decay": 0.98})
    config.model.dtype = config.data.dtype = "bfloat16"
    result = train_and_evaluate(config, tmp_path)
    assert result["eval/top1"] > 0.6 and result["eval_ema/top1"] > 0.6, result
    assert result["eval_ema/examples"] == 200
    train_losses = [r["train/loss"] for r in read_metrics(tmp_path) if "train/loss" in r]
    assert np.mean(train_losses[-10:]) < 0.6 * np.mean(train_losses[:10])
    _, state = _final(tmp_path)
    assert {x.dtype for x in jax.tree_util.tree_leaves(state["params"])} == {np.dtype(np.float32)}
    best = Checkpointer(tmp_path / "best", keep=1)
    best_meta = best.read_meta()
    best.close()
    evals = [r["eval/top1"] for r in read_metrics(tmp_path) if "eval/top1" in r]
    assert best_meta["eval/top1"] == max(evals) and 0 < best_meta["step"] <= 120


@pytest.mark.slow
def test_sigkilled_run_resumes_from_its_last_complete_checkpoint(tmp_path):
    overrides = SMALL_RUN | {"train.num_steps": 300, "train.checkpoint_every_steps": 20, "train.log_every_steps": 20}
    proc = _launch(tmp_path / "killed", overrides, wait=False)
    checkpoints = tmp_path / "killed" / "checkpoints"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if checkpoints.exists() and any(p.name.isdigit() and int(p.name) >= 40 for p in checkpoints.iterdir()):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed:\n" + proc.stdout.read()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # launch.py re-executed itself on tcmalloc (same process id: the SIGKILL reached the run itself).
    expected = "tcmalloc" if allocator.find_tcmalloc() else "system"
    assert f"allocator: {expected} (--malloc=auto)" in proc.stdout.read()
    complete = max(int(p.name) for p in checkpoints.iterdir() if p.name.isdigit())
    assert 40 <= complete < 300
    # The relaunch loads the compiled train step from the persistent cache; the result must not change (nor does
    # the allocator change it: the relaunch runs on the system allocator).
    assert any(p.name.startswith("jit_train_step") for p in (tmp_path / "xla_cache").iterdir())
    output = _launch(tmp_path / "killed", overrides, extra=("--malloc=system",))
    assert f"resumed from step {complete}" in output and "allocator: system (--malloc=system)" in output, output[-2000:]
    train_and_evaluate(_config(overrides), tmp_path / "straight")
    (step_a, state_a), (step_b, state_b) = _final(tmp_path / "killed"), _final(tmp_path / "straight")
    assert step_a == step_b == 300
    _assert_trees_close(state_a["params"], state_b["params"], rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_checkpoint_from_eight_devices_restores_onto_four_and_one(tmp_path):
    overrides = SMALL_RUN | {"train.num_steps": 16, "train.checkpoint_every_steps": 8}
    _launch(tmp_path / "eight", overrides | {"train.stop_after_steps": 8}, devices=8)
    finals = {}
    for devices in (4, 1):
        workdir = tmp_path / f"resumed_on_{devices}"
        shutil.copytree(tmp_path / "eight", workdir)
        output = _launch(workdir, overrides, devices=devices)
        assert "resumed from step 8" in output and f"{devices} devices" in output, output[-2000:]
        finals[devices] = _final(workdir)
    train_and_evaluate(_config(overrides), tmp_path / "straight")
    straight = _final(tmp_path / "straight")
    for step, state in finals.values():
        assert step == 16
        _assert_trees_close(state["params"], straight[1]["params"], rtol=2e-4, atol=1e-6)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _run_two_processes(args_of, timeout: int = 300) -> list[str]:
    """Runs ``args_of(process_id, coordinator_address)`` as two processes; their outputs, once both exited 0."""
    address = f"localhost:{_free_port()}"
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count=1 {os.environ.get('XLA_FLAGS', '')}",
               JAX_PLATFORMS="cpu", JAX_DEFAULT_PRNG_IMPL=jax.config.jax_default_prng_impl, PYTHONPATH=str(REPO),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    procs = [subprocess.Popen(args_of(i, address), cwd=REPO, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for i in range(2)]
    try:
        outputs = [p.communicate(timeout=timeout)[0] for p in procs]
    except subprocess.TimeoutExpired:
        for p in procs:  # hung processes must not outlive the test; their output says where they waited
            p.kill()
        outputs = [p.communicate()[0] for p in procs]
        pytest.fail(f"the processes did not finish within {timeout} s:\n" + "\n".join(o[-3000:] for o in outputs))
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-3000:] for o in outputs)
    return outputs


@pytest.mark.slow
def test_two_distributed_processes_train_like_one(tmp_path):
    """Two ``jax.distributed`` processes (one CPU device each, gloo collectives) train, checkpoint, resume and
    finish like one process with two devices and the same global batch."""
    overrides = SMALL_RUN | {"train.num_steps": 6, "train.checkpoint_every_steps": 3, "train.checkpoint_timeout_s": 60}

    def launch_two(run_overrides):
        return _run_two_processes(lambda i, address: [
            sys.executable, "launch.py", "--config", LENET, "--workdir", str(tmp_path / "two"),
            "--compilation_cache_dir", str(tmp_path / "xla_cache"),
            "--coordinator_address", address, "--num_processes", "2", "--process_id", str(i),
            *[f"--config.{k}={v}" for k, v in run_overrides.items()]])

    # The first invocation stops after step 3: its last step saves both `checkpoints` and `best` (eval) at once.
    first = launch_two(overrides | {"train.stop_after_steps": 3})
    assert "2 devices" in first[0] and "eval step 3" in first[0]
    second = launch_two(overrides)
    assert "resumed from step 3" in second[0] and "eval step 6" in second[0]
    assert "step 6/6" not in second[1]  # only process 0 prints progress
    _launch(tmp_path / "one", overrides, devices=2)
    (step_a, state_a), (step_b, state_b) = _final(tmp_path / "two"), _final(tmp_path / "one")
    assert step_a == step_b == 6
    _assert_trees_close(state_a["params"], state_b["params"], rtol=1e-4, atol=1e-6)
    metrics_two = [r for r in read_metrics(tmp_path / "two") if "eval/top1" in r]
    metrics_one = [r for r in read_metrics(tmp_path / "one") if "eval/top1" in r]
    assert metrics_two[-1]["eval/examples"] == 200
    np.testing.assert_allclose(metrics_two[-1]["eval/top1"], metrics_one[-1]["eval/top1"])


def test_two_process_checkpoints_survive_crossed_saves_and_fail_fast(tmp_path):
    """Two Checkpointers saving the same step while the processes finish in crossed order both succeed (orbax's
    barrier keys used to collide), and a save failing on one process fails on both within its timeout."""
    outputs = _run_two_processes(lambda i, address: [
        sys.executable, str(REPO / "tests" / "checkpoint_processes.py"), str(i), address, str(tmp_path / "ckpt")],
        timeout=120)
    for i, output in enumerate(outputs):
        assert "crossed saves done" in output, output[-3000:]
        assert "failing save raised after" in output, output[-3000:]
        raised = output[output.index("failing save raised after"):]
        assert f"failed on process {i} of 2" in raised and "train.checkpoint_timeout_s" in raised
        assert float(raised.split()[4]) < 20  # the timeout is 3 s; orbax's default would wait 20 minutes
    assert "injected write failure on process 1" in outputs[1]
    for item in ("checkpoints", "best/checkpoints"):  # both processes' array metadata, in the finished step
        assert sorted(p.name for p in (tmp_path / "ckpt" / item / "3" / "state" / "array_metadatas").iterdir()) == [
            "process_0", "process_1"]
    assert _final(tmp_path / "ckpt")[1]["w"].tolist() == np.arange(16.0).reshape(4, 4).tolist()


def test_init_from_imported_weights_loads_them_and_refits_the_classifier(tmp_path):
    """``train.init_from`` starts from a ``cnn_jax.weights`` directory; a classifier for another number of classes
    keeps its fresh initialisation, every other array is the imported one."""
    from cnn_jax import weights

    model = cnn_jax.create_model("lenet5", num_classes=10, in_channels=1)
    variables = jax.jit(lambda: model.init(jax.random.key(42), jnp.zeros((1, 32, 32, 1)), train=False))()
    weights.save_variables(tmp_path / "imported", variables,
                           {"model": "lenet5", "overrides": {"num_classes": 10, "in_channels": 1}, "source": "test"})
    config = _config(SMALL_RUN | {"train.num_steps": 1, "train.init_from": str(tmp_path / "imported")})
    config.model.num_classes = 5
    config.optimizer.base_lr = 0.0  # the one step leaves the parameters as they were loaded
    train_and_evaluate(config, tmp_path / "finetune")
    _, state = _final(tmp_path / "finetune")
    assert state["params"]["output"]["kernel"].shape == (84, 5)
    for layer in ("c1", "c3", "c5", "f6"):
        _assert_trees_close(state["params"][layer], variables["params"][layer], rtol=0, atol=0)
    config.train.init_from = str(tmp_path / "missing")
    with pytest.raises(Exception, match="missing"):
        train_and_evaluate(config, tmp_path / "bad")
