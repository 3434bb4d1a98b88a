"""Sweep files (``python -m cnn_jax.tools.sweep experiments/sweeps/<file>.py``) and their shared scaling grid."""
