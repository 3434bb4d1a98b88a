"""Weight conversion from torchvision / timm / Keras checkpoints (``python -m cnn_jax.tools.import_weights``).

``layout``: the named tensor layout conversions; ``sources``: readers of the source files; ``mappings``: per-family
name tables and source conventions; ``convert``: the shape-checked conversion into a model's variables.
"""
