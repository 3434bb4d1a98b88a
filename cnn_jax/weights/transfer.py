"""A train state's variables taken from a weights directory (``train.init_from``): fine-tuning from imported
weights."""

from __future__ import annotations

import logging
from typing import Any

import jax
import jax.numpy as jnp

from cnn_jax.weights.store import load_variables


def initial_variables(params: Any, batch_stats: Any, directory: str, num_classes: int) -> tuple[Any, Any]:
    """``params``/``batch_stats`` with every array that ``directory``'s imported weights provide in the same
    shape (``cnn_jax.weights``); a classifier of another size keeps its fresh initialisation, with a warning."""
    loaded, meta = load_variables(directory)
    loaded_classes = meta.get("overrides", {}).get("num_classes", 1000)
    skipped: list[str] = []

    def take(tree, source, kind):
        flat_source = {jax.tree_util.keystr(k): v for k, v in
                       jax.tree_util.tree_flatten_with_path(source.get(kind, {}))[0]}

        def pick(path, leaf):
            name = jax.tree_util.keystr(path)
            if name not in flat_source:
                raise ValueError(f"train.init_from={directory}: {kind}{name} {leaf.shape} of "
                                 f"{meta.get('model')!r} weights is missing; the weights do not fit this model")
            value = flat_source[name]
            if tuple(value.shape) != tuple(leaf.shape):
                refit = (value.shape[-1], leaf.shape[-1]) == (loaded_classes, num_classes)
                if refit and tuple(value.shape[:-1]) == tuple(leaf.shape[:-1]):
                    skipped.append(f"{kind}{name} {tuple(value.shape)} -> {tuple(leaf.shape)}")
                    return leaf
                raise ValueError(f"train.init_from={directory}: {kind}{name} has shape {tuple(value.shape)}, "
                                 f"the model expects {tuple(leaf.shape)}")
            return jnp.asarray(value, leaf.dtype)

        return jax.tree_util.tree_map_with_path(pick, tree)

    params, batch_stats = take(params, loaded, "params"), take(batch_stats, loaded, "batch_stats")
    if skipped:
        logging.warning("init_from %s: kept the fresh initialisation of %s (another number of classes)",
                        directory, ", ".join(skipped))
    return params, batch_stats
