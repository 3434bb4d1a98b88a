"""The sweep workflow: seeds and their aggregation, the refusal to pick a winner from noise, the results table and
plot across sweeps, the whole study as a shell script and as chained SLURM arrays (run with stand-ins for the
trainer and for sbatch: the scripts, plans and dependencies are real, the training is not)."""

from __future__ import annotations

import csv
import json
import os
import pathlib
import shlex
import subprocess
import sys

import pytest

from cnn_jax import sweeps
from cnn_jax.config import load_config
from cnn_jax.tools import report, results
from cnn_jax.tools import sweep as sweep_tool

REPO = pathlib.Path(__file__).resolve().parents[1]
LENET_SWEEP = "experiments/sweeps/lenet_lr.py"
COMPOUND = "experiments/sweeps/efficientnet_compound.py:step=0.1,max_points=4,max_phi=3"
SMALL_COMPOUND = "experiments/sweeps/efficientnet_compound.py:step=0.1,max_points=2,max_phi=2"  # 2 points, phi 2
SHORT = ["--config.train.num_steps=150", "--config.train.global_batch=32"]

# A stand-in interpreter for the emitted commands: `launch.py` finishes a run at once with a score set by its
# overrides (alpha = 1.4 wins by 20 points; seeds add 0.1 point each), anything else goes to the real Python.
FAKE_PYTHON = f"""#!/bin/bash
if [ "$1" = "launch.py" ]; then
  shift
  exec {sys.executable} - "$@" <<'PY'
import json, pathlib, sys
args = sys.argv[1:]
workdir = pathlib.Path(args[args.index("--workdir") + 1])
overrides = dict(a[len("--config."):].split("=", 1) for a in args if a.startswith("--config."))
workdir.mkdir(parents=True, exist_ok=True)
top1 = 0.5 + 0.2 * (float(overrides["model.alpha"]) == 1.4) + 0.001 * int(overrides["seed"])
final = {{"metrics": {{"eval/top1": top1, "eval/top5": 0.95}}, "overrides": overrides}}
(workdir / "final_metrics.json").write_text(json.dumps(final))
with open(workdir.parent.parent / "launched.txt", "a") as f:
    f.write(workdir.name + "\\n")
PY
fi
exec {sys.executable} "$@"
"""


def _finish(root: pathlib.Path, name: str, top1: float, top5: float = 0.9) -> None:
    workdir = root / name
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / results.FINAL).write_text(json.dumps({"metrics": {"eval/top1": top1, "eval/top5": top5}}))


def _csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ---------------------------------------------------------------------------------------------------------------
# Seeds, statistics, the winner.


def test_with_seeds_repeats_every_run_and_refuses_a_second_seed_axis():
    runs = sweeps.with_seeds([{"model.alpha": 1.2, "_name": "a"}, {"model.alpha": 1.4}], [0, 1, 2])
    assert [(r["model.alpha"], r["seed"]) for r in runs] == [(1.2, 0), (1.2, 1), (1.2, 2), (1.4, 0), (1.4, 1),
                                                             (1.4, 2)]
    assert runs[1]["_name"] == "a_seed1"
    assert sweeps.point_key(runs[0]) == sweeps.point_key(runs[2]) != sweeps.point_key(runs[3])
    assert sweeps.with_seeds(runs[:1], None) == runs[:1]
    with pytest.raises(ValueError, match="already sets 'seed'"):
        sweeps.with_seeds([{"seed": 3}], [0, 1])
    with pytest.raises(ValueError, match="distinct"):
        sweeps.with_seeds([{}], [0, 0])


def test_summary_is_mean_sample_std_and_n():
    s = sweeps.summarize([0.5, 0.6, 0.7])
    assert (s.mean, s.n) == (pytest.approx(0.6), 3) and s.std == pytest.approx(0.1)  # ddof = 1
    assert s.format(100) == "60.00 ± 10.00 (n=3)"
    assert sweeps.summarize([0.25]).format(100) == "25.00 (n=1)" and sweeps.summarize([]).n == 0


def _results(points: dict[float, list[float]], status: str = "finished") -> list[dict]:
    return [{"name": f"a{alpha}_s{i}", "status": status, "overrides": {"model.alpha": alpha, "seed": i},
             "metrics": {"eval/top1": v}} for alpha, values in points.items() for i, v in enumerate(values)]


