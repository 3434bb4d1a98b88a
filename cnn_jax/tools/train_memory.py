"""Memory of a compiled training step, from XLA's buffer assignment (the step is compiled, never run).

Compares a boolean model option, e.g. DenseNet's rematerialisation::

    python -m cnn_jax.tools.train_memory densenet121 --batch 8 16 --resolution 224 --compare memory_efficient
    python -m cnn_jax.tools.train_memory densenet_bc100_k12 --num-classes 10 --batch 64 --resolution 32 \
        --compare memory_efficient

The step is the trainer's own (``cnn_jax.train.steps.make_train_step``: forward in train mode, cross-entropy,
gradients, BatchNorm statistics, the logged metrics, behind the non-finite guard) with plain SGD, the state donated.
``temp`` is XLA's scratch (the stored activations live there); ``total = argument + output + temp - alias`` bounds
what the step holds at once.
"""

from __future__ import annotations

import argparse
import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

import cnn_jax
from cnn_jax.reporting import describe_machine
from cnn_jax.runtime.startup import KEEP_REMAT_OPTIONS

MIB = 2**20


@dataclasses.dataclass(frozen=True)
class StepMemory:
    """Byte sizes from ``jax.stages.Compiled.memory_analysis()``."""

    argument_bytes: int
    output_bytes: int
    temp_bytes: int
    alias_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.argument_bytes + self.output_bytes + self.temp_bytes - self.alias_bytes


def train_step_memory(
    model: nn.Module,
    *,
    batch: int,
    resolution: int,
    in_channels: int = 3,
    learning_rate: float = 0.1,
    keep_remat: bool = True,
) -> StepMemory:
    """Compiles the trainer's step (``steps.make_train_step`` behind its non-finite guard, the state donated) for
    ``model`` on ``(batch, resolution, resolution, in_channels)`` images, with plain SGD (no optimizer state).

    ``keep_remat`` compiles with :data:`KEEP_REMAT_OPTIONS` on CPU, so rematerialisation survives as it does on
    GPU/TPU; ``False`` measures XLA:CPU's default pipeline.
    """
    from cnn_jax.config import base_config
    from cnn_jax.train import optim, steps

    config = base_config()
    config.optimizer.update(name="sgd", momentum=0.0, nesterov=False, weight_decay=0.0, schedule="constant",
                            warmup_epochs=0.0)
    lr_fn = optim.learning_rate_schedule(config.optimizer, learning_rate, 1, 1)
    tx = optim.make_optimizer(config.optimizer, lr_fn)
    images = jax.ShapeDtypeStruct((batch, resolution, resolution, in_channels), jnp.float32)
    labels = jax.ShapeDtypeStruct((batch,), jnp.int32)
    state = jax.eval_shape(steps.state_initializer(model, tx, images.shape), jax.random.key(0))
    step = steps.with_nonfinite_guard(steps.make_train_step(model, tx, config, lr_fn))
    first_bad = jax.ShapeDtypeStruct((), jnp.int32)
    lowered = jax.jit(step, donate_argnums=0).lower(state, first_bad, images, labels, jax.random.key(1))
    options = KEEP_REMAT_OPTIONS if keep_remat and jax.default_backend() == "cpu" else {}
    stats = lowered.compile(compiler_options=options).memory_analysis()
    if stats is None:
        raise RuntimeError(f"the {jax.default_backend()} backend gives no memory analysis of compiled programs")
    return StepMemory(
        argument_bytes=stats.argument_size_in_bytes,
        output_bytes=stats.output_size_in_bytes,
        temp_bytes=stats.temp_size_in_bytes,
        alias_bytes=stats.alias_size_in_bytes,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model")
    parser.add_argument("--batch", type=int, nargs="+", default=[8])
    parser.add_argument("--resolution", type=int, default=None, help="default: the model's training resolution")
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--compare", default=None, help="a boolean model field compiled off and on")
    parser.add_argument(
        "--cpu-default-pipeline",
        action="store_true",
        help="on CPU, compile with XLA's default passes, which undo rematerialisation (see KEEP_REMAT_OPTIONS)",
    )
    args = parser.parse_args(argv)

    resolution = args.resolution or cnn_jax.model_info(args.model).resolution
    in_channels = cnn_jax.model_info(args.model).in_channels
    settings = [{}] if args.compare is None else [{args.compare: False}, {args.compare: True}]
    pipeline = "XLA:CPU default passes" if args.cpu_default_pipeline else "remat barriers kept"
    print(f"# {describe_machine()}; {pipeline}")
    print("model | batch | resolution | option | argument MiB | output MiB | temp MiB | total MiB")
    for batch in args.batch:
        for overrides in settings:
            model = cnn_jax.create_model(args.model, num_classes=args.num_classes, **overrides)
            mem = train_step_memory(
                model,
                batch=batch,
                resolution=resolution,
                in_channels=in_channels,
                keep_remat=not args.cpu_default_pipeline,
            )
            option = ", ".join(f"{k}={v}" for k, v in overrides.items()) or "-"
            print(
                f"{args.model} | {batch} | {resolution} | {option} | {mem.argument_bytes / MIB:.1f} | "
                f"{mem.output_bytes / MIB:.1f} | {mem.temp_bytes / MIB:.1f} | {mem.total_bytes / MIB:.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
