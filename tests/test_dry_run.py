"""``cnn_jax.train.dry_run`` and ``launch.py --dry_run``: every experiment config checked without compiling."""

from __future__ import annotations

import dataclasses
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest
from conftest import count_params

import cnn_jax
from cnn_jax.config import base_config, load_config
from cnn_jax.tools.train_memory import train_step_memory
from cnn_jax.train import dry_run as dry_run_module
from cnn_jax.train import loop, optim
from cnn_jax.train.dry_run import dry_run

REPO = pathlib.Path(__file__).resolve().parents[1]
# Every experiment config (the files defining get_config), called without an argument: its documented default.
CONFIG_FILES = sorted(str(p.relative_to(REPO)) for p in (REPO / "experiments").rglob("*.py")
                      if "def get_config(" in p.read_text())
# Training examples of each dataset the configs use (their published split sizes).
TRAIN_EXAMPLES = {"fashion_mnist": 60_000, "imagenet2012": 1_281_167, "cifar10": 50_000, "cifar100": 50_000}


def _create_model_params(config) -> int:
    """Parameters of ``cnn_jax.create_model`` for the config's model keys (independently of the trainer)."""
    overrides = {k: v for k, v in config.model.items() if k not in ("name", "dtype")}
    model = cnn_jax.create_model(config.model.name, **overrides)
    size = config.data.image_size
    images = jax.ShapeDtypeStruct((1, size, size, model.in_channels), jnp.float32)
    return count_params(jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), images)["params"])


def _check_filled_in(report, config, num_train: int, params: int) -> None:
    """Model, schedule, learning rate and memory are all there and are what the trainer would use."""
    assert report.model.params == params
    assert report.model.macs > 0 and report.model.activation_bytes > 0
    expected = loop.Schedule.resolve(config, num_train)
    assert report.schedule.resolved == expected and expected.total_steps > 0
    peak = config.optimizer.base_lr * config.train.global_batch / 256
    assert report.schedule.resolved.learning_rate == pytest.approx(peak)
    # The optimizer's own schedule reaches that rate once the warmup is over.
    lr_fn = optim.learning_rate_schedule(config.optimizer, peak, expected.total_steps, expected.steps_per_epoch)
    assert float(lr_fn(report.schedule.warmup_steps)) == pytest.approx(peak, rel=1e-5)
    memory = report.memory
    assert memory.params == 4 * params  # float32 parameters
    assert memory.gradients == memory.params and memory.activations > 0 and memory.input_images > 0
    assert memory.ema_params == (memory.params if config.train.ema_decay else 0)
    assert memory.total == sum(dataclasses.astuple(memory))


@pytest.mark.parametrize("path", CONFIG_FILES)
def test_every_experiment_config_dry_runs(path, tmp_path):
    """Fashion-MNIST configs pass; the others, with their dataset absent (an empty data_dir), fail naming the
    dataset and the directory but fill in everything else; with a synthetic dataset of their shape they pass."""
    config = load_config(path)
    params = _create_model_params(config)
    name = config.data.name
    if name == "fashion_mnist":
        report = dry_run(config)
        assert report.ok, report.format()
        assert report.dataset.num_train == 60_000 and report.dataset.num_eval == 10_000
        _check_filled_in(report, config, 60_000, params)
        return

    config.data.data_dir = str(tmp_path)
    report = dry_run(config)
    assert not report.ok
    assert any(repr(name) in p and str(tmp_path) in p for p in report.problems), report.problems
    assert report.dataset.counts_from == "published split sizes"
    _check_filled_in(report, config, TRAIN_EXAMPLES[name], params)

    size, batch = config.data.image_size, config.train.global_batch
    config.data.name = f"synthetic:{size}x{size}x3:{config.model.num_classes}:{4 * batch}:{config.train.eval_batch}"
    report = dry_run(config)
    assert report.ok, report.format()
    _check_filled_in(report, config, 4 * batch, params)