def test_select_best_picks_a_separated_winner_and_refuses_noise():
    best = sweeps.select_best(_results({1.2: [0.80, 0.81, 0.82], 1.4: [0.70, 0.71, 0.72]}), num_classes=10)
    assert best.overrides == {"model.alpha": 1.2} and best.score.n == 3

    # The case: every point at chance after a too-short budget.
    chance = _results({1.0: [0.094, 0.101, 0.098], 1.2: [0.104, 0.097, 0.100], 1.4: [0.099, 0.096, 0.103]})
    with pytest.raises(sweeps.UnseparatedWinnerError, match=r"within 0.05 of chance \(0.1000 for 10 classes\)") as e:
        sweeps.select_best(chance, num_classes=10)
    assert "10.03 ± 0.35 (n=3) %  {'model.alpha': 1.2}" in str(e.value)  # every candidate's numbers

    # Ahead, but by less than two standard errors of the difference.
    close = _results({1.2: [0.80, 0.84, 0.76], 1.4: [0.79, 0.75, 0.77]})
    with pytest.raises(sweeps.UnseparatedWinnerError, match=r"beats the runner-up \(0.7700\) by 0.0300, not more "
                       r"than 2 standard errors"):
        sweeps.select_best(close, num_classes=10)
    with pytest.raises(sweeps.UnseparatedWinnerError, match="fewer than 2 seeds"):
        sweeps.select_best(_results({1.2: [0.8], 1.4: [0.7]}), num_classes=10)
    unfinished = _results({1.2: [0.8, 0.81]}) + _results({1.4: [0.7]}, status="unfinished")
    with pytest.raises(sweeps.UnseparatedWinnerError, match=r"1 run\(s\) are not finished: a1.4_s0"):
        sweeps.select_best(unfinished, num_classes=10)


def test_compound_sweep_scales_the_winner_or_a_chosen_point():
    sweep = sweep_tool.load_sweep(COMPOUND)
    assert sweep.seeds == (0, 1, 2) and sweep.stages[1].size == 2
    search = sweeps.with_seeds(sweep.stages[0].runs([]), sweep.seeds)
    assert len(search) == 12
    previous = [{"name": str(i), "stage": "search", "status": "finished", "overrides": r, "num_classes": 10,
                 "metrics": {"eval/top1": 0.1 + 0.002 * r["seed"]}} for i, r in enumerate(search)]
    with pytest.raises(sweeps.UnseparatedWinnerError, match="chance"):
        sweep.stages[1].runs(previous)
    chosen = sweep_tool.load_sweep(f"{COMPOUND},point=(1.2,1.1,1.15)").stages[1].runs(previous)
    assert [(r["model.phi"], r["model.alpha"], r["data.image_size"]) for r in chosen] == [(2.0, 1.2, 42),
                                                                                          (3.0, 1.2, 49)]


# ---------------------------------------------------------------------------------------------------------------
# The results table and plot.


@pytest.fixture
def lenet_study(tmp_path):
    """A planned LeNet lr x seed sweep (6 runs, nothing trained) with results written as a trainer would: lr 0.05
    finished (seeds 0, 1), lr 0.1 finished for seed 0 and stopped at step 100 of 150 for seed 1 (its log's last line
    cut by the kill), lr 0.2 pending."""
    root = tmp_path / "lenet"
    sweep_tool.run_sweep(LENET_SWEEP, root, SHORT, emit="shell", check=False, log=lambda _: None)
    _finish(root, "000_base_lr0.05_seed0", 0.70, 0.95)
    _finish(root, "001_base_lr0.05_seed1", 0.74, 0.97)
    _finish(root, "002_base_lr0.1_seed0", 0.80, 0.99)
    stopped = root / "003_base_lr0.1_seed1"
    stopped.mkdir()
    with open(stopped / "metrics.jsonl", "w") as f:
        for step in (50, 100):
            f.write(json.dumps({"step": step, "time": 1000.0 + step, "train/loss": 1.0,
                                "train/step_time_s": 0.02}) + "\n")
        f.write(json.dumps({"step": 100, "time": 1101.0, "eval/top1": 0.6, "eval/top5": 0.9}) + "\n")
        f.write('{"step": 150, "time": 11')  # the writer was killed mid-line: the records before it stand
    return root


