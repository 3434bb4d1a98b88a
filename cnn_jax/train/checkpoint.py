"""Orbax checkpoints: asynchronous and atomic (orbax writes to a temporary directory and renames), the last N
kept, restored onto the current mesh, and a damaged latest checkpoint skipped with a warning.

Several processes (``jax.distributed``): every process calls every method in the same order, on one shared
directory; each process writes its share of the (replicated) arrays and its own array metadata, process 0 then
finalizes, and the steps are synchronised by named barriers in the coordination service. Orbax builds those names
from the step number only, so two managers saving the same step at once (the run's ``checkpoints`` and ``best``)
would meet at each other's barriers: process 0 then finalizes one checkpoint before process 1 has written it
("ArrayMetadata Store contains metadata from just one process") and the remaining barriers wait until their
timeout. Each :class:`Checkpointer` therefore has its own barrier prefix, its ``name``. A save that fails on one
process leaves the others waiting at those barriers; ``timeout_s`` bounds that wait, and the error raised names the
directory, the process and the cause.
"""

from __future__ import annotations

import contextlib
import logging
import pathlib
import time
from collections.abc import Iterator
from typing import Any

import jax
import orbax.checkpoint as ocp

# Upper bound on one asynchronous save, its writes and cross-process barriers included, when none is given. With
# several processes a peer that failed or died makes the others wait this long before they raise, so it is kept
# short; alone, a large state on slow storage only needs the writes to finish (orbax's default, 20 min).
MULTIPROCESS_TIMEOUT_S = 120
SINGLE_PROCESS_TIMEOUT_S = 1200


class CheckpointSaveError(RuntimeError):
    """A checkpoint save failed (on this process, or on a peer that this one then waited for in vain)."""


class Checkpointer:
    """Saves/restores ``{"state": train state pytree, "meta": json}`` under ``workdir/checkpoints``.

    ``name`` prefixes the barrier keys of this manager's saves; with several processes it must be the same on every
    process and differ between Checkpointers open at once. ``timeout_s`` bounds one asynchronous save including its
    cross-process barriers: past it the save raises instead of waiting for a peer that failed (None: 120 s with
    several processes, 1200 s with one).
    """

    def __init__(self, workdir: str | pathlib.Path, *, keep: int, async_save: bool = True, name: str = "checkpoints",
                 timeout_s: int | None = None):
        if timeout_s is None:
            timeout_s = MULTIPROCESS_TIMEOUT_S if jax.process_count() > 1 else SINGLE_PROCESS_TIMEOUT_S
        if timeout_s <= 0:
            raise ValueError(f"checkpoint timeout_s (train.checkpoint_timeout_s) must be a positive number of seconds, "
                             f"got {timeout_s}")
        self.directory = pathlib.Path(workdir).absolute() / "checkpoints"
        self.name, self.timeout_s = name, timeout_s
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, enable_async_checkpointing=async_save,
            async_options=ocp.options.AsyncOptions(timeout_secs=timeout_s),
            multiprocessing_options=ocp.options.MultiprocessingOptions(barrier_sync_key_prefix=name))
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "meta"))

    def save(self, step: int, state: Any, meta: dict) -> None:
        """Starts saving ``step`` (asynchronously unless ``async_save=False``); an earlier save's failure is raised
        here, as :class:`CheckpointSaveError`."""
        with self._save_errors():
            self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                            meta=ocp.args.JsonSave(meta)), force=True)

    def wait(self) -> None:
        with self._save_errors():
            self.manager.wait_until_finished()

    @contextlib.contextmanager
    def _save_errors(self) -> Iterator[None]:
        try:
            yield
        except Exception as error:
            message = (f"saving a checkpoint in {self.directory} failed on process {jax.process_index()} of "
                       f"{jax.process_count()}: {type(error).__name__}: {error}")
            if jax.process_count() > 1:
                # Orbax reports a peer's failure only as a barrier timeout: point at where the cause is.
                message += (f"\nEvery process waits at most {self.timeout_s} s (train.checkpoint_timeout_s) for the "
                            "others at orbax's barriers; a barrier timeout means another process failed or died "
                            "during the save, and its log names the cause.")
            raise CheckpointSaveError(message) from error

    def restore_latest(self, abstract_state: Any) -> tuple[int, Any, dict] | None:
        """Restores the newest readable checkpoint onto the shardings of ``abstract_state``.

        ``abstract_state`` is a pytree of ``jax.ShapeDtypeStruct`` with ``sharding`` set (from ``jax.eval_shape``
        plus the current mesh), so a checkpoint written on another device count restores onto this one.
        A checkpoint that fails to load (truncated, corrupt) is skipped with a warning, never loaded silently.
        """
        for step in sorted(self.manager.all_steps(), reverse=True):
            try:
                restored = self.manager.restore(step, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
            except Exception as error:  # orbax raises several types for damaged files
                damaged = self.directory / str(step)
                aside = self.directory / f"damaged_{step}_{int(time.time())}"
                logging.warning("skipping checkpoint %s: it could not be restored (%s: %s); moved to %s",
                                damaged, type(error).__name__, error, aside)
                # Moved aside, not deleted: nothing is lost, and the step can be written again.
                if jax.process_index() == 0:
                    damaged.rename(aside)
                self.manager.reload()
                continue
            return step, restored["state"], restored["meta"]
        return None

    def read(self, step: int | None = None) -> tuple[dict, dict]:
        """The raw ``(state, meta)`` of checkpoint ``step`` (default: the latest), as nested dicts of arrays on this
        process's first device, whatever device count wrote it."""
        step = self._step(step)
        path = self.directory / str(step) / "state"
        metadata = ocp.StandardCheckpointer().metadata(path)
        tree = getattr(getattr(metadata, "item_metadata", metadata), "tree", metadata)
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        target = jax.tree_util.tree_map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), tree)
        restored = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target),
                                                                      meta=ocp.args.JsonRestore()))
        return restored["state"], restored["meta"]

    def read_meta(self, step: int | None = None) -> dict:
        """The JSON metadata of checkpoint ``step`` (default: the latest) without reading its arrays."""
        step = self._step(step)
        return self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

    def _step(self, step: int | None) -> int:
        step = self.manager.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        return step

    def close(self) -> None:
        with self._save_errors():
            self.manager.wait_until_finished()
        self.manager.close()


def abstract_with_shardings(tree: Any, sharding: jax.sharding.Sharding) -> Any:
    """``jax.ShapeDtypeStruct``s of ``tree`` placed on ``sharding``."""
    return jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)
