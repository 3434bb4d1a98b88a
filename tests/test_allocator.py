"""cnn_jax.allocator: the process re-executes itself on tcmalloc (launch.py, the benchmarks), or says why not."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cnn_jax import allocator

REPORT = "from cnn_jax import allocator; allocator.reexec_with_tcmalloc({mode!r}); print(allocator.active_allocator())"


def _run(mode: str, **env) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"} | env
    return subprocess.run([sys.executable, "-c", REPORT.format(mode=mode)], env=environment, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.skipif(allocator.find_tcmalloc() is None,
                    reason="libtcmalloc-minimal4 is not installed (.ci/run installs it)")
def test_auto_reexecutes_on_tcmalloc_once_and_system_stays():
    auto = _run("auto")
    assert auto.returncode == 0 and auto.stdout.split() == ["tcmalloc"], auto.stderr
    assert "large alloc" not in auto.stderr
    system = _run("system")
    assert system.returncode == 0 and system.stdout.split() == ["system"], system.stderr


def test_required_tcmalloc_that_is_missing_names_the_package(monkeypatch):
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    monkeypatch.setattr(allocator, "find_tcmalloc", lambda: None)
    monkeypatch.setattr(allocator, "active_allocator", lambda: "system")
    with pytest.raises(FileNotFoundError, match="apt-get install libtcmalloc-minimal4"):
        allocator.reexec_with_tcmalloc("tcmalloc")
    allocator.reexec_with_tcmalloc("auto")  # not installed: stays on the system allocator, no error
    with pytest.raises(ValueError, match="allocator 'jemalloc'; expected one of auto, tcmalloc, system"):
        allocator.reexec_with_tcmalloc("jemalloc")


def test_mode_is_read_from_the_raw_command_line():
    assert allocator.mode_from_argv(["launch.py", "--config", "c.py", "--malloc=system"]) == "system"
    assert allocator.mode_from_argv(["-m", "cnn_jax.tools.bench", "--malloc", "tcmalloc", "--model", "x"]) == "tcmalloc"
    assert allocator.mode_from_argv(["launch.py", "--config", "c.py"]) == "auto"
