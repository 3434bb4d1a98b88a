"""The reproductions report (cnn_jax.tools.reproductions): per-epoch curves, wall time across sittings, the
Fashion-MNIST table against its targets, the degradation verdicts and the README table, all from run files."""

from __future__ import annotations

import json
import math
import pathlib

import numpy as np
import pytest

from cnn_jax import sweeps
from cnn_jax.config import apply_overrides
from cnn_jax.tools import reproductions, results
from experiments.fashion_mnist import lenet5, resnet20

T0 = 1_800_000_000.0


def _write_run(directory: pathlib.Path, config, *, top1: list[float], train_top1: list[float],
               sittings: list[tuple[float, float]], cpu: str = "Test CPU") -> None:
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
                         .strftime("%Y-%m-%dT%H:%M:%SZ"), "host": "h", "cpu": cpu, "cpu_count": 2,
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
    np.testing.assert_allclose(curves.window_epochs, [0.5, 1.0, 1.5, 2.0])
    np.testing.assert_allclose(curves.window_train_error, [0.5, 0.3, 0.2, 0.1])
    assert reproductions.wall_time_s(record) == pytest.approx(150.0, abs=1.0)  # 60 s + 90 s, not the hour between


def test_training_curve_leaves_out_a_last_window_cut_short(tmp_path):
    config = _seeded(lenet5, 0)
    _write_run(tmp_path / "run", config, top1=[0.80, 0.90], train_top1=[0.5, 0.7, 0.8, 0.9], sittings=[(T0, 60.0)])
    log = tmp_path / "run" / "metrics.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines()]
    extra = {"step": 19, "time": T0 + 59.0, "train/top1": 0.95, "train/loss": 1.0, "train/step_time_s": 0.1}
    records.insert(next(i for i, r in enumerate(records) if r["step"] == 20), extra)  # windows 15-19 and 19-20
    log.write_text("".join(json.dumps(r) + "\n" for r in records))
    curves = reproductions.epoch_curves(results.load_results([tmp_path])[0])
    np.testing.assert_allclose(curves.window_epochs, [0.5, 1.0, 1.5, 1.9])  # the 1-step window at 20 left out
    np.testing.assert_allclose(curves.window_train_error, [0.5, 0.3, 0.2, 0.05])


def test_fashion_mnist_report_tables_targets_seeds_and_updates_the_readme(tmp_path):
    study = tmp_path / "fashion_mnist"
    for seed, final in ((0, 0.92), (1, 0.93)):
        _write_run(study / f"lenet5_seed{seed}", _seeded(lenet5, seed), top1=[0.9, final],
                   train_top1=[0.8] * 4, sittings=[(T0, 120.0)])
    _write_run(study / "resnet20_seed0", _seeded(resnet20, 0), top1=[0.9, 0.93], train_top1=[0.8] * 4,
               sittings=[(T0, 600.0)], cpu="Other CPU")
    (study / "notes.md").write_text("LeNet-5: flips helped, random crops did not.\n")
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{reproductions.README_BEGIN}\nold table\n{reproductions.README_END}\noutro\n")
    assert reproductions.main(["--results", str(tmp_path), "--readme", str(readme)]) == 0

    report = (study / "README.md").read_text()
    lenet_row = next(line for line in report.splitlines() if line.startswith("| lenet5 "))
    assert "| 0,1 | 92.50 ± 0.71 (n=2) | 91.6 | yes |" in lenet_row
    assert "| 2.0 min | Test CPU, 2 cores, devices 1 x cpu |" in lenet_row  # each row names its runs' machine
    resnet_row = next(line for line in report.splitlines() if line.startswith("| resnet20 "))
    assert "**no** (-1.00)" in resnet_row and "(n=1)" in resnet_row and "ResNet18 0.949" in resnet_row
    assert "| 10.0 min | Other CPU, 2 cores, devices 1 x cpu |" in resnet_row
    assert "Machine: Test CPU, 2 cores, devices 1 x cpu; Other CPU, 2 cores, devices 1 x cpu." in report
    assert "| resnet56 | – | – | – | – | not run yet | 94.5 | – | ResNet18 0.949 | – | – | – |" in report
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
    # One run started by the sweep tool (the others by hand, as when a study is resumed run by run): its command is
    # the study's.
    sweep_command = "python -m cnn_jax.tools.sweep experiments/sweeps/degradation.py --workdir /w --seeds 0,1"
    launches = study / "plain20_seed0" / "launches.jsonl"
    launches.write_text(launches.read_text().replace("python launch.py --config X --workdir "
                                                     f"{study / 'plain20_seed0'}", sweep_command))
    assert reproductions.main(["--results", str(tmp_path), "--study", "degradation",
                               "--readme", str(tmp_path / "none.md")]) == 0
    text = (study / "README.md").read_text()
    assert f"Command: `{sweep_command}` (each run's own invocations: its `launches.jsonl`)." in text
    assert text.count("**reproduced**") == 2, text
    assert "| plain56 | 0,1 | 20.00 ± 0.00 (n=2) |" in text
    assert (study / "curves.png").exists() and (study / "curves.svg").exists()


