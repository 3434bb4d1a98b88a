"""A run never silently loses, discards or poisons its progress (README "Checkpoints and failures").

Each test injects one fault into a short LeNet-5 / Fashion-MNIST run and checks what the trainer does: a checkpoint
of another config is refused (not moved aside), a diverged state is never saved, a silently corrupted array fails
its fingerprint, a damaged best checkpoint is moved aside, a second launch on a workdir fails at once, config
values are refused in one line, a SIGTERM on one process of two saves the same step on both, a resumed run's
metrics read as one run, and a failed asynchronous save stops the run at the next log step.
"""

from __future__ import annotations

import errno
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from orbax.checkpoint._src.handlers import json_checkpoint_handler

import cnn_jax
from cnn_jax.config import ConfigError, validate
from cnn_jax.train.checkpoint import Checkpointer, CheckpointMismatchError, CheckpointSaveError
from cnn_jax.train.loop import TrainingDiverged, train_and_evaluate
from cnn_jax.train.metrics import read_metrics
from cnn_jax.train.workdir import WorkdirLockedError, workdir_lock
from tests.test_train import lenet_config
from tests.test_train_system import REPO, SMALL_RUN, _assert_trees_close, _final, _free_port, _launch

EXIT_PREEMPTED = 75


def small_run(**train):
    c = lenet_config(**({"eval_every_epochs": 100.0, "log_every_steps": 1} | train))
    c.data.max_train_examples, c.data.max_eval_examples = 1024, 100
    return c


def _steps(workdir) -> list[int]:
    return sorted(int(p.name) for p in (pathlib.Path(workdir) / "checkpoints").iterdir() if p.name.isdigit())


def _cli(workdir, *overrides, config="experiments/fashion_mnist/lenet5.py", timeout=120):
    args = [sys.executable, "launch.py", "--malloc=system", "--config", config, "--workdir", str(workdir),
            *overrides]
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, JAX_PLATFORMS="cpu"))


# 1. A config mismatch is refused, and the checkpoints stay.
def test_checkpoints_of_another_config_are_refused_and_kept(tmp_path):
    train_and_evaluate(small_run(num_steps=6, checkpoint_every_steps=2), tmp_path)
    assert _steps(tmp_path) == [2, 4, 6]
    other = small_run(num_steps=6, checkpoint_every_steps=2)
    other.model.num_classes = 20
    with pytest.raises(CheckpointMismatchError) as error:
        train_and_evaluate(other, tmp_path)
    message = str(error.value)
    assert re.search(r"params/\S+ is \((84, )?10,?\) float32 in the checkpoint, \((84, )?20,?\) float32 in the "
                     r"model", message), message
    assert "model.num_classes: 10 -> 20" in message and "another --workdir" in message
    another_model = small_run(num_steps=6, checkpoint_every_steps=2)
    another_model.model.name = "resnet20"
    with pytest.raises(CheckpointMismatchError, match=r"is in the (model but not in the checkpoint|checkpoint but not "
                                                      r"in the model).*model.name: \"lenet5\" -> \"resnet20\""):
        train_and_evaluate(another_model, tmp_path)
    assert _steps(tmp_path) == [2, 4, 6] and not list((tmp_path / "checkpoints").glob("damaged_*"))
    assert json.loads((tmp_path / "config.json").read_text())["model"]["num_classes"] == 10  # not overwritten
    train_and_evaluate(small_run(num_steps=8, checkpoint_every_steps=2), tmp_path)  # the original config resumes
    assert [r["step"] for r in read_metrics(tmp_path) if "train/loss" in r] == list(range(1, 9))


