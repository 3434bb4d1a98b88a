"""The training loop: learning on real data, resume equivalence, schedules, losses, the input pipeline."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cnn_jax.config import base_config, load_config
from cnn_jax.data import fashion_mnist, pipeline, sources
from cnn_jax.train import losses, optim
from cnn_jax.train.checkpoint import Checkpointer
from cnn_jax.train.loop import build_model, train_and_evaluate
from cnn_jax.train.metrics import read_metrics

REPO = pathlib.Path(__file__).resolve().parents[1]


def lenet_config(**train):
    c = base_config()
    c.model.name = "lenet5"
    c.model.in_channels = 1
    c.model.num_classes = 10
    c.train.global_batch = 64
    c.train.eval_batch = 500
    c.train.log_every_steps = 10
    c.optimizer.base_lr = 0.2
    c.optimizer.weight_decay = 5e-4
    for key, value in train.items():
        c.train[key] = value
    return c


@pytest.mark.slow
def test_lenet_learns_fashion_mnist(tmp_path):
    """Real data end to end: 400 steps of batch 64 on the offline Fashion-MNIST reach >= 80% test top-1."""
    config = lenet_config(num_steps=400, eval_every_epochs=100.0)
    config.data.max_eval_examples = 2000
    result = train_and_evaluate(config, tmp_path)
    assert result["eval/examples"] == 2000
    assert result["eval/top1"] >= 0.80, result
    records = read_metrics(tmp_path)
    train_losses = [r["train/loss"] for r in records if "train/loss" in r]
    assert train_losses[-1] < 0.6 * train_losses[0]
    assert all("train/images_per_s" in r for r in records if "train/loss" in r)
    assert (tmp_path / "config.json").exists() and any((tmp_path / "tensorboard").iterdir())


def test_logged_training_metrics_are_means_over_the_log_window(tmp_path):
    """train/loss and train/top1 at a log step average every step since the previous log (a per-epoch training
    error, not one batch's), as a run logging every step shows."""

    def config(log_every):
        c = lenet_config(num_steps=6, log_every_steps=log_every, eval_every_epochs=100.0)
        c.data.max_train_examples, c.data.max_eval_examples = 1024, 100
        return c

    train_and_evaluate(config(1), tmp_path / "every")
    train_and_evaluate(config(3), tmp_path / "window")
    every = {r["step"]: r for r in read_metrics(tmp_path / "every") if "train/loss" in r}
    window = {r["step"]: r for r in read_metrics(tmp_path / "window") if "train/loss" in r}
    assert sorted(window) == [3, 6]
    for step in (3, 6):
        for key in ("train/loss", "train/top1"):
            expected = np.mean([every[s][key] for s in range(step - 2, step + 1)])
            np.testing.assert_allclose(window[step][key], expected, rtol=1e-5)


def _final_params(workdir):
    checkpointer = Checkpointer(workdir, keep=3)
    state, meta = checkpointer.read()
    checkpointer.close()
    return meta["step"], state["params"]


def test_resume_matches_uninterrupted_run(tmp_path):
    def config(stop_after=None):
        c = lenet_config(num_steps=8, checkpoint_every_steps=4, log_every_steps=1, eval_every_epochs=100.0,
                         stop_after_steps=stop_after)
        c.data.max_train_examples = 2048
        c.data.max_eval_examples = 100
        return c

    train_and_evaluate(config(), tmp_path / "straight")
    train_and_evaluate(config(stop_after=4), tmp_path / "resumed")
    train_and_evaluate(config(), tmp_path / "resumed")  # picks up at step 4
    step_a, params_a = _final_params(tmp_path / "straight")
    step_b, params_b = _final_params(tmp_path / "resumed")
    assert step_a == step_b == 8
    for a, b in zip(jax.tree_util.tree_leaves(params_a), jax.tree_util.tree_leaves(params_b), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    losses_a = [r["train/loss"] for r in read_metrics(tmp_path / "straight") if "train/loss" in r]
    losses_b = [r["train/loss"] for r in read_metrics(tmp_path / "resumed") if "train/loss" in r]
    np.testing.assert_allclose(losses_a, losses_b, rtol=1e-5)


def test_corrupt_latest_checkpoint_is_skipped(tmp_path, caplog):
    c = lenet_config(num_steps=6, checkpoint_every_steps=2, eval_every_epochs=100.0, log_every_steps=1,
                     stop_after_steps=4)
    c.data.max_train_examples = 1024
    c.data.max_eval_examples = 100
    train_and_evaluate(c, tmp_path)
    latest = tmp_path / "checkpoints" / "4" / "state"
    for path in latest.rglob("*"):
        if path.is_file() and path.stat().st_size > 0 and "metadata" not in path.name:
            path.write_bytes(b"\x00garbage")
    c.train.stop_after_steps = None
    train_and_evaluate(c, tmp_path)  # resumes from step 2, not from the damaged step 4
    assert any("skipping checkpoint" in r.getMessage() and "/4" in r.getMessage() for r in caplog.records)
    records = read_metrics(tmp_path)
    steps = [r["step"] for r in records if "train/loss" in r]
    assert steps == [1, 2, 3, 4, 5, 6], steps  # steps 3-4 ran twice; the first sitting's records were dropped


def test_eight_emulated_devices_match_one_device(tmp_path):
    """The same global batch on 1 and 8 (emulated CPU) devices gives the same parameters."""
    script = f"""
import sys, numpy as np, jax
sys.path.insert(0, {str(REPO)!r})
from tests.test_train import lenet_config
from cnn_jax.train.loop import train_and_evaluate
from tests.test_train import _final_params
c = lenet_config(num_steps=3, eval_every_epochs=100.0)
c.data.max_train_examples = 1024
c.data.max_eval_examples = 64
c.train.eval_batch = 64
train_and_evaluate(c, sys.argv[1])
step, params = _final_params(sys.argv[1])
np.savez(sys.argv[2], *[np.asarray(x) for x in jax.tree_util.tree_leaves(params)])
print("devices", jax.device_count())
"""
    results = []
    for devices in (1, 8):
        env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu")
        out = tmp_path / f"params{devices}.npz"
        proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / f"run{devices}"), str(out)], env=env,
                              capture_output=True, text=True, cwd=REPO, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert f"devices {devices}" in proc.stdout
        results.append(np.load(out))
    for key in results[0].files:
        np.testing.assert_allclose(results[0][key], results[1][key], rtol=2e-4, atol=1e-6)


