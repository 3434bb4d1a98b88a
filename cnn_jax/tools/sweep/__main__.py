"""``python -m cnn_jax.tools.sweep``: the study's runs train in this process, so it runs on the allocator
``launch.py``'s runs get (``cnn_jax.runtime.allocator``): on glibc's malloc XLA:CPU trains them at about half the
speed (BENCHMARKS.md, "The allocator" and "Figures the code cites")."""

from cnn_jax.cli import sweep

sweep()
