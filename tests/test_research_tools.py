"""Research tools: sweep helpers and the sweep runner, the size-vs-accuracy report, checkpoint ensembles."""

from __future__ import annotations

import fcntl
import json
import pathlib
import shlex
import shutil
import subprocess
import sys

import numpy as np
import pytest
from absl import flags
from ml_collections import config_flags

from cnn_jax import sweeps
from cnn_jax.config import apply_overrides, config_from_json, load_config, parse_overrides
from cnn_jax.tools import evaluate, report, results
from cnn_jax.tools import sweep as sweep_tool
from cnn_jax.train.metrics import read_launches
from experiments.sweeps import scaling

REPO = pathlib.Path(__file__).resolve().parents[1]
LENET_SWEEP = "experiments/sweeps/lenet_lr.py"
# A real but tiny budget: 3 LeNet-5 seeds, 250 steps of 64 on 10k Fashion-MNIST images, scored on 2,000 test images.
TINY = ["--config.train.num_steps=250", "--config.train.global_batch=64", "--config.data.max_train_examples=10000",
        "--config.data.max_eval_examples=2000", "--config.train.log_every_steps=250",
        "--config.train.eval_every_epochs=100.0", "--config.train.checkpoint_every_steps=1000",
        "--config.data.train_transform=none"]  # the README's ensemble example was measured without lenet5.py's flips


# ---------------------------------------------------------------------------------------------------------------
# Sweep helpers.


def test_product_and_zip_counts_and_contents():
    grid = sweeps.product({"optimizer.base_lr": [0.1, 0.2]}, sweeps.axis("seed", [0, 1, 2]))
    assert len(grid) == 6
    assert grid[0] == {"optimizer.base_lr": 0.1, "seed": 0}
    assert grid[-1] == {"optimizer.base_lr": 0.2, "seed": 2}  # the last argument varies fastest
    assert grid[1] == {"optimizer.base_lr": 0.1, "seed": 1}
    assert len({json.dumps(g, sort_keys=True) for g in grid}) == 6

    zipped = sweeps.zip_sweep({"model.phi": [1.0, 2.0, 3.0], "data.image_size": [37, 42, 49]})
    assert zipped == [{"model.phi": 1.0, "data.image_size": 37}, {"model.phi": 2.0, "data.image_size": 42},
                      {"model.phi": 3.0, "data.image_size": 49}]
    # Composed: a zipped pair of axes crossed with seeds.
    assert len(sweeps.product(zipped, {"seed": [0, 1]})) == 6
    assert len(sweeps.chain(zipped, grid)) == 9
    with pytest.raises(ValueError, match="equal length"):
        sweeps.zip_sweep({"a": [1, 2]}, {"b": [1, 2, 3]})
    with pytest.raises(ValueError, match="'a' is set twice"):
        sweeps.product({"a": [1]}, {"a": [2]})


def test_apply_overrides_checks_keys_and_types():
    config = load_config(f"{REPO}/experiments/fashion_mnist/lenet5.py")
    out = apply_overrides(config, {"optimizer.base_lr": 0.3, "train.num_steps": 7, "_series": "x"})
    assert out.optimizer.base_lr == 0.3 and out.train.num_steps == 7
    assert config.optimizer.base_lr == 0.1  # the base is not changed
    with pytest.raises(KeyError, match=r"'optimizer.base_lrr'.*did you mean optimizer.base_lr"):
        apply_overrides(config, {"optimizer.base_lrr": 0.3})
    with pytest.raises(TypeError, match="train.num_steps"):
        apply_overrides(config, {"train.num_steps": "many"})
    assert parse_overrides(["--config.train.num_steps=5", "--config.optimizer.base_lr=1e-2"],
                           config) == {"train.num_steps": 5, "optimizer.base_lr": 0.01}
    assert sweep_tool.parse_sweep_args("lrs=[0.1,0.2],max_phi=3,name=abc") == {
        "lrs": [0.1, 0.2], "max_phi": 3, "name": "abc"}