def test_missing_results_directory_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        reproductions.main(["--results", str(tmp_path / "absent")])
    assert "absent: no such directory" in capsys.readouterr().err


def _scaled(series: str, name: str, macs: float, mean: float, std: float = 0.002) -> reproductions.ScaledPoint:
    return reproductions.ScaledPoint(series, name, int(macs * 1e6), 0, 24, _summary(mean, std), None)


def _scaling_study(compound_4x: float, width_4x: float) -> list[reproductions.ScaledPoint]:
    return [
        _scaled("baseline", "baseline", 4.0, 0.88),
        *[_scaled(axis, f"{axis}_x2", 8.0, 0.89) for axis in reproductions.SINGLE_AXES],
        _scaled("depth", "depth_x4", 14.0, 0.895), _scaled("resolution", "resolution_x4", 13.0, 0.895),
        _scaled("width", "width_x4", 14.0, width_4x),
        _scaled("search", "search_a1.1_b1.2_g1.1_phi1", 9.0, 0.90),
        _scaled("search", "search_a1.3_b1.1_g1.1_phi1", 8.5, 0.893),
        _scaled("compound", "compound_a1.1_b1.2_g1.1_phi2", 15.0, compound_4x),
    ]


@pytest.mark.parametrize("compound_4x, width_4x, verdict", [
    (0.91, 0.896, "**Reproduced**"),
    (0.897, 0.896, "**Not shown**"),
    (0.897, 0.91, "**Not reproduced**"),
])
def test_compound_verdicts_compare_each_cost_level_with_the_seed_spread(compound_4x, width_4x, verdict):
    lines = reproductions.compound_verdicts(_scaling_study(compound_4x, width_4x))
    assert lines[0].startswith(verdict), lines
    level_2x = next(line for line in lines if "search_a1.1_b1.2_g1.1_phi1" in line)  # the winner the scale used
    assert "(2.25x MACs): 90.00 ± 0.20 (n=3) %" in level_2x and "depth 89.00 ± 0.20 (n=3) % (2.00x)" in level_2x
    assert "+1.00 points, beyond two standard errors" in level_2x
    level_4x = next(line for line in lines if "compound_a1.1" in line)
    best = "width" if width_4x > 0.895 else "depth"
    assert f"best single dimension ({best}): {100 * (compound_4x - max(width_4x, 0.895)):+.2f}" in level_4x
    assert "best of 2 searched" in lines[-1]


def test_compound_verdicts_wait_for_the_compound_runs():
    study = [p for p in _scaling_study(0.91, 0.89) if p.series != "compound"]
    assert reproductions.compound_verdicts(study)[0].startswith("The claim is not tested yet")