def test_nothing_is_compiled():
    """Apart from the PRNG key ``cnn_jax.analysis`` creates (an eager op, compiled once per process, here first)."""
    jax.random.key(0)
    compiled = []

    def listener(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            compiled.append(event)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        config = load_config("experiments/fashion_mnist/resnet20.py")
        config.optimizer.warmup_epochs = 1.0
        dry_run_module.clear_caches()
        assert dry_run(config).ok
        assert not compiled
        jax.jit(lambda x: x * 3 + 1)(2.0)  # the listener does see a compilation
        assert compiled
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


def test_memory_estimate_is_near_xla_figure():
    """The estimate from shapes against XLA's buffer assignment of a compiled step: the same SGD step
    (no momentum, so no optimizer state) of ResNet-20, batch 32 at 32x32."""
    config = base_config()
    config.model.name, config.model.num_classes = "resnet20", 10
    config.data.name, config.data.image_size = "synthetic:32x32x3:10", 32
    config.train.global_batch, config.optimizer.momentum = 32, 0.0
    estimate = dry_run(config, devices=1).memory
    compiled = train_step_memory(cnn_jax.create_model("resnet20", num_classes=10), batch=32, resolution=32)
    assert estimate.optimizer_state == 0
    # Measured 0.66 (48 vs 73 MiB; ResNets 0.65-0.78): the estimate counts the layers' outputs, XLA also holds the
    # ReLUs' and its scratch, so it stays below XLA's figure but not far.
    assert 0.5 < estimate.total / compiled.total_bytes < 1.0, (estimate, compiled)


def test_batch_layout_and_class_problems_name_the_key():
    config = load_config("experiments/fashion_mnist/lenet5.py")
    report = dry_run(config, devices=3)
    assert not report.ok
    assert any("train.global_batch=128" in p and "3 devices" in p for p in report.problems)
    assert any("train.eval_batch=500" in p for p in report.problems)

    config.train.global_batch, config.train.microbatches, config.train.eval_batch = 256, 4, 512
    report = dry_run(config, devices=8, processes=2)
    assert report.ok, report.format()
    assert (report.batch.per_device, report.batch.microbatch_per_device, report.batch.eval_per_device) == (32, 8, 64)
    assert "global 256 = 8 devices x 32 (2 processes); 4 microbatches of 8 per device" in report.format()
    assert report.memory.gradients == 2 * report.memory.params  # the accumulated sum and one microbatch's

    config.model.num_classes = 5
    assert any("model.num_classes=5" in p and "10 classes" in p for p in dry_run(config).problems)
    config.model.num_classes, config.model.in_channels = 10, 3
    assert any("model.in_channels=3" in p and "1-channel" in p for p in dry_run(config).problems)


def test_sweep_points_of_one_model_trace_it_once(monkeypatch):
    """Points that change the optimizer reuse the model's statistics; the train state is built on its variables."""
    traced = []
    analyze = dry_run_module.analyze

    def counted_analyze(*args, **kwargs):
        traced.append(args)
        return analyze(*args, **kwargs)

    monkeypatch.setattr(dry_run_module, "analyze", counted_analyze)
    dry_run_module.clear_caches()
    config = load_config("experiments/fashion_mnist/lenet5.py")
    reports = []
    for base_lr, warmup_epochs, optimizer in ((0.05, 0.0, "sgd"), (0.1, 1.0, "sgd"), (0.2, 0.0, "adamw")):
        config.optimizer.update({"base_lr": base_lr, "warmup_epochs": warmup_epochs, "name": optimizer})
        reports.append(dry_run(config))
    assert len(traced) == 1
    assert [r.schedule.resolved.learning_rate for r in reports] == pytest.approx([0.025, 0.05, 0.1])
    assert [r.schedule.warmup_steps for r in reports] == [0, 468, 0]
    # SGD's momentum is one copy of the parameters, AdamW's two moments two.
    assert [r.memory.optimizer_state / r.memory.params for r in reports] == pytest.approx([1, 1, 2], abs=1e-3)


def _launch(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "launch.py", "--config", "experiments/fashion_mnist/lenet5.py",
                           "--dry_run", *args], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_launch_dry_run_prints_the_report_and_writes_nothing(tmp_path):
    workdir = tmp_path / "run"
    result = _launch("--workdir", str(workdir))
    assert result.returncode == 0, result.stderr
    for line in ("dataset   fashion_mnist: found", "model     lenet5: 61,706 parameters", "schedule  9,360 steps",
                 "peak 0.05", "memory    ~", "ok: every check passed"):
        assert line in result.stdout, result.stdout
    assert not workdir.exists()


def test_launch_dry_run_fails_naming_the_missing_dataset_directory(tmp_path):
    result = _launch(f"--config.data.data_dir={tmp_path}", "--config.data.manual_dir=/nonexistent")
    assert result.returncode == 1
    assert "FAILED: 1 problem" in result.stdout
    assert "missing from /nonexistent (data.manual_dir" in result.stdout and str(tmp_path) in result.stdout


def test_launch_dry_run_names_an_unknown_config_key():
    result = _launch("--config.train.global_bach=64")
    assert result.returncode == 2  # launch.py's status for a run that cannot start
    assert "--config.train.global_bach=64: the config has no key 'global_bach'" in result.stderr
    assert 'did you mean "global_batch"' in result.stderr and "Traceback" not in result.stderr