def test_compound_grid_satisfies_the_constraint():
    grid = scaling.compound_grid(tolerance=0.1, step=0.05, alpha_range=(1.0, 1.4), beta_range=(1.0, 1.3),
                                gamma_range=(1.0, 1.3))
    for p in grid:
        assert abs(p.alpha * p.beta**2 * p.gamma**2 - 2.0) <= 0.1 + 1e-9, p
        assert min(p.alpha, p.beta, p.gamma) >= 1.0
    # The paper's B0 coefficients (factor 1.92) are on this grid; an independent integer enumeration finds the same.
    assert scaling.CompoundPoint(1.2, 1.1, 1.15) in grid
    expected = {(a / 20, b / 20, g / 20) for a in range(20, 29) for b in range(20, 27) for g in range(20, 27)
                if abs(a * b * b * g * g / 20**5 - 2.0) <= 0.1}
    assert {(p.alpha, p.beta, p.gamma) for p in grid} == expected
    tight = scaling.compound_grid(tolerance=0.01, step=0.05)
    assert all(abs(p.flops_factor - 2.0) <= 0.01 + 1e-9 for p in tight) and len(tight) < len(
        scaling.compound_grid(tolerance=0.1, step=0.05))
    with pytest.raises(ValueError, match="no point within tolerance"):
        scaling.compound_grid(tolerance=0.0, step=0.5, alpha_range=(1.0, 1.0), beta_range=(1.0, 1.0))

    # The sweep file: stage 1 at phi = 1 on that grid, input size 32 * gamma; stage 2 scales the best point.
    sweep = sweep_tool.load_sweep("experiments/sweeps/efficientnet_compound.py:step=0.1,max_phi=3")
    search = sweep.stages[0].runs([])
    assert {r["model.phi"] for r in search} == {1.0}
    assert all(r["data.image_size"] == scaling.proxy_resolution(32, r["model.gamma"], 1.0) for r in search)
    previous = [{"stage": "search", "overrides": {**r, "seed": seed}, "num_classes": 10,
                 "metrics": {"eval/top1": 0.5 + 0.01 * (i == 3) + 0.001 * seed}}
                for i, r in enumerate(search) for seed in (0, 1, 2)]
    scaled = sweep.stages[1].runs(previous)
    assert [r["model.phi"] for r in scaled] == [2.0, 3.0]
    assert all(r["model.alpha"] == search[3]["model.alpha"] and r["model.gamma"] == search[3]["model.gamma"]
               for r in scaled)
    assert scaled[1]["data.image_size"] == scaling.proxy_resolution(32, search[3]["model.gamma"], 3.0)


def _parse_launch(command: str, monkeypatch):
    """The config a ``launch.py`` command line would train, parsed by ml_collections' own flag parser (which reads
    the ``--config.key=value`` overrides from ``sys.argv``)."""
    argv = shlex.split(command)
    assert argv[:2] == ["python", "launch.py"]
    argv = [argv[1], *(str(REPO / a) if a.startswith("experiments/") else a for a in argv[2:])]
    monkeypatch.setattr(sys, "argv", argv)
    flag_values = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "", flag_values=flag_values, lock_config=True)
    flags.DEFINE_string("workdir", None, "", flag_values=flag_values)
    flag_values(argv, known_only=True)
    return flag_values.config, flag_values.workdir