def test_learning_rate_schedules_hit_reference_values():
    c = base_config().optimizer
    c.warmup_epochs = 1.0
    cosine = optim.learning_rate_schedule(c, 0.4, total_steps=110, steps_per_epoch=10)
    assert float(cosine(0)) == 0.0 and float(cosine(5)) == pytest.approx(0.2)
    assert float(cosine(10)) == pytest.approx(0.4) and float(cosine(60)) == pytest.approx(0.2)
    assert float(cosine(110)) == pytest.approx(0.0, abs=1e-7)
    c.warmup_epochs = 0.0
    c.schedule = "step"
    c.decay_epochs = (30, 60)
    step = optim.learning_rate_schedule(c, 0.1, total_steps=900, steps_per_epoch=10)
    assert [float(step(s)) for s in (0, 299, 300, 599, 600)] == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001])
    c.schedule = "exponential"
    c.decay_factor = 0.97
    c.decay_every_epochs = 2.4
    exp = optim.learning_rate_schedule(c, 0.016, total_steps=1000, steps_per_epoch=10)
    assert float(exp(23)) == pytest.approx(0.016) and float(exp(24)) == pytest.approx(0.016 * 0.97)


def test_weight_decay_mask_skips_batchnorm_and_biases():
    params = {"conv": {"kernel": jnp.ones((3, 3, 2, 4))}, "bn": {"scale": jnp.ones(4), "bias": jnp.ones(4)},
              "fc": {"kernel": jnp.ones((4, 2)), "bias": jnp.ones(2)}}
    c = base_config().optimizer
    c.weight_decay, c.momentum, c.schedule = 0.1, 0.0, "constant"
    tx = optim.make_optimizer(c, optax.constant_schedule(1.0))
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    updates, _ = tx.update(zeros, tx.init(params), params)
    assert float(updates["conv"]["kernel"].mean()) == pytest.approx(-0.1)  # -lr * wd * w
    assert float(updates["fc"]["kernel"].mean()) == pytest.approx(-0.1)
    for leaf in (updates["bn"]["scale"], updates["bn"]["bias"], updates["fc"]["bias"]):
        assert float(jnp.abs(leaf).max()) == 0.0


