"""The package as a user outside the checkout sees it (after the README's install command)."""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess
import sys
import tomllib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_a_script_outside_the_checkout_imports_cnn_jax(tmp_path):
    script = tmp_path / "scale.py"
    script.write_text("import pathlib, cnn_jax\n"
                      "scale = cnn_jax.compound_scale(2.0, alpha=1.2, beta=1.1, gamma=1.15)\n"
                      "print(pathlib.Path(cnn_jax.__file__).resolve().parent, round(scale.depth, 4), "
                      "cnn_jax.efficientnet_phi_resolution(2.0, 1.15))\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"install the package (pip install -e .): {done.stderr[-2000:]}"
    where, depth, resolution = done.stdout.split()
    assert pathlib.Path(where) == REPO / "cnn_jax"  # this checkout, installed editable
    assert float(depth) == 1.44 and int(resolution) == round(224 * 1.15**2)


ENTRY_POINTS = ("cnn-jax-train", "cnn-jax-sweep", "cnn-jax-report", "cnn-jax-summary", "cnn-jax-import-weights",
                "cnn-jax-export-weights",
                "cnn-jax-evaluate", "cnn-jax-results")


def _requirement_ranges(lines) -> dict[str, str]:
    """``{name: specifier and marker}`` of requirement lines, comments and spaces dropped."""
    ranges = {}
    for line in lines:
        line = line.split("#")[0].replace(" ", "").replace('"', "'")
        if line:
            name = re.split(r"[<>=!;]", line, maxsplit=1)[0].lower().replace("_", "-")
            ranges[name] = line[len(name):]
    return ranges


def test_pyproject_declares_the_ranges_of_requirements_txt():
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    required = (REPO / "requirements.txt").read_text().splitlines()
    assert _requirement_ranges(declared) == _requirement_ranges(required)


@pytest.mark.slow
def test_the_wheel_installs_outside_the_checkout_and_its_commands_run(tmp_path):
    """A wheel of the package in a fresh virtual environment (the dependencies seen from this one): every entry
    point answers --help, and two real commands run from a directory outside the checkout."""
    source = tmp_path / "source"  # a copy: setuptools builds in the source tree (build/, *.egg-info)
    shutil.copytree(REPO / "cnn_jax", source / "cnn_jax", ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    shutil.copy(REPO / "pyproject.toml", source)
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(wheels), str(source)], check=True, capture_output=True, timeout=300)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=120)
    (wheel,) = wheels.glob("cnn_jax-*.whl")
    subprocess.run([venv / "bin" / "python", "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True,
                   capture_output=True, timeout=300)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"JAX_PLATFORMS": "cpu"}
    outside = tmp_path / "elsewhere"
    outside.mkdir()

    def run(*args):
        done = subprocess.run([str(venv / "bin" / args[0]), *args[1:]], cwd=outside, env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, f"{args}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
        return done.stdout

    where = run("python", "-c", "import cnn_jax; print(cnn_jax.__file__)")
    assert where.startswith(str(venv)), where  # the wheel's package, not this checkout's
    for command in ENTRY_POINTS:
        assert "usage" in run(command, "--help").lower(), command
    assert "61,706" in run("cnn-jax-summary", "lenet5", "--num-classes", "10", "--resolution", "32")
    report = run("cnn-jax-train", "--config", str(REPO / "experiments/fashion_mnist/lenet5.py"), "--dry_run")
    assert "lenet5" in report and "61,706" in report, report