# 2. A diverged state is detected on its step and never saved.
def test_a_diverged_state_is_never_checkpointed(tmp_path):
    def config(log_every):
        c = small_run(num_steps=60, checkpoint_every_steps=10, log_every_steps=log_every)
        c.optimizer.base_lr = 1e6
        return c

    with pytest.raises(TrainingDiverged, match=r"at step (\d+)") as every:
        train_and_evaluate(config(1), tmp_path / "every")
    first_bad = int(re.search(r"at step (\d+)", str(every.value)).group(1))
    with pytest.raises(TrainingDiverged, match=rf"at step {first_bad} \(found at step (\d+)\)") as sparse:
        train_and_evaluate(config(50), tmp_path / "sparse")
    assert first_bad < 50
    for workdir in ("every", "sparse"):
        saved = _steps(tmp_path / workdir) if (tmp_path / workdir / "checkpoints").exists() else []
        assert all(step < first_bad for step in saved), (workdir, saved, first_bad)
        for step in saved:
            state, _ = Checkpointer(tmp_path / workdir, keep=3).read(step)
            assert all(np.isfinite(x).all() for x in jax.tree_util.tree_leaves(state)), step
    found = int(re.search(r"found at step (\d+)", str(sparse.value)).group(1))
    assert found == (first_bad + 9) // 10 * 10  # the first checkpoint step after it, not the next log (50)


# 3. Silent corruption fails the fingerprint.
def test_a_corrupted_array_fails_its_fingerprint_and_the_previous_checkpoint_is_used(tmp_path, caplog):
    train_and_evaluate(small_run(num_steps=4, checkpoint_every_steps=2), tmp_path)
    # The largest array file of the newest checkpoint: 64 bytes flipped in its middle, its size unchanged.
    data = max((p for p in (tmp_path / "checkpoints" / "4" / "state").rglob("*") if p.is_file()),
               key=lambda p: p.stat().st_size)
    raw = bytearray(data.read_bytes())
    middle = len(raw) // 2
    raw[middle:middle + 64] = bytes(b ^ 0xFF for b in raw[middle:middle + 64])
    data.write_bytes(bytes(raw))
    train_and_evaluate(small_run(num_steps=6, checkpoint_every_steps=2), tmp_path)
    warnings = [r.getMessage() for r in caplog.records if "skipping checkpoint" in r.getMessage()]
    assert len(warnings) == 1 and "/checkpoints/4" in warnings[0], warnings
    assert re.search(r"array \S+ does not match its fingerprint", warnings[0]), warnings[0]
    assert list((tmp_path / "checkpoints").glob("damaged_4_*"))
    steps = [r["step"] for r in read_metrics(tmp_path) if "train/loss" in r]
    assert steps == list(range(1, 7)), steps  # resumed from 2; steps 3-4 of the first sitting dropped
    state, _ = Checkpointer(tmp_path, keep=3).read(6)
    assert all(np.isfinite(x).all() for x in jax.tree_util.tree_leaves(state))


# 4. A damaged best checkpoint is moved aside.
def test_a_damaged_best_checkpoint_is_moved_aside_and_training_resumes(tmp_path, caplog):
    config = small_run(num_steps=4, checkpoint_every_steps=2, eval_every_epochs=2 * 64 / 1024)
    train_and_evaluate(config, tmp_path)
    metadata = [p for p in (tmp_path / "best").rglob("metadata") if "meta" in p.parts]
    assert metadata
    for path in metadata:
        path.write_text("{garbage")
    config.train.num_steps = 6
    result = train_and_evaluate(config, tmp_path)
    assert result["eval/examples"] == 100
    assert any("best checkpoint" in r.getMessage() and "moved to" in r.getMessage() for r in caplog.records)
    assert list(tmp_path.glob("best_damaged_*"))
    assert Checkpointer(tmp_path / "best", keep=1).read_meta()["step"] == 6  # a new best after the resume