def test_results_table_aggregates_seeds_across_sweeps(lenet_study, tmp_path):
    other = tmp_path / "loose_run"  # a workdir trained outside any sweep, another model
    config = load_config("experiments/fashion_mnist/resnet20.py")
    other.mkdir()
    (other / "config.json").write_text(config.to_json())
    with open(other / "metrics.jsonl", "w") as f:
        final_step = results.total_steps(config)
        f.write(json.dumps({"step": final_step, "time": 5.0, "train/step_time_s": 0.5}) + "\n")
        f.write(json.dumps({"step": final_step, "time": 6.0, "eval/top1": 0.9, "eval/top5": 1.0}) + "\n")

    out = tmp_path / "out"
    assert report.main(["--out", str(out), "--results", str(lenet_study), str(other), "--table"]) == 0
    rows = {r["run"]: r for r in _csv(out / "results.csv")}
    assert set(rows) == {"000_base_lr0.05", "002_base_lr0.1", "004_base_lr0.2", "loose_run"}
    lr05, lr1, lr2, loose = (rows[k] for k in ("000_base_lr0.05", "002_base_lr0.1", "004_base_lr0.2", "loose_run"))
    assert float(lr05["eval/top1 mean"]) == pytest.approx(0.72) and float(lr05["eval/top1 std"]) == pytest.approx(
        0.0282843, rel=1e-5) and lr05["eval/top1 n"] == "2" and lr05["seeds"] == "0,1"
    assert lr05["status"] == "finished" and lr05["steps"] == "150/150" and lr05["sweep"] == "lenet_lr"
    # One seed finished, one stopped at step 100: the mean is over the finished one only; the status says so.
    assert lr1["status"] == "1/2 finished, 1 unfinished" and lr1["eval/top1 n"] == "1"
    assert lr1["steps"] == "100/150, 150/150" and float(lr1["eval/top1 mean"]) == pytest.approx(0.80)
    assert lr2["status"] == "0/2 finished" and lr2["eval/top1 mean"] == "" and lr2["steps"] == "0/150"
    assert int(lr05["params"]) == 61_706 and int(lr05["macs"]) == 416_520 and lr05["resolution"] == "32"
    # The differing config keys are columns (the lr, the model); the seed has its own column.
    assert lr05["optimizer.base_lr"] == "0.05" and loose["model.name"] == "resnet20" and "seed" not in rows[
        "loose_run"]
    assert loose["sweep"] == "" and loose["status"] == "finished" and float(loose["eval/top1 mean"]) == 0.9
    assert float(loose["train time (s)"]) == pytest.approx(0.5 * final_step)
    md = (out / "results.md").read_text()
    assert "| 000_base_lr0.05 | lenet_lr | finished | 150/150 | 0,1 | 61,706 |" in md
    assert "72.00 ± 2.83 (n=2)" in md and "80.00 (n=1)" in md
    assert (out / "runs.png").stat().st_size > 10_000


def test_runs_plot_marks_unfinished_points_hollow_and_takes_any_x_axis(lenet_study):
    records = results.load_results([lenet_study])
    points = results.group_points(records)
    fig, shown = results.runs_figure(points, axis="optimizer.base_lr")
    by_label = {p.label: p for p in shown}
    # lr 0.2 has no eval at all (not plotted); lr 0.1 has one finished seed and one stopped: hollow, at the mean of
    # what its runs logged; lr 0.05 finished, with its seed spread as the error bar.
    assert set(by_label) == {"base_lr=0.05", "base_lr=0.1"}  # labelled by the swept value
    assert by_label["base_lr=0.1"].hollow and by_label["base_lr=0.1"].y == pytest.approx(70.0)
    assert not by_label["base_lr=0.05"].hollow and by_label["base_lr=0.05"].yerr == pytest.approx(2.828, 1e-3)
    assert [p.x for p in shown] == [0.05, 0.1]  # the x axis is the learning rate, not MACs
    ax = fig.axes[0]
    faces = {line.get_xdata()[0]: line.get_markerfacecolor() for line in ax.lines if line.get_marker() == "o"}
    assert faces[0.1] == "none" and faces[0.05] != "none"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "unfinished (last eval)" in legend and "best: base_lr=0.05" in legend  # the hollow point is not best
    for text in ax.texts:  # labels stay inside the figure: none starts right of the axes' right edge
        assert text.get_window_extent().x0 < ax.get_window_extent().x1
    with pytest.raises(ValueError, match="--x model.name: run .* has no numeric value"):
        results.runs_figure(points, axis="model.name")


