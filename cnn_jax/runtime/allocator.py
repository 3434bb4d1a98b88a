"""The process's memory allocator: tcmalloc instead of glibc's malloc on CPU hosts (standard library only).

XLA:CPU allocates each train step's temporaries afresh (~4 GiB for ResNet-50 at batch 32). glibc's malloc serves
allocations that large with ``mmap`` and returns them with ``munmap`` after every step, so each step page-faults its
temporaries in again, and the ``munmap`` (~0.25 s on the 2-core host) holds the address-space lock while the
training loop's thread needs it to fetch the next batch. tcmalloc keeps freed memory for reuse: ResNet-50 batch 32
trains ~15 % faster and no step stalls (BENCHMARKS.md, "The allocator"). By default tcmalloc still returns some
freed memory to the system every few large frees, and the next step faults those GiB in again (page zeroing: a
ResNet-50 step ran ~1.2x its median then); ``TCMALLOC_RELEASE_RATE=0`` keeps it, as a training process that
reuses the same buffers every step wants. The allocator is fixed when the process starts, so
:func:`reexec_with_tcmalloc` re-executes the interpreter once with ``LD_PRELOAD``; it is called by ``launch.py``
before anything heavy is imported, and by the benchmark tool.
"""

from __future__ import annotations

import ctypes.util
import os
import pathlib
import sys

MODES = ("auto", "tcmalloc", "system")
_LIBRARY_NAMES = ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4")
_SEARCH_DIRS = ("/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu",
                "/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib")
# The re-executed process's tcmalloc settings, unless the environment sets them: no report on stderr of every
# allocation above 1 GiB (XLA's step buffers are routinely that large), and freed memory kept for reuse.
_SETTINGS = {"TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD": str(1 << 50), "TCMALLOC_RELEASE_RATE": "0"}


def find_tcmalloc() -> str | None:
    """The path of an installed tcmalloc (Debian/Ubuntu: ``apt-get install libtcmalloc-minimal4``), or None."""
    for name in _LIBRARY_NAMES:
        for directory in _SEARCH_DIRS:
            if (path := pathlib.Path(directory) / name).is_file():
                return str(path)
    found = ctypes.util.find_library("tcmalloc_minimal") or ctypes.util.find_library("tcmalloc")
    return found if found and os.path.isabs(found) else None


def active_allocator() -> str:
    """``"tcmalloc"`` or ``"jemalloc"`` when one is mapped into this process, else ``"system"``."""
    try:
        maps = pathlib.Path("/proc/self/maps").read_text()
    except OSError:
        return "system"
    return next((name for name in ("tcmalloc", "jemalloc") if f"lib{name}" in maps), "system")


def mode_from_argv(argv: list[str]) -> str:
    """The ``--malloc=MODE`` / ``--malloc MODE`` of a raw command line (default ``auto``), read before the
    program's own flag parser runs, which defines the same flag for its ``--help``."""
    for i, arg in enumerate(argv):
        if arg.startswith("--malloc="):
            return arg.split("=", 1)[1]
        if arg == "--malloc" and i + 1 < len(argv):
            return argv[i + 1]
    return "auto"


def reexec_with_tcmalloc(mode: str = "auto") -> None:
    """Replaces this process by the same command running on tcmalloc, unless it already does.

    ``mode``: ``auto`` (tcmalloc when installed, else stay on the system allocator), ``tcmalloc`` (required: a
    clear error when it is not installed), ``system`` (do nothing). Returns only when nothing is to be done.
    """
    if mode not in MODES:
        raise ValueError(f"allocator {mode!r}; expected one of {', '.join(MODES)}")
    preloaded = os.environ.get("LD_PRELOAD", "")
    if mode == "system" or "malloc" in preloaded or active_allocator() != "system":
        return  # chosen already (also the re-executed process itself: its LD_PRELOAD names the library)
    library = find_tcmalloc()
    if library is None:
        if mode == "tcmalloc":
            raise FileNotFoundError("allocator 'tcmalloc': no libtcmalloc_minimal.so.4 or libtcmalloc.so.4 in "
                                    f"{', '.join(_SEARCH_DIRS)} or the linker's path; install it with "
                                    "`apt-get install libtcmalloc-minimal4`, or use the system allocator")
        return
    environment = {**_SETTINGS, **os.environ, "LD_PRELOAD": ":".join(filter(None, (library, preloaded)))}
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], environment)
