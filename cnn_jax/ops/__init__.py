"""Native kernels called from XLA through ``jax.ffi`` (CPU only); see :mod:`cnn_jax.ops.onednn`."""