# 5 and 7. Config values are checked before anything runs; the Python API checks its arguments.
@pytest.mark.parametrize(("key", "value", "allowed"), [
    ("train.global_batch", 0, "an integer >= 1"),
    ("train.global_batch", -8, "an integer >= 1"),
    ("train.eval_batch", 0, "an integer >= 1"),
    ("train.checkpoint_every_steps", 0, "an integer >= 1"),
    ("train.log_every_steps", 0, "an integer >= 1"),
    ("train.keep_checkpoints", 0, "an integer >= 1"),
    ("train.num_steps", -5, "None (use train.epochs) or an integer >= 1"),
    ("train.epochs", 0.0, "a number > 0"),
    ("optimizer.base_lr", float("nan"), "a finite number >= 0"),
    ("optimizer.name", "adam", "one of sgd, rmsprop, adamw, lars"),
    ("model.dtype", "bf16", "one of float32, bfloat16"),
])
def test_config_values_are_refused_naming_key_value_and_what_is_allowed(key, value, allowed):
    config = lenet_config()
    section, name = key.split(".")
    config[section][name] = value
    with pytest.raises(ConfigError) as error:
        validate(config)
    assert f"{key}={value!r}: expected {allowed}" in str(error.value)


def test_unknown_or_invalid_model_arguments_are_refused():
    config = lenet_config()
    with config.unlocked():
        config.model.num_clases = 2
    with pytest.raises(ConfigError, match=r"unknown argument 'num_clases'; did you mean num_classes\?"):
        validate(config)
    for kwargs, argument in [({"dtype": "bf16"}, "dtype"), ({"num_classes": 0}, "num_classes"),
                             ({"num_classes": -3}, "num_classes"), ({"drop_rate": -1}, "drop_rate"),
                             ({"param_dtype": 3}, "param_dtype"), ({"in_channels": 1.5}, "in_channels")]:
        with pytest.raises(ValueError, match=rf"{argument}={kwargs[argument]!r}; expected"):
            cnn_jax.create_model("resnet18", **kwargs)
    model = cnn_jax.create_model("lenet5", num_classes=10, in_channels=1)
    with pytest.raises(ValueError, match=r"empty batch"):
        model.init(jax.random.key(0), jnp.zeros((0, 32, 32, 1)), train=False)


def test_launch_refuses_bad_values_in_one_line_and_takes_model_arguments(tmp_path):
    """launch.py: exit 2 with one line naming the key (no traceback), before the dataset is read; an extra
    ``--config.model.KEY`` is a model argument (drop_path_rate reaches the model: the dry run builds it)."""
    for overrides, expected in [(["--config.train.global_batch=-8"], "train.global_batch=-8: expected an integer"),
                                (["--config.train.keep_checkpoints=0"], "train.keep_checkpoints=0"),
                                (["--config.model.in_chanels=3"], "unknown argument 'in_chanels'; did you mean "
                                                                  "in_channels?")]:
        start = time.time()
        result = _cli(tmp_path / "run", *overrides)
        assert result.returncode == 2, result.stderr[-2000:]
        lines = result.stderr.strip().splitlines()
        assert lines[-1].startswith("FATAL config error:") and expected in lines[-1], lines[-3:]
        assert "Traceback" not in result.stderr and not (tmp_path / "run" / "metrics.jsonl").exists()
        assert time.time() - start < 15  # 2-2.5 s alone on the 2-core host; nothing is loaded or compiled
    result = _cli(tmp_path / "dry", "--dry_run", "--config.model.drop_path_rate=0.1",
                  config="experiments/fashion_mnist/resnet20.py")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    result = _cli(tmp_path / "run", "--config.model.drop_path_rate=0.1")  # LeNet has no residual blocks to drop
    assert result.returncode == 2 and "cannot honour drop_path_rate=0.1" in result.stderr.splitlines()[-1]


