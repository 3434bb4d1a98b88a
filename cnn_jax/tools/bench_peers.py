"""Training and inference throughput of our models against a peer implementation, measured in the same process.

The peer is the same architecture from ``keras.applications`` (Keras 3, JAX backend, ``weights=None``), so both
sides run through the same jax/XLA build on the same device::

    python -m cnn_jax.tools.bench_peers mobilenet_v2 efficientnet_b0 --batch 32 8 --resolution 224

Both sides run the same work, written the same way: a jitted, donated, stateless train step (forward in train
mode, softmax cross-entropy on logits, gradients, plain SGD update, BatchNorm statistics update; ours through
``model.apply``, Keras's through ``model.stateless_call`` + ``jax.grad``, as Keras's own JAX trainer does inside
``fit``), and a jitted eval-mode forward. Synthetic float32 data. Each case is compiled for both (``compile s`` is
the time to the first finished step, tracing included), warmed up, then timed in windows of ``--steps`` steps that
alternate between the two sides; images/s is the median over windows. ``ours/keras`` > 1 means we are faster.

Keras's ``EfficientNetB0`` trains with drop-connect 0.2 and top dropout 0.2, so ours gets ``drop_path_rate=0.2``
too (``PEERS``); Keras's ``MobileNetV2`` has no head dropout (ours: 0.2, as torchvision's), a negligible difference.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any, NamedTuple

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

import cnn_jax  # noqa: E402

# Our model name -> (keras.applications constructor, overrides that make our model do the same work).
PEERS: dict[str, tuple[str, dict[str, Any]]] = {
    "mobilenet_v2": ("MobileNetV2", {}),
    "efficientnet_b0": ("EfficientNetB0", {"drop_path_rate": 0.2}),
}
LEARNING_RATE = 0.01

Batch = tuple[jax.Array, jax.Array]


class Runner(NamedTuple):
    """``step(state, batch) -> (state, loss or logits)``; compiled on first use."""

    state: Any
    step: Callable[[Any, Batch], Any]


def _cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels).mean()


def _sgd(params: Any, grads: Any) -> Any:
    return jax.tree_util.tree_map(lambda p, g: p - LEARNING_RATE * g, params, grads)


def ours(name: str, batch: Batch, *, train: bool, num_classes: int = 1000) -> Runner:
    """Our registered model ``name`` with :data:`PEERS` overrides."""
    model = cnn_jax.create_model(name, num_classes=num_classes, **PEERS.get(name, ("", {}))[1])
    variables = jax.jit(lambda x: model.init(jax.random.key(0), x, train=False))(batch[0])

    def train_step(state, batch):
        variables, rng = state
        rng, dropout_rng = jax.random.split(rng)

        def loss_fn(params):
            out, new_state = model.apply({**variables, "params": params}, batch[0], train=True,
                                         rngs={"dropout": dropout_rng}, mutable=["batch_stats"])
            return _cross_entropy(out.logits, batch[1]), new_state

        (loss, new_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(variables["params"])
        return ({**variables, **new_state, "params": _sgd(variables["params"], grads)}, rng), loss

    def eval_step(state, batch):
        return state, model.apply(state[0], batch[0], train=False).logits

    step = train_step if train else eval_step
    return Runner((variables, jax.random.key(1)), jax.jit(step, donate_argnums=0 if train else ()))


def keras_peer(name: str, batch: Batch, *, train: bool, num_classes: int = 1000) -> Runner:
    """The ``keras.applications`` model of :data:`PEERS`, run statelessly (Keras's JAX-trainer pattern)."""
    import keras

    if keras.backend.backend() != "jax":
        raise RuntimeError(f"Keras runs on {keras.backend.backend()!r}; set KERAS_BACKEND=jax before importing it")
    resolution = batch[0].shape[1]
    model = getattr(keras.applications, PEERS[name][0])(
        weights=None, input_shape=(resolution, resolution, batch[0].shape[-1]), classes=num_classes,
        classifier_activation=None)
    state = ([v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables])

    def train_step(state, batch):
        trainable, non_trainable = state

        def loss_fn(trainable):
            logits, non_trainable_new = model.stateless_call(trainable, non_trainable, batch[0], training=True)
            return _cross_entropy(logits, batch[1]), non_trainable_new

        (loss, non_trainable), grads = jax.value_and_grad(loss_fn, has_aux=True)(trainable)
        return (_sgd(trainable, grads), non_trainable), loss

    def eval_step(state, batch):
        return state, model.stateless_call(*state, batch[0], training=False)[0]

    step = train_step if train else eval_step
    return Runner(state, jax.jit(step, donate_argnums=0 if train else ()))


FRAMEWORKS: dict[str, Callable[..., Runner]] = {"ours": ours, "keras": keras_peer}


def _run(runner: Runner, state: Any, batch: Batch, steps: int) -> tuple[Any, float]:
    out = None
    start = time.perf_counter()
    for _ in range(steps):
        state, out = runner.step(state, batch)
    jax.block_until_ready((state, out))
    return state, time.perf_counter() - start


def compare(name: str, *, batch_size: int, resolution: int, train: bool, steps: int, windows: int,
            warmup: int = 1, frameworks: tuple[str, ...] = ("ours", "keras")) -> dict[str, dict[str, float]]:
    """``{framework: {"compile_s", "images_per_s", "spread"}}`` for one model, batch size and mode; the timed
    windows alternate between frameworks so load changes hit both alike (``spread`` = (max - min) / median)."""
    key_images, key_labels = jax.random.split(jax.random.key(0))
    batch = (jax.random.normal(key_images, (batch_size, resolution, resolution, 3), jnp.float32),
             jax.random.randint(key_labels, (batch_size,), 0, 1000))
    runners, states, results = {}, {}, {}
    for fw in frameworks:
        runners[fw] = FRAMEWORKS[fw](name, batch, train=train)
        states[fw], compile_s = _run(runners[fw], runners[fw].state, batch, 1)
        states[fw], _ = _run(runners[fw], states[fw], batch, warmup)
        results[fw] = {"compile_s": compile_s}
    rates: dict[str, list[float]] = {fw: [] for fw in frameworks}
    for _ in range(windows):
        for fw in frameworks:
            states[fw], seconds = _run(runners[fw], states[fw], batch, steps)
            rates[fw].append(steps * batch_size / seconds)
    for fw in frameworks:
        median = statistics.median(rates[fw])
        results[fw].update(images_per_s=median, spread=(max(rates[fw]) - min(rates[fw])) / median)
    return results


def machine() -> str:
    """Device, host CPU and library versions."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    versions = f"jax {jax.__version__}"
    try:
        import flax
        import keras

        versions += f", flax {flax.__version__}, keras {keras.__version__} ({keras.backend.backend()})"
    except ImportError:
        pass
    device = jax.devices()[0]
    return f"{device.platform}:{device.device_kind}; {os.cpu_count()} x {cpu}; {versions}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="+", choices=sorted(PEERS))
    parser.add_argument("--batch", type=int, nargs="+", default=[32])
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--mode", nargs="+", choices=("train", "eval"), default=["train", "eval"])
    parser.add_argument("--steps", type=int, default=3, help="steps per timed window")
    parser.add_argument("--windows", type=int, default=5, help="timed windows per framework (median reported)")
    parser.add_argument("--only", choices=sorted(FRAMEWORKS), default=None, help="run one side only")
    args = parser.parse_args(argv)

    frameworks = (args.only,) if args.only else tuple(FRAMEWORKS)
    print("# command: python -m cnn_jax.tools.bench_peers " + " ".join(sys.argv[1:] if argv is None else argv))
    print(f"# {machine()}")
    print(f"# load average before: {os.getloadavg()[0]:.2f}")
    print("model | mode | batch | " + " | ".join(f"{fw} img/s (spread) | {fw} compile s" for fw in frameworks)
          + (" | ours/keras" if len(frameworks) == 2 else ""))
    for name in args.models:
        for mode in args.mode:
            for batch_size in args.batch:
                res = compare(name, batch_size=batch_size, resolution=args.resolution, train=mode == "train",
                              steps=args.steps, windows=args.windows, frameworks=frameworks)
                cells = [f"{res[fw]['images_per_s']:.1f} ({res[fw]['spread']:.0%}) | {res[fw]['compile_s']:.1f}"
                         for fw in frameworks]
                ratio = (f" | {res['ours']['images_per_s'] / res['keras']['images_per_s']:.2f}"
                         if len(frameworks) == 2 else "")
                print(f"{name} | {mode} | {batch_size} | " + " | ".join(cells) + ratio, flush=True)
    print(f"# load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
