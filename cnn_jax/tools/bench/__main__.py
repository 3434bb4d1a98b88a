"""``python -m cnn_jax.tools.bench``: as ``launch.py``, the process re-executes itself on tcmalloc where installed
(``cnn_jax.runtime.allocator``), so what is measured runs on the trainer's allocator."""

import sys

from cnn_jax.runtime import allocator

allocator.reexec_with_tcmalloc(allocator.mode_from_argv(sys.argv))

from cnn_jax.tools.bench.cli import main  # noqa: E402

main()