def test_emit_shell_and_slurm(tmp_path, monkeypatch):
    result = sweep_tool.run_sweep(LENET_SWEEP, tmp_path, ["--config.train.num_steps=11"], emit="shell",
                                  log=lambda _: None)
    assert "run_commands " + str(tmp_path / "plan" / "runs.commands") in result["emitted"]
    lines = (tmp_path / "plan" / "runs.commands").read_text().strip().split("\n")
    planned = json.loads((tmp_path / "sweep.json").read_text())["runs"]
    assert len(lines) == len(planned) == 6
    for line, run in zip(lines, planned, strict=True):
        config, workdir = _parse_launch(line, monkeypatch)
        assert workdir == str(tmp_path / run["name"])
        assert config.optimizer.base_lr == run["overrides"]["optimizer.base_lr"]
        assert config.seed == run["overrides"]["seed"]
        assert config.train.num_steps == 11  # the command-line override reaches every run
    assert not any((tmp_path / r["name"]).exists() for r in planned)  # emitting trains nothing

    slurm = sweep_tool.run_sweep(LENET_SWEEP, tmp_path, [], emit="slurm", sbatch_args=["--gres=gpu:1"],
                                 max_parallel=2, log=lambda _: None)["emitted"]
    array = slurm["00_runs.sbatch"]
    assert "#SBATCH --array=0-5%2" in array and "#SBATCH --gres=gpu:1" in array
    script = tmp_path / "job.sh"
    script.write_text(array)
    subprocess.run(["bash", "-n", str(script)], check=True)  # valid bash
    # Task 4 runs the fifth command: evaluate the array exactly as SLURM would, with `eval` replaced by `echo`.
    echoed = subprocess.run(["bash", "-c", array.replace('eval "$', 'echo "$')],
                            env={"SLURM_ARRAY_TASK_ID": "4", "PATH": "/usr/bin:/bin"}, capture_output=True,
                            text=True, check=True).stdout.strip().split("\n")[-1]
    config, workdir = _parse_launch(echoed, monkeypatch)
    assert config.optimizer.base_lr == 0.2 and config.seed == 0


def test_unknown_key_fails_before_anything_trains(tmp_path):
    bad = tmp_path / "bad_sweep.py"
    bad.write_text('BASE_CONFIG = "experiments/fashion_mnist/lenet5.py"\n'
                   'def get_sweep():\n    return [{"seed": 0}, {"optimizer.momentun": 0.5}]\n')
    with pytest.raises(KeyError, match=r"run 1 .*'optimizer.momentun'.*did you mean optimizer.momentum"):
        sweep_tool.run_sweep(str(bad), tmp_path / "out", log=lambda _: None)
    assert not list((tmp_path / "out").glob("0*"))  # run 0 did not start
    bad.write_text('BASE_CONFIG = "experiments/fashion_mnist/lenet5.py"\n'
                   'def get_sweep():\n    return [{"model.widht": 2}]\n')
    with pytest.raises(KeyError, match="model.widht"):
        sweep_tool.run_sweep(str(bad), tmp_path / "out", log=lambda _: None)
    with pytest.raises(ValueError, match="unexpected argument"):
        sweep_tool.run_sweep(LENET_SWEEP, tmp_path / "out", ["--num_steps=3"], log=lambda _: None)


# ---------------------------------------------------------------------------------------------------------------
# A real sweep: three LeNet-5 seeds on Fashion-MNIST (shared by the sweep, report and ensemble tests).


@pytest.fixture(scope="module")
def lenet_sweep(tmp_path_factory, request):
    # Under pytest-xdist the tests of this module may land on both workers: they share one sweep directory (the
    # session's base temp), the first worker trains it under a lock and the other finds its runs finished.
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if hasattr(request.config, "workerinput") else base) / "research_tools_lenet_sweep"
    root.mkdir(exist_ok=True)
    logs: list[str] = []
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        result = sweep_tool.run_sweep(f"{LENET_SWEEP}:lrs=[0.2],seeds=[0,1,2]", root, TINY, log=logs.append)
    return root, _rows(result), logs


def _rows(result):
    """The sweep's records as plain dicts (what the tests below compare)."""
    return {"rows": [{"run": r.name, "status": r.status, "metrics": r.metrics, "params": r.params, "macs": r.macs}
                     for r in result["records"]]}


