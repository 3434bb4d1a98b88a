"""The package as a user outside the checkout sees it (after the README's install command)."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

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