def test_aux_losses_and_label_smoothing_match_hand_computation():
    logits = jnp.array([[2.0, 0.0, -1.0]])
    aux = {"aux1": jnp.array([[0.0, 1.0, 0.0]]), "aux2": jnp.array([[0.5, 0.5, 0.5]])}
    labels = jnp.array([0])

    def xent(z, eps):
        p = np.exp(z - np.log(np.exp(z).sum()))
        target = np.full(3, eps / 3)
        target[0] += 1 - eps
        return -(target * np.log(p)).sum()

    expected = xent(np.array([2.0, 0.0, -1.0]), 0.1) + 0.3 * xent(np.array([0.0, 1.0, 0.0]), 0.1) + 0.5 * xent(
        np.array([0.5, 0.5, 0.5]), 0.1)
    got = losses.total_loss(logits, aux, labels, label_smoothing=0.1, aux_weight=0.3, aux_weights={"aux2": 0.5})
    assert float(got) == pytest.approx(expected, rel=1e-6)


def test_process_shards_are_disjoint_and_cover_the_batch_deterministically():
    shards = [pipeline.train_batch_indices(1000, 64, step=20, seed=3, process_index=p, process_count=4)
              for p in range(4)]
    together = np.concatenate(shards)
    assert len(set(together.tolist())) == 64
    np.testing.assert_array_equal(together, pipeline.train_batch_indices(1000, 64, step=20, seed=3))
    # One epoch (15 steps of 64 from 1000) visits 960 distinct examples; a resumed stream continues identically.
    epoch = np.concatenate([pipeline.train_batch_indices(1000, 64, s, seed=3) for s in range(15)])
    assert len(set(epoch.tolist())) == 960
    next_epoch, first = (pipeline.train_batch_indices(1000, 64, s, seed=3) for s in (15, 0))
    assert not np.array_equal(next_epoch, first)


def test_exact_evaluation_scores_every_example_once():
    data = sources.load_dataset("synthetic:8x8x1:10:412:103")
    seen = []
    for _, _labels, mask in pipeline.eval_batches(data.eval, lambda image: image.astype(np.float32), global_batch=20,
                                                  num_threads=2):
        seen.append(int(mask.sum()))
    assert sum(seen) == 103 and seen[-1] == 3


def test_missing_dataset_directory_names_directory_and_command(tmp_path):
    with pytest.raises(FileNotFoundError, match=rf"{tmp_path}.*apt-get install dataset-fashion-mnist"):
        fashion_mnist.load("train", tmp_path)


def test_launch_records_each_invocation_with_its_machine(tmp_path):
    """launch.py appends time, host, CPU, devices and its command line to launches.jsonl, once per invocation (a
    resumed run has one line per sitting); the results export keeps the file."""
    from cnn_jax.tools import results
    from cnn_jax.train.metrics import read_launches

    command = [sys.executable, "launch.py", "--config", "experiments/fashion_mnist/lenet5.py", "--workdir",
               str(tmp_path / "run"), "--config.train.num_steps=2", "--config.data.max_train_examples=256",
               "--config.data.max_eval_examples=50"]
    for _ in range(2):
        subprocess.run(command, cwd=REPO, check=True, capture_output=True, timeout=300)
    launches = read_launches(tmp_path / "run")
    assert len(launches) == 2
    assert launches[0]["command"].startswith("python launch.py --config experiments/fashion_mnist/lenet5.py")
    assert "--config.train.num_steps=2" in launches[0]["command"]
    assert launches[0]["cpu_count"] == os.cpu_count() and launches[0]["devices"].endswith("cpu")
    copied = results.export_evidence(tmp_path / "run", tmp_path / "evidence")
    assert {p.name for p in copied} == {"config.json", "metrics.jsonl", "launches.jsonl"}