# 6. One workdir, one run.
def test_a_held_workdir_is_refused_at_once_and_a_killed_holder_leaves_no_lock(tmp_path):
    with workdir_lock(tmp_path):
        with pytest.raises(WorkdirLockedError, match=rf"in use by another run \(host \S+, pid {os.getpid()},"):
            train_and_evaluate(small_run(num_steps=2), tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from cnn_jax.train.workdir import "
                               "workdir_lock\nwith workdir_lock(sys.argv[1]):\n print('held', flush=True); "
                               "time.sleep(600)", str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(WorkdirLockedError, match=rf"pid {holder.pid},"):
        with workdir_lock(tmp_path):
            pass
    holder.kill()
    holder.wait()
    with workdir_lock(tmp_path):  # the kernel released the dead holder's lock
        pass


# 8. Preemption: a SIGTERM saves the same step on every process, which exit with the preempted status.
def _two_process_launch(workdir, overrides, address):
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count=1 {os.environ.get('XLA_FLAGS', '')}",
               JAX_PLATFORMS="cpu", JAX_DEFAULT_PRNG_IMPL=jax.config.jax_default_prng_impl)
    return [subprocess.Popen(
        [sys.executable, "launch.py", "--malloc=system", "--config", "experiments/fashion_mnist/lenet5.py",
         "--workdir", str(workdir), "--compilation_cache_dir", str(workdir.parent / "xla_cache"),
         "--coordinator_address", address, "--num_processes", "2", "--process_id", str(i),
         *[f"--config.{k}={v}" for k, v in overrides.items()]],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]


@pytest.mark.slow
# both_apart (process 1 signalled, process 0 half a second later) has process 0 learn of the signal through the sync
# point before its own arrives, as process_1 (process 1 alone) does; process_1 runs in the extended suite (CI budget).
@pytest.mark.parametrize("signalled", [pytest.param("process_1", marks=pytest.mark.extended), "both_apart"])
def test_sigterm_on_a_pod_saves_one_step_everywhere_and_resumes_exactly(signalled, tmp_path):
    overrides = SMALL_RUN | {"train.num_steps": 200, "train.checkpoint_every_steps": 1000,
                             "train.log_every_steps": 10, "train.checkpoint_timeout_s": 60}
    workdir = tmp_path / "two"
    procs = _two_process_launch(workdir, overrides, f"localhost:{_free_port()}")
    lines: list[str] = []
    while not any(re.match(r"step (\d+)/200", line) and int(line.split()[1].split("/")[0]) >= 50 for line in lines):
        line = procs[0].stdout.readline()
        assert line, "process 0 ended before step 50:\n" + "".join(lines[-30:])
        lines.append(line)
    signalled_at = time.time()
    procs[1].send_signal(signal.SIGTERM)
    if signalled == "both_apart":
        time.sleep(0.5)
        procs[0].send_signal(signal.SIGTERM)
    outputs = ["".join(lines) + procs[0].communicate(timeout=120)[0], procs[1].communicate(timeout=120)[0]]
    assert time.time() - signalled_at < 60, outputs  # not the coordination service's heartbeat timeout
    assert [p.returncode for p in procs] == [EXIT_PREEMPTED] * 2, "\n".join(o[-3000:] for o in outputs)
    saved = [int(re.search(r"every process saved step (\d+)", o).group(1)) for o in outputs]
    assert saved[0] == saved[1] and 50 <= saved[0] < 200 and _steps(workdir) == [saved[0]]
    procs = _two_process_launch(workdir, overrides, f"localhost:{_free_port()}")
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-3000:] for o in outputs)
    assert f"resumed from step {saved[0]}" in outputs[0]
    _launch(tmp_path / "one", overrides, devices=2)
    (step_a, state_a), (step_b, state_b) = _final(workdir), _final(tmp_path / "one")
    assert step_a == step_b == 200
    _assert_trees_close(state_a["params"], state_b["params"], rtol=1e-4, atol=1e-6)
    steps = [r["step"] for r in read_metrics(workdir) if "train/loss" in r]
    assert steps == sorted(set(steps)) and steps[-1] == 200


def test_sigterm_on_one_process_exits_with_the_preempted_status_and_a_second_launch_is_refused(tmp_path):
    """Single process: a second launch on a running run's workdir fails at once naming the holder; SIGTERM saves
    the current step and exits 75."""
    first = _launch(tmp_path / "run", SMALL_RUN | {"train.num_steps": 2000, "train.log_every_steps": 5},
                    wait=False)
    while not (line := first.stdout.readline()).startswith("step "):
        assert line, "the run ended before its first step"
    second = _cli(tmp_path / "run", "--config.train.num_steps=2000")
    assert second.returncode == 2, second.stderr[-2000:]
    assert re.search(rf"in use by another run \(host \S+, pid {first.pid},", second.stderr.splitlines()[-1])
    first.send_signal(signal.SIGTERM)
    output = first.communicate(timeout=120)[0]
    assert first.returncode == EXIT_PREEMPTED, output[-2000:]
    saved = int(re.search(r"every process saved step (\d+)", output).group(1))
    assert _steps(tmp_path / "run") == [saved]


