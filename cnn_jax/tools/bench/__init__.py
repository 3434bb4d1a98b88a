"""Train-step and inference throughput of our models against peer frameworks (Keras 3 on JAX, PyTorch eager),
measured in one process on the same synthetic batch::

    python -m cnn_jax.tools.bench --model resnet50 --batch 32 --resolution 224 [--dtype bfloat16] \\
        [--peers keras,torch] [--mode train,infer] [--windows 5 --steps 1] [--plain] [--variant NAME:K=V,...]

``ours`` is the trainer's own step (``cnn_jax.train.steps``, state and compiler options as ``train_and_evaluate``
builds them); ``keras`` the ``keras.applications`` model through Keras's own train step; ``torch`` torchvision's
model (or the CIFAR twins of :mod:`cnn_jax.tools.torch_twins`). ``--plain`` / ``--xla-convs`` / ``--variant`` add
our model in other formulations to A/B in the same run; ``--first-step-runs N`` times launch-to-first-step in fresh
processes. The table: first step and compile seconds, images/s (median of interleaved windows, with spread), peak
memory of the compiled program, achieved FLOP/s against this host's measured matmul peak. How each figure is
measured, and the figures: BENCHMARKS.md ("How the figures are measured"). Like ``launch.py``, the tool
re-executes itself on tcmalloc when installed (``--malloc``).

Modules: ``peers`` (the contenders), ``measure`` (timing), ``cli`` (the command line and tables).
"""

from cnn_jax.tools.bench.cli import main
from cnn_jax.tools.bench.measure import (
    WARM_CACHE,
    FirstStep,
    Result,
    first_step_in_fresh_processes,
    matmul_peak_flops,
    measure,
    parse_variant,
)
from cnn_jax.tools.bench.peers import (
    DTYPES,
    MODES,
    NUM_CLASSES,
    PEERS,
    Contender,
    Peer,
    keras_peer,
    ours,
    synthetic_batch,
    task,
    torch_peer,
)

__all__ = ["DTYPES", "MODES", "NUM_CLASSES", "PEERS", "WARM_CACHE", "Contender", "FirstStep", "Peer", "Result",
           "first_step_in_fresh_processes", "keras_peer", "main",
           "matmul_peak_flops", "measure", "ours", "parse_variant", "synthetic_batch", "task", "torch_peer"]
