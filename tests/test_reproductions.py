"""The reproductions report (cnn_jax.tools.reproductions): per-epoch curves, wall time across sittings, the
Fashion-MNIST table against its targets, the degradation verdicts and the README table, all from run files."""

from __future__ import annotations

import json
import math
import pathlib

import numpy as np
import pytest

from cnn_jax import sweeps
from cnn_jax.tools import reproductions, results
from experiments.fashion_mnist import lenet5, resnet20

T0 = 1_800_000_000.0


def _write_run(directory: pathlib.Path, config, *, top1: list[float], train_top1: list[float],
               sittings: list[tuple[float, float]]) -> None:
    """A finished run of ``config`` (2 epochs of 10 steps: ``max_train_examples`` 1280 at batch 128) logging the
    training window every 5 steps and evaluating each epoch; ``sittings`` are (launch time, seconds) pairs that
    split the steps."""
    config.train.epochs = 2.0
    config.data.max_train_examples = 1280
    directory.mkdir(parents=True)
    (directory / "config.json").write_text(config.to_json())
    records, launches = [], []
    steps = [5, 10, 15, 20]
    per_sitting = len(steps) // len(sittings)
    for index, (start, seconds) in enumerate(sittings):
        launches.append({"time": reproductions.datetime.datetime.fromtimestamp(start, reproductions.datetime.UTC)
                         .strftime("%Y-%m-%dT%H:%M:%SZ"), "host": "h", "cpu": "Test CPU", "cpu_count": 2,
                         "devices": "1 x cpu", "command": f"python launch.py --config X --workdir {directory}"})
        mine = steps[index * per_sitting:(index + 1) * per_sitting]
        for k, step in enumerate(mine):
            t = start + seconds * (k + 1) / len(mine)
            records.append({"step": step, "time": t, "train/top1": train_top1[step // 5 - 1],
                            "train/loss": 1.0, "train/step_time_s": 0.1})
            if step % 10 == 0:
                records.append({"step": step, "time": t, "eval/top1": top1[step // 10 - 1], "eval/top5": 1.0,
                                "eval/loss": 0.3})
    (directory / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (directory / "launches.jsonl").write_text("".join(json.dumps(r) + "\n" for r in launches))


def _seeded(module, seed: int, *args):
    config = module.get_config(*args)
    config.seed = seed
    return config


def test_curves_weight_windows_by_length_and_time_excludes_the_gap_between_sittings(tmp_path):
    config = _seeded(lenet5, 0)
    _write_run(tmp_path / "run", config, top1=[0.80, 0.90], train_top1=[0.5, 0.7, 0.8, 0.9],
               sittings=[(T0, 60.0), (T0 + 3600.0, 90.0)])
    record = results.load_results([tmp_path])[0]
    curves = reproductions.epoch_curves(record)
    np.testing.assert_allclose(curves.eval_epochs, [1.0, 2.0])
    np.testing.assert_allclose(curves.test_error, [0.2, 0.1])
    np.testing.assert_allclose(curves.train_epochs, [1.0, 2.0])
    np.testing.assert_allclose(curves.train_error, [0.4, 0.15])  # (0.5 + 0.3) / 2, (0.2 + 0.1) / 2
    assert reproductions.wall_time_s(record) == pytest.approx(150.0, abs=1.0)  # 60 s + 90 s, not the hour between


def test_fashion_mnist_report_tables_targets_seeds_and_updates_the_readme(tmp_path):
    study = tmp_path / "fashion_mnist"
    for seed, final in ((0, 0.92), (1, 0.93)):
        _write_run(study / f"lenet5_seed{seed}", _seeded(lenet5, seed), top1=[0.9, final],
                   train_top1=[0.8] * 4, sittings=[(T0, 120.0)])
    _write_run(study / "resnet20_seed0", _seeded(resnet20, 0), top1=[0.9, 0.93], train_top1=[0.8] * 4,
               sittings=[(T0, 600.0)])
    (study / "notes.md").write_text("LeNet-5: flips helped, random crops did not.\n")
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{reproductions.README_BEGIN}\nold table\n{reproductions.README_END}\noutro\n")
    assert reproductions.main(["--results", str(tmp_path), "--readme", str(readme)]) == 0

    report = (study / "README.md").read_text()
    lenet_row = next(line for line in report.splitlines() if line.startswith("| lenet5 "))
    assert "| 0,1 | 92.50 ± 0.71 (n=2) | 91.6 | yes |" in lenet_row and "| 2.0 min |" in lenet_row
    resnet_row = next(line for line in report.splitlines() if line.startswith("| resnet20 "))
    assert "**no** (-1.00)" in resnet_row and "(n=1)" in resnet_row and "ResNet18 0.949" in resnet_row
    assert "Machine: Test CPU, 2 cores, devices 1 x cpu." in report
    assert "| resnet56 | – | – | – | – | not run yet | 94.5 |" in report  # a target without runs is listed
    assert (study / "curves.png").stat().st_size > 0
    assert report.rstrip().endswith("## Notes\n\nLeNet-5: flips helped, random crops did not.")
    text = readme.read_text()
    assert "old table" not in text and lenet_row in text
    assert text.startswith("intro\n") and text.endswith(f"{reproductions.README_END}\noutro\n")


def _summary(mean: float, std: float, n: int = 3) -> sweeps.Summary:
    return sweeps.Summary(mean, std, n)


@pytest.mark.parametrize("plain56, resnet56, plain_status, resnet_status", [
    (0.10, 0.03, "**reproduced**", "**reproduced**"),
    (0.081, 0.051, "**not separated**", "**not reproduced** (and within the seed spread)"),
    (0.05, 0.07, "**not reproduced**.", "**not reproduced**."),
])
def test_degradation_verdicts_follow_the_seed_spread(plain56, resnet56, plain_status, resnet_status):
    errors = {"plain20": 0.08, "resnet20": 0.05, "plain56": plain56, "resnet56": resnet56}
    summaries = {name: {"train": _summary(error, 0.002), "test": _summary(error, 0.002)}
                 for name, error in errors.items()}
    plain, resnet = reproductions.degradation_verdicts(summaries)
    assert plain.startswith("- plain: the paper says the deeper net has higher training error.")
    assert resnet.startswith("- ResNet: the paper says the deeper net has lower training error.")
    assert plain_status in plain and resnet_status in resnet
    two_se = 200 * math.hypot(0.002 / math.sqrt(3), 0.002 / math.sqrt(3))
    assert f"2 SE of the difference: {two_se:.2f}" in plain


def test_degradation_report_from_runs(tmp_path):
    study = tmp_path / "degradation"
    finals = {"plain20": 0.9, "plain56": 0.8, "resnet20": 0.9, "resnet56": 0.95}
    for model, train_top1 in finals.items():
        for seed in (0, 1):
            noise = 0.002 * seed
            _write_run(study / f"{model}_seed{seed}", _seeded(resnet20, seed, model), top1=[0.8, train_top1],
                       train_top1=[0.5, 0.6, train_top1 + noise, train_top1 - noise], sittings=[(T0, 60.0)])
    assert reproductions.main(["--results", str(tmp_path), "--study", "degradation",
                               "--readme", str(tmp_path / "none.md")]) == 0
    text = (study / "README.md").read_text()
    assert text.count("**reproduced**") == 2, text
    assert "| plain56 | 0,1 | 20.00 ± 0.00 (n=2) |" in text
    assert (study / "curves.png").exists() and (study / "curves.svg").exists()


def test_missing_results_directory_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        reproductions.main(["--results", str(tmp_path / "absent")])
    assert "absent: no such directory" in capsys.readouterr().err