# The recipes of docs/results/fashion_mnist and the compound-scaling study's baseline (the sweep proxies
# efficientnet_b0.py / efficientnet_phi.py are dry-run in tests/test_dry_run.py and trained by the sweep tests).
FASHION_MNIST_RECIPES = [f"experiments/fashion_mnist/{name}.py" for name in (
    "lenet5", "resnet20", "resnet56", "mobilenet_v2", "efficientnet_b0_cifar", "shufflenet_v2", "mbconv_scaling")]


# In the extended suite (CI budget): efficientnet_b0_cifar's recipe, whose model class mbconv_scaling.py trains
# (width and depth 0.5) through the same pipeline in CI, and resnet56's, resnet20's recipe with 9 blocks per stage.
CI_RECIPE_STAND_INS = {"efficientnet_b0_cifar": "mbconv_scaling", "resnet56": "resnet20"}


@pytest.mark.slow
@pytest.mark.parametrize("recipe", [
    pytest.param(r, marks=pytest.mark.extended) if pathlib.Path(r).stem in CI_RECIPE_STAND_INS else r
    for r in FASHION_MNIST_RECIPES])
def test_every_fashion_mnist_recipe_trains_a_few_steps(recipe, tmp_path):
    """The recipes behind docs/results, each for 2 steps of its own batch on the real data: model, transforms,
    optimizer and schedule run together, and the evaluation sees the configured input size."""
    config = load_config(recipe)
    config.train.num_steps = 2
    config.train.eval_batch = 100
    config.data.max_train_examples, config.data.max_eval_examples = 512, 100
    metrics = train_and_evaluate(config, tmp_path)
    assert metrics["eval/examples"] == 100 and np.isfinite(metrics["eval/loss"])
    assert [r["step"] for r in read_metrics(tmp_path) if "train/loss" in r] == [2]


def test_each_recipe_left_to_the_extended_suite_has_a_stand_in_in_ci():
    ci_recipes = {pathlib.Path(r).stem for r in FASHION_MNIST_RECIPES} - set(CI_RECIPE_STAND_INS)
    assert set(CI_RECIPE_STAND_INS.values()) <= ci_recipes
    for extended, stand_in in CI_RECIPE_STAND_INS.items():
        config, ci_config = (load_config(f"experiments/fashion_mnist/{n}.py") for n in (extended, stand_in))
        assert type(build_model(config)) is type(build_model(ci_config)), (extended, stand_in)