def test_sweep_summary_marks_seeds_and_pending(lenet_study):
    out = sweep_tool.run_sweep(LENET_SWEEP, lenet_study, SHORT, summary_only=True, check=False, log=lambda _: None)
    assert [r.status for r in out["records"]] == ["finished", "finished", "finished", "unfinished", "pending",
                                                   "pending"]
    runs = _csv(lenet_study / "summary_runs.csv")
    assert [r["steps_done"] for r in runs] == ["150", "150", "150", "100", "0", "0"]
    assert (lenet_study / "summary.png").exists() and "72.00 ± 2.83 (n=2)" in (lenet_study / "summary.md").read_text()


# ---------------------------------------------------------------------------------------------------------------
# The study as a shell script and as a SLURM chain.


def _fake_python(tmp_path) -> pathlib.Path:
    path = tmp_path / "python"
    path.write_text(FAKE_PYTHON)
    path.chmod(0o755)
    return path


def test_shell_study_runs_search_plan_scale_and_summary(tmp_path):
    python = _fake_python(tmp_path)
    root = tmp_path / "compound"
    script = tmp_path / "study.sh"
    assert sweep_tool.main([SMALL_COMPOUND, "--workdir", str(root), "--seeds", "0,1", "--emit", "shell", "--out",
                            str(script), "--python", str(python), *SHORT]) == 0
    subprocess.run(["bash", "-n", str(script)], check=True)
    assert len((root / "plan" / "search.commands").read_text().splitlines()) == 4  # 2 points x 2 seeds
    assert not (root / "plan" / "scale.commands").exists()  # planned by the job between the stages

    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    steps = [line for line in done.stdout.splitlines() if line.startswith("== ")]
    assert steps == ["== search", "== plan-scale", "== scale", "== summary"]
    launched = (root / "launched.txt").read_text().split()
    assert len(launched) == 4 + 2
    scale = (root / "plan" / "scale.commands").read_text().splitlines()
    assert len(scale) == 2 and all("--config.model.alpha=1.4" in c and str(python) in c for c in scale)
    rows = {r["run"]: r for r in _csv(root / "summary.csv")}
    assert rows["scale/000_phi2_alpha1.4_beta1.2_gamma1_image_size32"]["status"] == "finished"
    assert float(rows["search/001_phi1_alpha1.4_beta1.2_gamma1_image_size32"]["eval/top1 mean"]) == pytest.approx(
        0.7005)
    assert (root / "summary.png").exists()
    plan = json.loads((root / "sweep.json").read_text())
    assert len(plan["runs"]) == 6 and plan["runs"][0]["config"]["model"]["name"] == "efficientnet_phi"


def test_plan_job_refuses_a_noisy_search_and_the_study_stops(tmp_path):
    root = tmp_path / "compound"
    sweep_tool.run_sweep(COMPOUND, root, SHORT, emit="shell", check=False, log=lambda _: None)
    for i, command in enumerate((root / "plan" / "search.commands").read_text().splitlines()):
        _finish(root, pathlib.Path(shlex.split(command)[5]).relative_to(root).as_posix(), 0.095 + 0.001 * (i % 7))
    code = sweep_tool.main([COMPOUND, "--workdir", str(root), "--plan", "scale", *SHORT])
    assert code == 1 and not (root / "plan" / "scale.commands").exists()


