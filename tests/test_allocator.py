"""cnn_jax.runtime.allocator: the process re-executes itself on tcmalloc (launch.py, the benchmarks), or says why
not."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cnn_jax.runtime import allocator

REPORT = ("from cnn_jax.runtime import allocator; allocator.reexec_with_tcmalloc({mode!r}); "
          "print(allocator.active_allocator())")


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


# Frees a 256 MiB block (and some small ones) and allocates it again, as a train step does with its temporaries:
# the page faults of each round, after the re-exec.
REFAULTS = """
import ctypes, resource
from cnn_jax.runtime import allocator
allocator.reexec_with_tcmalloc("tcmalloc")
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
faults = []
for _ in range(8):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = libc.malloc(256 << 20)
    ctypes.memset(block, 1, 256 << 20)
    small = [libc.malloc(64 << 10) for _ in range(50)]
    for pointer in [block, *small]:
        libc.free(pointer)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(*faults)
"""


@pytest.mark.skipif(allocator.find_tcmalloc() is None,
                    reason="libtcmalloc-minimal4 is not installed (.ci/run installs it)")
def test_freed_step_memory_is_kept_for_the_next_step():
    """tcmalloc's default release rate hands a freed block back every few rounds (faulted in again: ~65k page
    faults); the re-executed process keeps it."""
    environment = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "TCMALLOC_RELEASE_RATE")}
    run = subprocess.run([sys.executable, "-c", REFAULTS], env=environment, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    first, *later = map(int, run.stdout.split())
    assert first > 60_000  # 256 MiB of 4 KiB pages
    assert max(later) < first // 20, (first, later)


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
