"""The trainer's command line, ``python launch.py`` or ``cnn-jax-train``:
``--config experiments/<family>/<file>.py[:args] --workdir DIR [--config.k=v]``. Run through
:func:`cnn_jax.cli.train`, which chooses the allocator before JAX is imported.

``--dry_run`` checks the config instead of training, in seconds and without compiling anything (``--workdir`` may
be left out; nothing is written): whether the dataset is found and its size, the batch split over the devices
(and ``--num_processes`` hosts like this one), the model's parameters and multiply-adds, the resolved schedule
and learning rate, and an estimate of the memory per device (``cnn_jax.train.dry_run``). It prints the report
and exits 0 when every check passes, 1 with each problem named (config key, value, what was expected) otherwise.
Values no run could use (``cnn_jax.config.validate``: a batch of 0, an unknown model argument) end it before any
check, as they end a run.

Exit statuses: 0 the run finished (or stopped at ``train.stop_after_steps``); 1 it failed (a non-finite loss, a
checkpoint that could not be saved: the cause is the last line); 2 it could not start (a config value, a workdir
held by another run, checkpoints of another config: one line, no traceback); 75 it was preempted (SIGTERM: every
process saved the same step; relaunch to resume).
"""

import os
import shlex
import sys
import threading
import time

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from cnn_jax.config import ConfigError, load_config, parse_value, validate
from cnn_jax.runtime import allocator, parallel
from cnn_jax.train.checkpoint import CheckpointMismatchError, CheckpointSaveError
from cnn_jax.train.dry_run import dry_run
from cnn_jax.train.loop import RunPreempted, TrainingDiverged, train_and_evaluate
from cnn_jax.train.metrics import record_launch
from cnn_jax.train.workdir import WorkdirLockedError

USAGE = ("cnn-jax-train (or python launch.py) --config FILE.py[:ARG] --workdir DIR [--config.KEY=VALUE ...] "
         "[--dry_run]")
COMMAND_LINE = tuple(sys.argv)  # as given: parse_flags takes model arguments out of sys.argv

# Exit statuses (README "Checkpoints and failures"): a scheduler requeues EXIT_PREEMPTED (sysexits' EX_TEMPFAIL).
EXIT_FINISHED, EXIT_FAILED, EXIT_USAGE, EXIT_PREEMPTED = 0, 1, 2, 75

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
    """absl's flag parser, with two additions.

    ``--config.model.KEY=VALUE`` for a key the config file does not set is a model override (``create_model``'s
    arguments: ``drop_path_rate``, ``width_mult`` ...; checked against the model by :func:`cnn_jax.config.validate`):
    the config is locked, so such flags are taken out before absl parses the rest and added to ``config.model``
    after (VALUE read by ``cnn_jax.config.parse_value``: a Python literal, else a string). Any other
    ``--config.KEY`` the config lacks ends in one line naming the argument (ml_collections raises a KeyError or
    AttributeError from deep inside absl's parser).
    """
    if any(arg in ("-h", "--help", "--helpshort") for arg in argv[1:]):  # absl's help exits 1 and omits our flags
        print(f"usage: {USAGE}\n\n{__doc__}\n{FLAGS.module_help(sys.modules[__name__])}")
        sys.exit(EXIT_FINISHED)
    argv, model_arguments = _take_model_arguments(argv)
    if model_arguments:  # config_flags finds the --config.* flags in sys.argv itself
        sys.argv[:] = [arg for arg in sys.argv if arg in argv]
    try:
        remaining = app.parse_flags_with_usage(argv)
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
        fail(f"Flags parsing error: {culprits[0]}: the config has no key {missing!r}"
             f"{'; ' + suggestion.lower() if suggestion else ''} (configs are locked: cnn_jax/config.py lists the "
             "keys; extra model.KEY=VALUE flags are model arguments)")
    if model_arguments:
        with FLAGS.config.unlocked():
            for key, value in model_arguments.items():
                FLAGS.config.model[key] = value
    return remaining


def _take_model_arguments(argv: list[str]) -> tuple[list[str], dict[str, object]]:
    """``argv`` without the ``--config.model.KEY=VALUE`` flags whose KEY the config file lacks, and those."""
    specs = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == "--config"]
    specs += [arg.split("=", 1)[1] for arg in argv if arg.startswith("--config=")]
    try:
        model_config = load_config(specs[-1]).model
    except Exception:  # no or a broken config file: absl's parser reports it
        return argv, {}
    kept, taken = [], {}
    for arg in argv:
        key, has_value, value = arg.removeprefix("--config.model.").partition("=")
        if arg.startswith("--config.model.") and has_value and "." not in key and key not in model_config:
            taken[key] = parse_value(value)
        else:
            kept.append(arg)
    return kept, taken


def fail(message: str, status: int = EXIT_USAGE) -> None:
    """Ends the process with ``message`` as one line on stderr (the last line of the output), no traceback.

    Background threads still running (orbax's writes of a checkpoint whose save failed) are given up to 60 s to
    end first: at interpreter exit they would fail and print after the message.
    """
    deadline = time.time() + 60
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join(timeout=max(0.0, deadline - time.time()))
    print("FATAL " + " ".join(message.split()), file=sys.stderr, flush=True)
    sys.exit(status)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # orbax logs every save step at INFO; progress lines are printed
    try:  # values the trainer (and the dry run's arithmetic) cannot use: one line, before anything is loaded
        validate(FLAGS.config)
    except ConfigError as error:
        fail(f"config error: {error}")
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
        record_launch(FLAGS.workdir, "python " + shlex.join(COMMAND_LINE))
    try:
        train_and_evaluate(FLAGS.config, FLAGS.workdir)
    except (ConfigError, WorkdirLockedError, CheckpointMismatchError) as error:
        fail(str(error))
    except RunPreempted as error:
        fail(str(error), EXIT_PREEMPTED)
    except (TrainingDiverged, CheckpointSaveError) as error:
        fail(str(error), EXIT_FAILED)
    return EXIT_FINISHED


def run() -> None:
    """Parses the command line and trains (exits with one of the statuses above)."""
    app.run(main, flags_parser=parse_flags)
