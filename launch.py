"""Entry point: ``python launch.py --config experiments/<family>/<file>.py[:args] --workdir DIR [--config.k=v]``.

``--dry_run`` checks the config instead of training, in seconds and without compiling anything (``--workdir`` may
be left out; nothing is written): whether the dataset is found and its size, the batch split over the devices
(and ``--num_processes`` hosts like this one), the model's parameters and multiply-adds, the resolved schedule
and learning rate, and an estimate of the memory per device (``cnn_jax.train.dry_run``). It prints the report
and exits 0 when every check passes, 1 with each problem named (config key, value, what was expected) otherwise.
"""

import os
import shlex
import sys

if __name__ == "__main__":  # the allocator is chosen when the process starts: before JAX is imported
    from cnn_jax import allocator

    allocator.reexec_with_tcmalloc(allocator.mode_from_argv(sys.argv))

import jax  # noqa: E402
from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from cnn_jax import allocator, parallel  # noqa: E402
from cnn_jax.train.dry_run import dry_run  # noqa: E402
from cnn_jax.train.loop import train_and_evaluate  # noqa: E402
from cnn_jax.train.metrics import record_launch  # noqa: E402

config_flags.DEFINE_config_file("config", None, "Experiment config file (a .py returning a ConfigDict).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints and metrics; a run resumes from it. Required "
                    "unless --dry_run.")
flags.DEFINE_bool("dry_run", False, "Check the config (dataset, batch layout, model, schedule, memory estimate) "
                  "without compiling or training; exit 0 when every check passes, 1 otherwise.")
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
flags.mark_flag_as_required("config")
flags.register_multi_flags_validator(["workdir", "dry_run"], lambda f: f["workdir"] is not None or f["dry_run"],
                                     "--workdir is required (except with --dry_run)")
FLAGS = flags.FLAGS


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parser; a ``--config.key=value`` whose key the config lacks ends in one line naming the
    argument (ml_collections raises a KeyError or AttributeError from deep inside absl's parser)."""
    try:
        return app.parse_flags_with_usage(argv)
    except (AttributeError, KeyError) as error:
        cause = error
        while cause.args and isinstance(cause.args[0], KeyError):  # AttributeError(KeyError("'key'\nDid you..."))
            cause = cause.args[0]
        missing, _, suggestion = str(cause.args[0] if cause.args else "").partition("\n")
        missing = missing.strip("'\"")
        culprits = [arg for arg in argv[1:] if arg.startswith("--config.")
                    and missing in arg.partition("=")[0].split(".")[1:]]
        if not culprits:
            raise
        sys.exit(f"FATAL Flags parsing error: {culprits[0]}: the config has no key {missing!r}"
                 f"{'; ' + suggestion.lower() if suggestion else ''} (configs are locked: experiments/common.py "
                 "lists the keys)")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # orbax logs every save step at INFO; progress lines are printed
    if FLAGS.dry_run:  # one process checks the layout of all: as many devices on every host as on this one
        processes = FLAGS.num_processes or 1
        report = dry_run(FLAGS.config, devices=jax.local_device_count() * processes, processes=processes)
        print(report.format(), flush=True)
        return 0 if report.ok else 1
    # JAX also reads $JAX_COMPILATION_CACHE_DIR itself: set (or clear) the option explicitly either way.
    jax.config.update("jax_compilation_cache_dir", FLAGS.compilation_cache_dir or None)
    jax.config.update("jax_enable_compilation_cache", bool(FLAGS.compilation_cache_dir))
    jax.config.update("jax_compilation_cache_max_size", FLAGS.compilation_cache_max_gib * 2**30)
    parallel.initialize_distributed(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    if jax.process_index() == 0:
        print(f"allocator: {allocator.active_allocator()} (--malloc={FLAGS.malloc})", flush=True)
        record_launch(FLAGS.workdir, "python " + shlex.join(sys.argv))
    train_and_evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