# 9. Smaller ones: a resumed run's metrics read as one run; a failed save stops the run at the next log step.
def test_redone_steps_leave_one_record_each_in_metrics(tmp_path):
    train_and_evaluate(small_run(num_steps=6, checkpoint_every_steps=4), tmp_path / "redone")
    shutil.rmtree(tmp_path / "redone" / "checkpoints" / "6")  # the last save lost: the relaunch redoes 5 and 6
    train_and_evaluate(small_run(num_steps=6, checkpoint_every_steps=4), tmp_path / "redone")
    train_and_evaluate(small_run(num_steps=6, checkpoint_every_steps=4), tmp_path / "straight")
    redone = [r for r in read_metrics(tmp_path / "redone") if "train/loss" in r]
    straight = [r for r in read_metrics(tmp_path / "straight") if "train/loss" in r]
    assert [r["step"] for r in redone] == [r["step"] for r in straight] == list(range(1, 7))
    np.testing.assert_allclose([r["train/loss"] for r in redone], [r["train/loss"] for r in straight], rtol=1e-5)


def test_a_failed_asynchronous_save_stops_the_run_at_the_next_log_step(tmp_path, monkeypatch):
    write = json_checkpoint_handler.JsonCheckpointHandler._save_fn

    async def disk_full_from_step_4(self, item, directory):
        if item.get("step", 0) >= 4:
            raise OSError(errno.ENOSPC, "No space left on device", str(directory))
        return await write(self, item, directory)

    monkeypatch.setattr(json_checkpoint_handler.JsonCheckpointHandler, "_save_fn", disk_full_from_step_4)
    with pytest.raises(CheckpointSaveError, match=rf"{tmp_path}/checkpoints.*No space left on device"):
        train_and_evaluate(small_run(num_steps=200, checkpoint_every_steps=4), tmp_path)
    logged = [r["step"] for r in read_metrics(tmp_path) if "train/loss" in r]
    assert 4 <= logged[-1] < 8, logged  # reported before the next save (step 8), not at it or at the end
    assert _steps(tmp_path) == [] or max(_steps(tmp_path)) < 4


def test_launch_ends_a_failed_save_with_its_cause_as_the_last_line(tmp_path):
    """The same fault through launch.py: exit 1, and the last line of the output names the folder and the OS
    error (orbax's own error logs and tracebacks come before it)."""
    script = f"""
import errno, runpy, sys
from orbax.checkpoint._src.handlers import json_checkpoint_handler as handler
write = handler.JsonCheckpointHandler._save_fn
async def disk_full_from_step_4(self, item, directory):
    if item.get("step", 0) >= 4:
        raise OSError(errno.ENOSPC, "No space left on device", str(directory))
    return await write(self, item, directory)
handler.JsonCheckpointHandler._save_fn = disk_full_from_step_4
sys.argv = ["launch.py", "--malloc=system", "--config", "experiments/fashion_mnist/lenet5.py", "--workdir",
            {str(tmp_path / "run")!r}, "--config.train.num_steps=200", "--config.train.checkpoint_every_steps=4",
            "--config.train.log_every_steps=1", "--config.data.max_train_examples=1024",
            "--config.data.max_eval_examples=100"]
runpy.run_path("launch.py", run_name="__main__")
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO)))
    assert result.returncode == 1, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"FATAL saving a checkpoint in {tmp_path / 'run' / 'checkpoints'} failed"), last
    assert "No space left on device" in last
    assert max(r["step"] for r in read_metrics(tmp_path / "run") if "train/loss" in r) < 8
