"""Entry point: ``python launch.py --config experiments/<family>/<file>.py[:args] --workdir DIR [--config.k=v]``."""

import os
import sys

if __name__ == "__main__":  # the allocator is chosen when the process starts: before JAX is imported
    from cnn_jax import allocator

    allocator.reexec_with_tcmalloc(allocator.mode_from_argv(sys.argv))

import jax  # noqa: E402
from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from cnn_jax import allocator, parallel  # noqa: E402
from cnn_jax.train.loop import train_and_evaluate  # noqa: E402

config_flags.DEFINE_config_file("config", None, "Experiment config file (a .py returning a ConfigDict).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints and metrics; a run resumes from it.")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0, for multi-host runs.")
flags.DEFINE_integer("num_processes", None, "Number of processes in a multi-host run.")
flags.DEFINE_integer("process_id", None, "This process's index in a multi-host run.")
flags.DEFINE_string("compilation_cache_dir",
                    os.environ.get("JAX_COMPILATION_CACHE_DIR", os.path.expanduser("~/.cache/cnn_jax/xla")),
                    "JAX's persistent compilation cache: a relaunch (resume after preemption, a repeated config) "
                    "loads the compiled init and train step instead of compiling them again. Empty: off. "
                    "Multi-host: only process 0 writes it, so point every process at shared storage.")
flags.DEFINE_integer("compilation_cache_max_gib", 8, "Size of the compilation cache; least recently used "
                     "entries are evicted beyond it.")
flags.DEFINE_enum("malloc", "auto", list(allocator.MODES),
                  "Memory allocator: tcmalloc keeps XLA:CPU's per-step buffers instead of unmapping them after every "
                  "step (ResNet-50 on CPU ~15 % faster, BENCHMARKS.md). auto: tcmalloc when installed "
                  "(libtcmalloc-minimal4); the process re-executes itself once to load it.")
flags.mark_flags_as_required(["config", "workdir"])
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # orbax logs every save step at INFO; progress lines are printed
    # JAX also reads $JAX_COMPILATION_CACHE_DIR itself: set (or clear) the option explicitly either way.
    jax.config.update("jax_compilation_cache_dir", FLAGS.compilation_cache_dir or None)
    jax.config.update("jax_enable_compilation_cache", bool(FLAGS.compilation_cache_dir))
    jax.config.update("jax_compilation_cache_max_size", FLAGS.compilation_cache_max_gib * 2**30)
    parallel.initialize_distributed(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    if jax.process_index() == 0:
        print(f"allocator: {allocator.active_allocator()} (--malloc={FLAGS.malloc})", flush=True)
    train_and_evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
    app.run(main)