def test_sweep_end_to_end_and_skip_finished(lenet_sweep):
    root, result, logs = lenet_sweep
    rows = result["rows"]
    assert [r["run"] for r in rows] == ["000_base_lr0.2_seed0", "001_base_lr0.2_seed1", "002_base_lr0.2_seed2"]
    assert sum(line.startswith(("[run]", "[skip]")) for line in logs) == 3  # [skip]: another xdist worker ran it
    for row in rows:
        assert row["status"] == "finished"
        assert row["params"] == 61_706 and row["macs"] == 416_520  # LeNet-5 at 32x32 (README table)
        assert row["metrics"]["eval/examples"] == 2000
        assert row["metrics"]["eval/top1"] > 0.70  # it learned (chance is 0.10)
        assert (root / row["run"] / sweep_tool.FINAL).exists()
        # The run's launch record holds the sweep command that trained it (and the study re-runs).
        launches = read_launches(root / row["run"])
        assert len(launches) == 1 and launches[0]["command"].startswith(
            f"python -m cnn_jax.tools.sweep {shlex.quote(f'{LENET_SWEEP}:lrs=[0.2],seeds=[0,1,2]')} --workdir {root}")
    assert len({r["metrics"]["eval/top1"] for r in rows}) > 1  # the seeds differ

    with open(root / "summary_runs.csv") as f:
        lines = f.read().strip().split("\n")
    assert lines[0].split(",")[:5] == ["run", "stage", "series", "optimizer.base_lr", "seed"]
    assert len(lines) == 4 and all(",finished,250,250," in line for line in lines[1:])
    md = (root / "summary.md").read_text()  # one point, its three seeds aggregated
    top1 = sweeps.summarize(r["metrics"]["eval/top1"] for r in rows)
    row = f"| 000_base_lr0.2 | lenet_lr | finished | 250/250 | 0,1,2 | 61,706 | 416,520 | 32 | {top1.format(100)} |"
    assert row in md
    assert (root / "summary.png").stat().st_size > 10_000 and (root / "summary.svg").exists()

    # Relaunch: every run is skipped (nothing trains: the metrics logs do not grow).
    sizes = [(root / r["run"] / "metrics.jsonl").stat().st_size for r in rows]
    logs2: list[str] = []
    again = _rows(sweep_tool.run_sweep(f"{LENET_SWEEP}:lrs=[0.2],seeds=[0,1,2]", root, TINY, log=logs2.append))
    assert sum(line.startswith("[skip]") for line in logs2) == 3 and not any(x.startswith("[run]") for x in logs2)
    assert sizes == [(root / r["run"] / "metrics.jsonl").stat().st_size for r in rows]
    assert all(len(read_launches(root / r["run"])) == 1 for r in rows)  # a skipped run is not launched again
    assert [r["metrics"]["eval/top1"] for r in again["rows"]] == [r["metrics"]["eval/top1"] for r in rows]

    # A run launched from emitted commands has no marker: its metrics.jsonl (eval at the last step) says finished.
    run = sweep_tool.plan_stage(sweep_tool.load_sweep(f"{LENET_SWEEP}:lrs=[0.2],seeds=[0]"),
                                sweep_tool.load_sweep(f"{LENET_SWEEP}:lrs=[0.2],seeds=[0]").stages[0],
                                load_config("experiments/fashion_mnist/lenet5.py"),
                                parse_overrides(TINY, load_config("experiments/fashion_mnist/lenet5.py")), [])[0]
    marker = root / run.name / sweep_tool.FINAL
    saved = marker.read_text()
    marker.unlink()
    try:
        progress = results.read_progress(root / run.name, 250)
        assert progress["status"] == "finished"
        assert progress["metrics"]["eval/top1"] == rows[0]["metrics"]["eval/top1"]
        assert results.read_progress(root / run.name, 251)["status"] == "unfinished"  # its last step not reached
    finally:
        marker.write_text(saved)