def test_slurm_chain_is_submitted_with_dependencies(tmp_path, monkeypatch):
    root = tmp_path / "compound"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    sbatch_log = tmp_path / "sbatch.log"
    (bin_dir / "sbatch").write_text(  # a stand-in: logs its arguments, answers job ids 101, 102, ...
        f'#!/bin/bash\necho "$@" >> {sbatch_log}\necho "$((100 + $(wc -l < {sbatch_log})));cluster"\n')
    (bin_dir / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    assert sweep_tool.main([COMPOUND, "--workdir", str(root), "--submit", "slurm", "--slurm-arg=--gres=gpu:1",
                            "--max-parallel", "4", *SHORT]) == 0
    slurm = root / "slurm"
    names = sorted(p.name for p in slurm.iterdir())
    assert names == ["00_search.sbatch", "01_plan-scale.sbatch", "02_scale.sbatch", "03_summary.sbatch", "submit.sh"]
    for name in names:
        subprocess.run(["bash", "-n", str(slurm / name)], check=True)
    calls = sbatch_log.read_text().splitlines()
    assert calls == ["--parsable 00_search.sbatch", "--parsable --dependency=afterok:101 01_plan-scale.sbatch",
                     "--parsable --dependency=afterok:102 02_scale.sbatch",
                     "--parsable --dependency=afterany:103 03_summary.sbatch"]
    search = (slurm / "00_search.sbatch").read_text()
    assert "#SBATCH --array=0-11%4" in search and "#SBATCH --gres=gpu:1" in search
    scale = (slurm / "02_scale.sbatch").read_text()
    assert "#SBATCH --array=0-5%4" in scale and "#SBATCH --kill-on-invalid-dep=yes" in scale
    assert "--plan scale" in (slurm / "01_plan-scale.sbatch").read_text()
    assert "--summary-only" in (slurm / "03_summary.sbatch").read_text()

    # Array task 4 of the search runs the fifth planned command; a task past the plan's end exits 0.
    def task(script: str, index: int) -> subprocess.CompletedProcess:
        text = (slurm / script).read_text().replace('eval "$command"', 'echo "RUN $command"')
        return subprocess.run(["bash", "-c", text], env={"SLURM_ARRAY_TASK_ID": str(index), "PATH": "/usr/bin:/bin"},
                              capture_output=True, text=True, check=True)

    fifth = (root / "plan" / "search.commands").read_text().splitlines()[4]
    assert task("00_search.sbatch", 4).stdout.strip().endswith(f"RUN {fifth}")
    (root / "plan" / "scale.commands").write_text("echo one\n")
    assert "nothing to do" in task("02_scale.sbatch", 3).stdout

    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no sbatch: the scripts are written, the error says where
    assert sweep_tool.main([COMPOUND, "--workdir", str(tmp_path / "b"), "--submit", "slurm", *SHORT]) == 1


def test_slurm_needs_the_size_of_later_stages(tmp_path):
    sweep = tmp_path / "unsized.py"
    sweep.write_text('from cnn_jax import sweeps\nBASE_CONFIG = "experiments/fashion_mnist/lenet5.py"\n'
                     'def get_stages():\n    return [sweeps.Stage("a", lambda p: [{"seed": 0}]),\n'
                     '            sweeps.Stage("b", lambda p: [{"seed": 1}])]\n')
    with pytest.raises(sweep_tool.PlanError, match=r"stage 'b' does not declare its number of runs"):
        sweep_tool.run_sweep(str(sweep), tmp_path / "out", emit="slurm", check=False, log=lambda _: None)


def test_export_copies_the_evidence_and_no_checkpoints(lenet_study, tmp_path):
    (lenet_study / "000_base_lr0.05_seed0" / "checkpoints" / "150").mkdir(parents=True)
    (lenet_study / "000_base_lr0.05_seed0" / "checkpoints" / "150" / "meta.json").write_text("{}")
    (lenet_study / "003_base_lr0.1_seed1" / "events.out.tfevents").write_text("")  # not evidence
    out = tmp_path / "docs"
    assert results.main(["export", str(lenet_study), str(out)]) == 0
    copied = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert copied == ["000_base_lr0.05_seed0/final_metrics.json", "001_base_lr0.05_seed1/final_metrics.json",
                      "002_base_lr0.1_seed0/final_metrics.json", "003_base_lr0.1_seed1/metrics.jsonl",
                      "plan/runs.commands", "sweep.json"]
    # The exported directory is a results directory: the same table comes out of it.
    assert [r.status for r in results.load_results([out])] == [r.status for r in results.load_results([lenet_study])]
    with pytest.raises(SystemExit):
        results.main(["export", str(tmp_path / "missing"), str(out)])
