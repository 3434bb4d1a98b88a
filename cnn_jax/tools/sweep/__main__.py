"""``python -m cnn_jax.tools.sweep``: the study's runs train in this process, so it runs on the allocator
``launch.py``'s runs get (``cnn_jax.runtime.allocator``); on glibc's malloc XLA:CPU trained them at about half the
images/s (440 vs 842 img/s, mbconv_scaling's baseline)."""

from cnn_jax.cli import sweep

sweep()