def test_unknown_config_key_fails_before_compiling():
    result = subprocess.run(
        [sys.executable, "launch.py", "--config", "experiments/fashion_mnist/lenet5.py", "--workdir", "/tmp/x",
         "--config.train.no_such_key=3"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "no_such_key" in result.stderr


def _documented_configs() -> list[tuple[str, str | None]]:
    """(config file, argument) for every ``--config FILE[:ARG]`` in the configs' own docstrings."""

    found = []
    for path in sorted((REPO / "experiments").rglob("*.py")):
        if path.name in ("__init__.py", "common.py") or "sweeps" in path.parts:
            continue
        text = path.read_text()
        for file, arg in re.findall(r"--config (experiments/\S+?\.py)(?::(\S+))?", text):
            assert file == str(path.relative_to(REPO)), f"{path}: its docstring runs {file}"
            found.append((file, arg or None))
        assert found and found[-1][0] == str(path.relative_to(REPO)), f"{path}: docstring lacks the run command"
    return found


@pytest.mark.parametrize(("path", "arg"), _documented_configs())
def test_every_documented_config_command_builds_its_model(path, arg):
    """Each run command in a config's docstring resolves: the model builds, the optimiser, schedule and data
    transforms are valid names."""
    import importlib

    from cnn_jax.data import transforms

    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    config = module.get_config() if arg is None else module.get_config(arg)
    model = build_model(config)
    assert model.num_classes == config.model.num_classes
    lr = optim.learning_rate_schedule(config.optimizer, 0.1, 1000, 100)
    optim.make_optimizer(config.optimizer, lr)
    stats = {"image_size": config.data.image_size, "mean": (0.5,) * 3, "std": (0.25,) * 3}
    transforms.make_train_transform(config.data.train_transform, **stats)
    transforms.make_eval_transform(config.data.eval_transform, crop_fraction=0.875, **stats)
    transforms.make_batch_transform(config.data.batch_transform, num_classes=config.model.num_classes)


def test_initialise_while_compiling_overlaps_the_two_and_raises_their_errors():
    import threading

    from cnn_jax.runtime import startup

    threads = {}

    def init():
        threads["init"] = threading.current_thread().name
        return "state"

    def compile_step():
        threads["compile"] = threading.current_thread().name
        return "compiled"

    assert startup.initialise_while_compiling(init, compile_step) == ("state", "compiled")
    assert threads["init"] == threading.current_thread().name and threads["compile"].startswith("compile_train_step")

    def broken():
        raise ValueError("no first batch")

    with pytest.raises(ValueError, match="no first batch"):
        startup.initialise_while_compiling(init, broken)


def test_setup_pauses_the_garbage_collector_and_restores_its_state():
    """Tracing and compiling run with the cyclic collector off (it walks every live object on each full
    collection); afterwards it is back as it was, also after an error and when it was off to begin with."""
    import gc

    from cnn_jax.runtime import startup

    seen = {}

    def init():
        seen["init"] = gc.isenabled()
        return "state"

    def compile_step():
        seen["compile"] = gc.isenabled()
        return "compiled"

    def broken():
        raise ValueError("no first batch")

    assert gc.isenabled()
    startup.initialise_while_compiling(init, compile_step)
    assert seen == {"init": False, "compile": False} and gc.isenabled()
    with pytest.raises(ValueError, match="no first batch"):
        startup.initialise_while_compiling(init, broken)
    assert gc.isenabled()
    gc.disable()
    try:
        startup.initialise_while_compiling(init, compile_step)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_data_wait_fraction_reports_a_slow_input_pipeline(tmp_path, monkeypatch):
    """Batches that arrive 0.5 s apart while a LeNet step takes milliseconds: the loop's
    ``train/data_wait_fraction`` says most of the time went to waiting on every step, and a run whose batches are
    ready says little did on a typical step."""
    from cnn_jax.train import loop

    real_train_batches = loop.pipeline.train_batches
    delay = {"s": 0.5}

    def slow_train_batches(*args, **kwargs):
        for batch in real_train_batches(*args, **kwargs):
            time.sleep(delay["s"])
            yield batch

    monkeypatch.setattr(loop.pipeline, "train_batches", slow_train_batches)
    fractions = {}
    for delay["s"] in (0.5, 0.0):
        config = lenet_config(num_steps=8, log_every_steps=1, eval_every_epochs=100.0)
        config.data.name = "synthetic:28x28x1:10:1024:64"
        workdir = tmp_path / f"delay{delay['s']}"
        train_and_evaluate(config, workdir)
        # Step 1's batch was fetched while the step compiled; the prefetch queue (2 batches) fills meanwhile.
        records = [r for r in read_metrics(workdir) if "train/data_wait_fraction" in r and r["step"] > 4]
        fractions[delay["s"]] = sorted(r["train/data_wait_fraction"] for r in records)
    # The loop reports the meter's fraction on every logged step; waiting 0.5 s per batch weighs more than any window
    # of ready batches (an ordering, not a wall-clock threshold: the meter itself is tested with a fake clock).
    assert len(fractions[0.5]) == len(fractions[0.0]) == 4
    assert min(fractions[0.5]) > max(fractions[0.0]), fractions


def test_data_wait_meter_counts_only_waits_that_idle_the_devices():
    """A fake clock: a 0.5 s fetch counts when the previous step had finished, not while one still ran."""
    from cnn_jax.train.metrics import DataWaitMeter

    now = [0.0]

    def batches():
        while True:
            now[0] += 0.5  # each fetch takes 0.5 s
            yield "batch"

    meter, source = DataWaitMeter(clock=lambda: now[0]), batches()
    assert meter.next_batch(source, lambda: True) == "batch"
    meter.next_batch(source, lambda: False)  # the previous step was still running: the devices were busy
    meter.next_batch(source, lambda: True)
    assert meter.fraction(elapsed=2.0) == 0.5  # 1.0 s idle of 2.0
    assert meter.fraction(elapsed=1.0) == 0.0  # a new window
