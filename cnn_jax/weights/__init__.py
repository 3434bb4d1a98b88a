"""Pretrained weights: their on-disk format, the importers from torchvision / timm / Keras checkpoints, and loading
them into a train state.

``store``: the format of one set of model variables (``save_variables``, ``load_variables``, ``load_model``,
``WeightsError``; re-exported here); ``sources``: readers of the source files; ``layout``: the named tensor layout
conversions; ``mappings``: per-family name tables and source conventions; ``convert``: the shape-checked conversion
into a model's variables (``python -m cnn_jax.tools.import_weights``); ``transfer``: a train state's variables
taken from a weights directory (``train.init_from``).
"""

from cnn_jax.weights.store import WeightsError, load_model, load_variables, save_variables

__all__ = ["WeightsError", "load_model", "load_variables", "save_variables"]
