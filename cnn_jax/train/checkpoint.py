"""Orbax checkpoints: asynchronous and atomic (orbax writes to a temporary directory and renames), the last N
kept, restored onto the current mesh, and a damaged latest checkpoint skipped with a warning."""

from __future__ import annotations

import logging
import pathlib
import time
from typing import Any

import jax
import orbax.checkpoint as ocp


class Checkpointer:
    """Saves/restores ``{"state": train state pytree, "meta": json}`` under ``workdir/checkpoints``."""

    def __init__(self, workdir: str | pathlib.Path, *, keep: int, async_save: bool = True):
        self.directory = pathlib.Path(workdir).absolute() / "checkpoints"
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=async_save)
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "meta"))

    def save(self, step: int, state: Any, meta: dict) -> None:
        self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                        meta=ocp.args.JsonSave(meta)), force=True)

    def wait(self) -> None:
        self.manager.wait_until_finished()

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
        self.manager.wait_until_finished()
        self.manager.close()


def abstract_with_shardings(tree: Any, sharding: jax.sharding.Sharding) -> Any:
    """``jax.ShapeDtypeStruct``s of ``tree`` placed on ``sharding``."""
    return jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)