def test_compound_report_from_the_sweep_files_points(tmp_path, monkeypatch):
    """The study's own sweep file (both stages) planned into a sweep.json with fake finished runs: table, figure and
    verdict come out of the files; MACs from a stand-in counter (the real counts are tested with the sweep file)."""
    from cnn_jax.tools.sweep import load_sweep
    from experiments.fashion_mnist import mbconv_scaling

    monkeypatch.setattr(results, "run_size", lambda c: (1000, int(1e6 * c.model.depth_mult * c.model.width_mult**2
                                                                    * c.data.image_size**2)))
    study = tmp_path / "compound_scaling"
    sweep = load_sweep("experiments/sweeps/compound_scaling.py")
    search = sweeps.with_seeds(sweep.stages[0].runs([]), [0, 1])
    accuracy = {"baseline": 0.88, "depth_x2": 0.885, "width_x2": 0.886, "resolution_x2": 0.887}

    def finish(runs, stage):
        planned = []
        for index, run in enumerate(runs):
            config = apply_overrides(mbconv_scaling.get_config(), sweeps.config_keys(run))
            name = f"{index:03d}_{run['_name']}"
            final = accuracy.get(run["_name"].rsplit("_seed", 1)[0], 0.89) + 0.001 * run["seed"]
            _write_run(study / name, config, top1=[0.8, final], train_top1=[0.8] * 4, sittings=[(T0, 60.0)])
            planned.append({"name": name, "stage": stage, "overrides": run, "config": config.to_dict(),
                            "metrics": {"eval/top1": final}, "status": "finished"})
        return planned

    accuracy["search_a1.1_b1.2_g1.1_phi1"] = 0.9  # the winner the scale stage must pick
    runs = finish(search, "search")
    scale = sweeps.with_seeds(sweep.stages[1].runs(runs), [0, 1])
    assert [r["_name"] for r in scale] == ["compound_a1.1_b1.2_g1.1_phi2_seed0", "compound_a1.1_b1.2_g1.1_phi2_seed1"]
    assert scale[0]["data.image_size"] == 29 and scale[0]["model.width_mult"] == 0.72  # 24 x 1.1^2, 0.5 x 1.2^2
    runs += finish(scale, "scale")
    (study / "sweep.json").write_text(json.dumps({"sweep": "experiments/sweeps/compound_scaling.py", "runs": runs}))
    assert reproductions.main(["--results", str(tmp_path), "--study", "compound_scaling",
                               "--readme", str(tmp_path / "none.md")]) == 0
    text = (study / "README.md").read_text()
    assert "| baseline | baseline | 0.5, 0.5 | 24 | 1,000 |" in text and "| 1.00x | 0,1 | 88.05 ± 0.07 (n=2) |" in text
    assert "| search | search_a1.1_b1.2_g1.1_phi1 | 0.55, 0.6 | 26 |" in text
    assert text.count("\n| ") == 2 + 11  # the header, its rule and 11 points
    assert "`search_a1.1_b1.2_g1.1_phi1`" in text and "`compound_a1.1_b1.2_g1.1_phi2`" in text
    assert "best of 3 searched" in text
    assert (study / "accuracy_vs_macs.png").stat().st_size > 0


@pytest.mark.extended
def test_compound_scaling_points_cost_about_their_nominal_factor():
    """The study's design (experiments/sweeps/compound_scaling.py): each point's measured multiply-adds within
    [0.75, 1.35] of its nominal FLOPs factor (the docstring lists them), and the search points build distinct
    networks."""
    from cnn_jax.tools.sweep import load_sweep
    from cnn_jax.train.dry_run import model_statistics
    from experiments.fashion_mnist import mbconv_scaling

    def macs(run):
        return model_statistics(apply_overrides(mbconv_scaling.get_config(), sweeps.config_keys(run))).macs

    runs = load_sweep("experiments/sweeps/compound_scaling.py").stages[0].runs([])
    base = macs(runs[0])
    assert base == pytest.approx(4.02e6, rel=0.01)
    ratios = {run["_name"]: macs(run) / base for run in runs[1:]}
    for name, ratio in ratios.items():
        nominal = 4.0 if name.endswith("_x4") else 2.0
        assert 0.75 * nominal <= ratio <= 1.35 * nominal, (name, ratio)
    searched = [ratio for name, ratio in ratios.items() if name.startswith("search")]
    assert len(searched) == 3 and len({round(r, 3) for r in searched}) == 3
