"""Orbax checkpoints: asynchronous and atomic (orbax writes to a temporary directory and renames), the last N
kept, restored onto the current mesh, and verified.

Each checkpoint's metadata holds a fingerprint of the state it was saved from (two 32-bit checksums per array,
computed on the devices at save time); a restored state must reproduce it. A checkpoint that cannot be read, or
whose arrays do not match their fingerprint, is damaged: it is moved aside (``damaged_<step>_<time>``) with a
warning naming the cause (the first mismatching array) and the previous one is used. A checkpoint that is readable
but does not fit the state being restored (another model, another number of classes) is not damaged:
:class:`CheckpointMismatchError` names the first array whose shape differs and nothing is moved.

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
import jax.numpy as jnp
import orbax.checkpoint as ocp

# Upper bound on one asynchronous save, its writes and cross-process barriers included, when none is given. With
# several processes a peer that failed or died makes the others wait this long before they raise, so it is kept
# short; alone, a large state on slow storage only needs the writes to finish (orbax's default, 20 min).
MULTIPROCESS_TIMEOUT_S = 120
SINGLE_PROCESS_TIMEOUT_S = 1200


class CheckpointSaveError(RuntimeError):
    """A checkpoint save failed (on this process, or on a peer that this one then waited for in vain)."""


class CheckpointMismatchError(ValueError):
    """A readable checkpoint whose arrays do not fit the state being restored."""


def _checksums(tree: Any) -> Any:
    """Per leaf: the wrapping sum of its bit patterns as 32-bit words and the sum weighted by odd numbers (so a
    changed word always changes it, and a swap of two words does)."""

    def leaf_sums(x):
        x = jnp.ravel(x)
        if x.dtype == jnp.bool_:
            x = x.astype(jnp.uint8)
        unsigned = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32}.get(x.dtype.itemsize)
        if unsigned is None:  # 8-byte types (jax_enable_x64): two words each
            words = jax.lax.bitcast_convert_type(x, jnp.uint32).ravel()
        else:
            words = jax.lax.bitcast_convert_type(x, unsigned).astype(jnp.uint32)
        odd = 2 * jnp.arange(words.size, dtype=jnp.uint32) + 1
        return jnp.stack([jnp.sum(words, dtype=jnp.uint32), jnp.sum(words * odd, dtype=jnp.uint32)])

    return jax.tree_util.tree_map(leaf_sums, tree)


_checksums_jit = jax.jit(_checksums)


def fingerprint(state: Any) -> dict[str, str]:
    """``{array path: checksums}`` of ``state``, computed where its arrays live (one small transfer back)."""
    sums = jax.device_get(_checksums_jit(state))
    return {jax.tree_util.keystr(path): f"{int(a):08x}{int(b):08x}"
            for path, (a, b) in jax.tree_util.tree_flatten_with_path(sums)[0]}


def fingerprint_mismatch(state: Any, expected: dict[str, str]) -> str | None:
    """The first array of ``state`` whose checksums differ from ``expected`` (None when all match)."""
    actual = fingerprint(state)
    if set(actual) != set(expected):
        return f"the arrays differ from the fingerprinted ones ({sorted(set(actual) ^ set(expected))[:3]})"
    for name, value in actual.items():
        if value != expected[name]:
            return f"array {name} does not match its fingerprint (saved {expected[name]}, read {value})"
    return None


def _leaf_name(path: tuple) -> tuple[str, ...]:
    """A path as key names, whatever kind of pytree node (dict, dataclass, tuple) each step went through."""
    names = []
    for key in path:
        for attr in ("key", "name", "idx"):
            if hasattr(key, attr):
                names.append(str(getattr(key, attr)))
                break
        else:
            names.append(str(key))
    return tuple(names)


def shape_difference(saved: Any, wanted: Any) -> str | None:
    """The first array whose shape or dtype differs between two trees of arrays/``ShapeDtypeStruct``s/orbax
    metadata, or that only one of them has (None when they fit)."""
    def flat(tree):
        return {_leaf_name(path): (tuple(leaf.shape), str(jnp.dtype(leaf.dtype)))
                for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}

    saved, wanted = flat(saved), flat(wanted)
    # In the state's own order (step, params, batch_stats, opt_state, ...): the parameter that differs is named
    # rather than its optimizer slot.
    for name in [*wanted, *(name for name in saved if name not in wanted)]:
        shown = "/".join(name)
        if name not in saved:
            return f"{shown} {wanted[name][0]} is in the model but not in the checkpoint"
        if name not in wanted:
            return f"{shown} {saved[name][0]} is in the checkpoint but not in the model"
        if saved[name] != wanted[name]:
            (shape_a, dtype_a), (shape_b, dtype_b) = saved[name], wanted[name]
            return f"{shown} is {shape_a} {dtype_a} in the checkpoint, {shape_b} {dtype_b} in the model"
    return None


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
        """Starts saving ``step`` (asynchronously unless ``async_save=False``) with the state's fingerprint in its
        metadata; an earlier save's failure is raised here, as :class:`CheckpointSaveError`."""
        meta = meta | {"fingerprint": fingerprint(state)}
        with self._save_errors():
            self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                            meta=ocp.args.JsonSave(meta)), force=True)

    def check(self) -> None:
        """Raises :class:`CheckpointSaveError` now if an asynchronous save has failed (disk full, permissions),
        instead of at the next save."""
        if self.manager.is_saving_in_progress():
            return
        with self._save_errors():
            self.manager.wait_until_finished()  # returns at once, or raises the failed save's error

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
        """Restores the newest intact checkpoint onto the shardings of ``abstract_state``.

        ``abstract_state`` is a pytree of ``jax.ShapeDtypeStruct`` with ``sharding`` set (from ``jax.eval_shape``
        plus the current mesh), so a checkpoint written on another device count restores onto this one.
        A checkpoint that fails to load (truncated, corrupt) or does not match its fingerprint is moved aside with a
        warning, never loaded silently; one that loads but does not fit ``abstract_state`` raises
        :class:`CheckpointMismatchError` (nothing moved).
        """
        for step in sorted(self.manager.all_steps(), reverse=True):
            try:
                restored = self.manager.restore(step, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
            except Exception as error:  # orbax raises several types for damaged files
                if difference := self._misfit(step, abstract_state):
                    raise CheckpointMismatchError(
                        f"checkpoint {self.directory / str(step)} does not fit the state being restored: "
                        f"{difference}") from error
                self._move_aside(step, f"it could not be restored ({type(error).__name__}: {error})")
                continue
            if difference := shape_difference(restored["state"], abstract_state):  # restored in the saved shapes
                raise CheckpointMismatchError(
                    f"checkpoint {self.directory / str(step)} does not fit the state being restored: {difference}")
            expected = restored["meta"].get("fingerprint")
            if expected is not None and (mismatch := fingerprint_mismatch(restored["state"], expected)):
                self._move_aside(step, mismatch)
                continue
            return step, restored["state"], restored["meta"]
        return None

    def _misfit(self, step: int, abstract_state: Any) -> str | None:
        """How checkpoint ``step``'s arrays differ from ``abstract_state``'s, when its metadata can be read (None
        when they fit, or when even the metadata is unreadable: then the checkpoint is damaged)."""
        try:
            return shape_difference(self._state_metadata(step), abstract_state)
        except Exception:  # unreadable or incomplete metadata (its leaves lack shapes)
            return None

    def _move_aside(self, step: int, reason: str) -> None:
        damaged = self.directory / str(step)
        aside = self.directory / f"damaged_{step}_{int(time.time())}"
        logging.warning("skipping checkpoint %s: %s; moved to %s", damaged, reason, aside)
        # Moved aside, not deleted: nothing is lost, and the step can be written again.
        if jax.process_index() == 0:
            damaged.rename(aside)
        self.manager.reload()

    def _state_metadata(self, step: int) -> Any:
        metadata = ocp.StandardCheckpointer().metadata(self.directory / str(step) / "state")
        return getattr(getattr(metadata, "item_metadata", metadata), "tree", metadata)

    def read(self, step: int | None = None) -> tuple[dict, dict]:
        """The raw ``(state, meta)`` of checkpoint ``step`` (default: the latest), as nested dicts of arrays on this
        process's first device, whatever device count wrote it."""
        step = self._step(step)
        tree = self._state_metadata(step)
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
