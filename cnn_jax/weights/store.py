"""The on-disk format of one set of model variables (imported or exported weights).

A weights directory holds::

    DIR/variables/   orbax checkpoint of {"params": ..., "batch_stats": ...} (written atomically by orbax)
    DIR/meta.json    {"model": registry name, "overrides": create_model keyword arguments (num_classes,
                      in_channels, conventions), "source": original file, "format": source format,
                      "input": the input convention (``preprocessing``), ...}

so ``cnn_jax.create_model(meta["model"], **meta["overrides"]).apply(variables, images, train=False)`` runs it, and
:func:`load_model` returns that model with a ``preprocess`` function for raw uint8 RGB images.
``python -m cnn_jax.tools.import_weights`` writes it, the training loop fine-tunes from it
(``--config.train.init_from=DIR``) and ``python -m cnn_jax.tools.evaluate --checkpoints DIR`` evaluates it.
"""

from __future__ import annotations

import json
import os
import pathlib
import tempfile
from typing import Any, NamedTuple

import jax
import numpy as np

VARIABLES = "variables"
META = "meta.json"
REQUIRED_META = ("model", "overrides")
COLLECTIONS = ("params", "batch_stats")


class WeightsError(ValueError):
    """A weights directory is missing, incomplete or unreadable."""


def save_variables(directory: str | pathlib.Path, variables: dict, meta: dict) -> None:
    """Writes ``variables`` ({"params", "batch_stats"}) and ``meta`` to ``directory`` (replacing earlier ones).

    ``meta`` must hold at least ``model`` (a registry name) and ``overrides`` (a dict of ``create_model``
    arguments) and be JSON-serialisable. The checkpoint is written by orbax (to a temporary name, then renamed),
    ``meta.json`` by write-and-rename, so a reader never sees a half-written file.
    """
    import orbax.checkpoint as ocp

    directory = pathlib.Path(directory).absolute()
    missing = [key for key in REQUIRED_META if key not in meta]
    if missing:
        raise WeightsError(f"save_variables({directory}): meta lacks {missing}; expected at least {REQUIRED_META}")
    if not isinstance(meta["overrides"], dict):
        raise WeightsError(f"save_variables({directory}): meta['overrides'] must be a dict of create_model "
                           f"arguments; got {type(meta['overrides']).__name__}")
    unknown = sorted(set(variables) - set(COLLECTIONS))
    if unknown or "params" not in variables:
        raise WeightsError(f"save_variables({directory}): expected collections {COLLECTIONS} with 'params' present; "
                           f"got {sorted(variables)}")
    text = json.dumps(meta, indent=2, sort_keys=True)  # fails before anything is written if not serialisable
    # Empty collections (a model without BatchNorm) are not written: orbax stores no empty subtrees.
    tree = {key: jax.tree_util.tree_map(np.asarray, value) for key, value in variables.items() if value}
    directory.mkdir(parents=True, exist_ok=True)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(directory / VARIABLES, tree, force=True)
    checkpointer.wait_until_finished()
    checkpointer.close()
    with tempfile.NamedTemporaryFile("w", dir=directory, prefix=".meta.", suffix=".json", delete=False) as f:
        f.write(text + "\n")
    os.replace(f.name, directory / META)


def _expected() -> str:
    return (f"expected a weights directory with {VARIABLES}/ (orbax) and {META}, as "
            "cnn_jax.weights.save_variables or python -m cnn_jax.tools.import_weights writes")


def read_meta(directory: str | pathlib.Path) -> dict:
    """``meta.json`` of a weights directory (checked for the required keys), without reading the arrays."""
    directory = pathlib.Path(directory).absolute()
    if not directory.is_dir():
        raise WeightsError(f"{directory}: no such directory; {_expected()}")
    meta_path = directory / META
    if not meta_path.exists():
        raise WeightsError(f"{meta_path} is missing; {_expected()}")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise WeightsError(f"{meta_path}: not readable JSON ({error}); {_expected()}") from error
    missing = [key for key in REQUIRED_META if not isinstance(meta, dict) or key not in meta]
    if missing:
        raise WeightsError(f"{meta_path}: lacks {missing}; expected at least {list(REQUIRED_META)}")
    return meta


def read_convention(directory: str | pathlib.Path) -> Any:
    """The input convention (``preprocessing.InputConvention``) recorded with a weights directory, or None."""
    from cnn_jax.weights.preprocessing import InputConvention

    meta = read_meta(directory)
    return InputConvention.from_meta(meta["input"]) if "input" in meta else None


def load_variables(directory: str | pathlib.Path) -> tuple[dict, dict]:
    """Reads a directory written by :func:`save_variables`: ``({"params": ..., "batch_stats": ...}, meta)``.

    Arrays come back as host numpy arrays (``batch_stats`` is ``{}`` for models without BatchNorm). A missing
    or damaged directory raises :class:`WeightsError` naming the path and what was expected.
    """
    import orbax.checkpoint as ocp

    directory = pathlib.Path(directory).absolute()
    expected = _expected()
    if not directory.is_dir():
        raise WeightsError(f"{directory}: no such directory; {expected}")
    variables_path = directory / VARIABLES
    if not variables_path.exists():
        raise WeightsError(f"{variables_path} is missing; {expected}")
    meta = read_meta(directory)
    try:
        checkpointer = ocp.StandardCheckpointer()
        restored = checkpointer.restore(variables_path)
        checkpointer.close()
    except Exception as error:  # orbax raises several types (FileNotFoundError, ValueError, tensorstore errors)
        raise WeightsError(f"{variables_path}: could not restore the orbax checkpoint "
                           f"({type(error).__name__}: {error}); {expected}") from error
    if not isinstance(restored, dict) or "params" not in restored:
        keys = sorted(restored) if isinstance(restored, dict) else "-"
        raise WeightsError(f"{variables_path}: expected a tree {{'params': ..., 'batch_stats': ...}}; "
                           f"got {type(restored).__name__} with keys {keys}")
    variables = {key: jax.tree_util.tree_map(np.asarray, restored.get(key, {})) for key in COLLECTIONS}
    return variables, meta


class Pretrained(NamedTuple):
    """A weights directory ready to run: ``model.apply(variables, preprocess(uint8_images), train=False).logits``."""

    model: Any
    variables: dict
    meta: dict
    convention: Any  # preprocessing.InputConvention, or None for directories written without one

    def preprocess(self, images: Any) -> np.ndarray:
        """uint8 RGB ``(..., H, W, C)`` images (0..255) -> the float32 input these weights expect."""
        if self.convention is None:
            raise WeightsError(f"the weights of {self.meta.get('model')} from {self.meta.get('source')} record no "
                               "input convention (imported before it was recorded): import them again")
        return self.convention.preprocess(images)


def load_model(directory: str | pathlib.Path) -> Pretrained:
    """``(model, variables, meta, convention)`` of a weights directory: the registered model with its saved
    overrides, and the input convention its weights expect (``.preprocess(images)`` applies it)."""
    import cnn_jax
    from cnn_jax.weights.preprocessing import InputConvention

    variables, meta = load_variables(directory)
    model = cnn_jax.create_model(meta["model"], **meta["overrides"])
    convention = InputConvention.from_meta(meta["input"]) if "input" in meta else None
    return Pretrained(model, variables, meta, convention)