def test_sweep_stops_at_an_interrupted_run(lenet_sweep, tmp_path):
    """A run that stops before its last step (SIGTERM, train.stop_after_steps) is not marked finished, and the
    sweep does not go on to the next run; a relaunch resumes it."""
    root, result, _ = lenet_sweep
    shutil.copytree(root / result["rows"][0]["run"], tmp_path / result["rows"][0]["run"])
    (tmp_path / result["rows"][0]["run"] / sweep_tool.FINAL).unlink()
    logs: list[str] = []
    out = _rows(sweep_tool.run_sweep(f"{LENET_SWEEP}:lrs=[0.2],seeds=[0,1]", tmp_path,
                                     [*TINY, "--config.train.num_steps=252", "--config.train.stop_after_steps=1"],
                                     log=logs.append))
    assert [line.split()[0] for line in logs if line.startswith("[")] == ["[run]", "[stopped]"]
    assert [r["status"] for r in out["rows"]] == ["unfinished", "pending"]
    assert not (tmp_path / result["rows"][0]["run"] / sweep_tool.FINAL).exists()
    assert not (tmp_path / result["rows"][1]["run"]).exists()  # the second run never started


# ---------------------------------------------------------------------------------------------------------------
# Ensembles.


def test_ensemble_of_identical_checkpoints_equals_the_single_model(lenet_sweep, tmp_path):
    root, result, _ = lenet_sweep
    member = evaluate.load_member(root / result["rows"][0]["run"])
    config = config_from_json(json.loads((root / result["rows"][0]["run"] / "config.json").read_text()))
    config.data.max_eval_examples = 700  # a partial last batch (eval_batch 500): the mask must hold
    single = evaluate.evaluate_ensemble([member], evaluate.eval_batches(config)[0])
    for how in evaluate.COMBINES:
        triple = evaluate.evaluate_ensemble([member, member, member], evaluate.eval_batches(config)[0], how=how)
        assert triple["ensemble"]["examples"] == 700
        assert triple["ensemble"]["top1"] == single["ensemble"]["top1"]
        assert triple[f"{member.name} [2]"]["top1"] == single[member.name]["top1"]
        assert triple["ensemble"]["top5"] == single["ensemble"]["top5"]
        np.testing.assert_allclose(triple["ensemble"]["loss"], single["ensemble"]["loss"], rtol=1e-6)
    # The single-member "ensemble" is the member, and the member's numbers are the training loop's final eval.
    assert single["ensemble"]["top1"] == single[member.name]["top1"]
    config.data.max_eval_examples = 2000
    full = evaluate.evaluate_ensemble([member], evaluate.eval_batches(config)[0])
    assert full[member.name]["top1"] == pytest.approx(result["rows"][0]["metrics"]["eval/top1"], abs=1e-9)

    # The same variables saved as imported weights (cnn_jax.weights) score the same through the CLI.
    from cnn_jax import weights

    weights_dir = tmp_path / "lenet_weights"
    weights.save_variables(weights_dir, member.variables,
                           {"model": "lenet5", "overrides": {"num_classes": 10, "in_channels": 1}})
    out = tmp_path / "w.json"
    assert evaluate.main(["--checkpoints", str(weights_dir), "--config", "experiments/fashion_mnist/lenet5.py",
                          "--config.data.max_eval_examples=2000", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["results"]["ensemble"]["top1"] == full[member.name]["top1"]
    with pytest.raises(FileNotFoundError, match="neither a training workdir"):
        evaluate.load_member(tmp_path)


def test_ensemble_of_seeds_beats_the_best_member(lenet_sweep, tmp_path, capsys):
    root, result, _ = lenet_sweep
    dirs = [str(root / r["run"]) for r in result["rows"]]
    out = tmp_path / "ensemble.json"
    assert evaluate.main(["--checkpoints", *dirs, "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "ensemble (probs)" in printed and "(2000 examples)" in printed
    scores = json.loads(out.read_text())["results"]
    members = [scores[d]["top1"] for d in dirs]
    assert scores["ensemble"]["top1"] >= max(members), results
    assert scores["ensemble"]["loss"] < min(scores[d]["loss"] for d in dirs)  # averaging probabilities helps NLL
    logits = evaluate.evaluate_ensemble([evaluate.load_member(d) for d in dirs],
                                        evaluate.eval_batches(config_from_json(json.loads(
                                            (pathlib.Path(dirs[0]) / "config.json").read_text())))[0], how="logits")
    assert logits["ensemble"]["top1"] >= max(members) - 0.005
    with pytest.raises(ValueError, match="no EMA"):
        evaluate.load_member(dirs[0], ema=True)


# ---------------------------------------------------------------------------------------------------------------
# Size vs accuracy.


def test_report_chart_table_and_own_runs(lenet_sweep, tmp_path):
    root, _, _ = lenet_sweep
    rows = report.load_reference_rows(REPO / "tests" / "reference" / "models.csv")
    assert report.main(["--out", str(tmp_path), "--models", "alexnet*,vgg1[16],mobilenet_v3_small",
                        "--reference", str(REPO / "tests" / "reference" / "models.csv")]) == 0
    for name in ("accuracy_vs_macs.png", "accuracy_vs_macs.svg", "model_sizes.csv", "model_sizes.md"):
        assert (tmp_path / name).stat().st_size > 200, name
    svg = (tmp_path / "accuracy_vs_macs.svg").read_text()
    assert "torchvision 0.28 weights metadata" in svg and "parameters" in svg
    table = {r["model"]: r for r in _csv(tmp_path / "model_sizes.csv")}
    # alexnet matches torchvision's row (same 61,100,840 parameters at 224), vgg16 likewise; the paper layout has
    # no row with its exact count and is listed without an accuracy.
    assert float(table["alexnet"]["top-1 (%)"]) == 56.522 and int(table["alexnet"]["MACs"]) == 714_188_480
    assert float(table["vgg16"]["top-1 (%)"]) == 71.592 and int(table["vgg16"]["params"]) == 138_357_544
    assert float(table["vgg16"]["activation memory (MB)"]) == pytest.approx(57.55, abs=0.01)  # README: 57.6
    assert table["alexnet_paper"]["top-1 (%)"] == ""
    efficientnet_b2 = report.model_stats("efficientnet_b2")
    # torchvision's B2 row is at 288 px: the 260 px row (timm's TF weights) is the one that describes this network.
    assert report.match_reference(efficientnet_b2, rows)["top1"] == "79.612"
    runs = results.load_results([root])
    assert len(runs) == 3 and all(r.params == 61_706 and r.config.data.name == "fashion_mnist" for r in runs)


def _csv(path):
    import csv

    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("name,early_convs", [("alexnet", 2), ("vgg16", 4)])
def test_layer_data_early_convs_hold_memory_fc_holds_params(name, early_convs, tmp_path):
    stats = report.model_stats(name)
    data = report.layer_data(stats)
    convs = [d for d in data if d["kind"] == "conv"]
    dense = [d for d in data if d["kind"] == "dense"]
    total_memory = sum(d["memory_kb"] for d in data)
    total_params = sum(d["params"] for d in data)
    # The largest activation is the first conv's; the first convs hold most of the memory and the FC layers little.
    assert max(data, key=lambda d: d["memory_kb"]) is convs[0]
    assert sum(d["memory_kb"] for d in convs[:early_convs]) > 0.5 * total_memory
    assert sum(d["memory_kb"] for d in dense) < 0.02 * total_memory  # AlexNet: 36 of 2,275 KB
    # The FC layers hold most of the parameters (AlexNet 96%, VGG-16 89%), the first convs almost none.
    assert sum(d["params"] for d in dense) > 0.85 * total_params
    assert sum(d["params"] for d in convs[:early_convs]) < 0.01 * total_params
    assert total_params == stats.params and sum(d["macs"] for d in convs + dense) == stats.macs
    paths = report.layer_plot(stats, tmp_path)
    assert [p.name for p in paths] == [f"layers_{name}.png", f"layers_{name}.svg"]
    assert all(p.stat().st_size > 10_000 for p in paths)
