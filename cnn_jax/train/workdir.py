"""One workdir, one run: an exclusive lock on ``WORKDIR/run.lock``, and the config a run saved there.

The lock is ``fcntl.flock`` on a file in the workdir, held for the whole run by process 0 (only it writes the
metrics and the run's files; every process writes its share of each checkpoint under the same lock). The kernel
releases it when the process exits, however it exits, so a crashed or SIGKILLed run leaves no stale lock. The file
holds the holder's host, process id and start time for the message a second launch gets. On shared file systems
``flock`` is only as good as the file system's lock support: NFSv4 and Lustre (with ``flock`` mounts) honour it
across hosts, local file systems across processes of one host.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import pathlib
import socket
import time
from collections.abc import Iterator
from typing import Any

from cnn_jax.config import CONFIG_FILE

LOCK_FILE = "run.lock"


class WorkdirLockedError(RuntimeError):
    """Another run holds the workdir."""


@contextlib.contextmanager
def workdir_lock(workdir: str | pathlib.Path) -> Iterator[None]:
    """Holds ``workdir``'s run lock for the block; raises :class:`WorkdirLockedError` at once if another process
    holds it, naming that process (host, pid, since when)."""
    path = pathlib.Path(workdir) / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "a process that has not yet written"
            raise WorkdirLockedError(
                f"workdir {pathlib.Path(workdir).absolute()} is in use by another run ({holder}); one workdir holds "
                "one run: wait for that run to end or stop it, or use another --workdir") from None
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        holder = f"host {socket.gethostname()}, pid {os.getpid()}, since {since}"
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder.encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def read_saved_config(workdir: str | pathlib.Path) -> dict | None:
    """The config a previous launch saved in ``workdir`` (None if there is none or it is unreadable)."""
    try:
        return json.loads((pathlib.Path(workdir) / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return None


def config_differences(saved: dict, current: dict, prefix: str = "") -> list[str]:
    """``key: saved -> current`` for every leaf that differs between two config dicts (``config.to_json()``)."""
    differences = []
    for key in sorted(set(saved) | set(current), key=str):
        a, b = saved.get(key, _MISSING), current.get(key, _MISSING)
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            differences += config_differences(a, b, name + ".")
        elif a != b:
            differences.append(f"{name}: {_show(a)} -> {_show(b)}")
    return differences


class _Missing:
    def __repr__(self) -> str:
        return "(absent)"


_MISSING: Any = _Missing()


def _show(value: Any) -> str:
    return repr(value) if value is _MISSING else json.dumps(value)
