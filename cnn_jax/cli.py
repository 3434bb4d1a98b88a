"""Console entry points (``pyproject.toml``): the trainer and the tools, installed as ``cnn-jax-*`` commands.

The trainer and the sweep tool train in their own process, so they choose its allocator first: they re-execute
themselves on tcmalloc when it is installed (``cnn_jax.runtime.allocator``), before JAX is imported.
"""

from __future__ import annotations

import sys


def train() -> None:
    """``cnn-jax-train`` (``python launch.py``): ``cnn_jax.launch``."""
    from cnn_jax.runtime import allocator

    allocator.reexec_with_tcmalloc(allocator.mode_from_argv(sys.argv))
    from cnn_jax import launch

    launch.run()


def sweep() -> None:
    """``cnn-jax-sweep`` (``python -m cnn_jax.tools.sweep``): its runs train in this process."""
    from cnn_jax.runtime import allocator

    allocator.reexec_with_tcmalloc()
    from cnn_jax.tools import sweep as sweep_tool

    sys.exit(sweep_tool.main())
