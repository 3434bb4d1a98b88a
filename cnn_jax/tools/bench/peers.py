"""The contenders of the benchmark: our trainer's step, Keras 3 ``keras.applications`` on JAX and PyTorch eager
(torchvision or the CIFAR twins), each built on one synthetic batch and its first step taken."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "jax")  # before Keras is first imported

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import cnn_jax  # noqa: E402
from cnn_jax.ops import conv_ops  # noqa: E402
from cnn_jax.weights.references import import_torchvision  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Peer:
    """The same architecture elsewhere: ``keras.applications`` / ``torchvision.models`` constructor names, and
    overrides that make our model do the same work (e.g. EfficientNet-B0's drop-connect 0.2 in both peers)."""

    keras: str
    torchvision: str
    ours: dict[str, Any] = dataclasses.field(default_factory=dict)


PEERS: dict[str, Peer] = {
    "resnet18": Peer("", "resnet18"),  # no Keras application: torch only
    "resnet50": Peer("ResNet50", "resnet50"),
    "efficientnet_b0": Peer("EfficientNetB0", "efficientnet_b0", {"drop_path_rate": 0.2}),
    "mobilenet_v2": Peer("MobileNetV2", "mobilenet_v2"),
    "densenet121": Peer("DenseNet121", "densenet121"),
}


MODES = ("train", "infer")


DTYPES = ("float32", "bfloat16")


LEARNING_RATE = 0.01


MOMENTUM = 0.9


WEIGHT_DECAY = 1e-4


NUM_CLASSES = 1000


@dataclasses.dataclass
class Contender:
    """One framework's step on one batch; ``step()`` advances its own state, ``sync()`` waits for it, ``current()``
    returns ``(state, last output)`` (XLA contenders)."""

    name: str
    dtype: str  # the compute dtype it runs in
    step: Callable[[], None]
    sync: Callable[[], None]
    current: Callable[[], tuple[Any, Any]] = lambda: (None, None)
    first_step_s: float = float("nan")
    first_step_run_s: float = float("nan")  # the first step's own execution (part of first_step_s)
    compile_s: float = float("nan")
    peak_bytes: float = float("nan")
    count_flops: Callable[[], float] = lambda: float("nan")  # the step's flops, counted when the table needs them


def _compile(fn: Callable[..., Any], args: tuple, donate: bool, options: dict[str, Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    lowered = jax.jit(fn, donate_argnums=0 if donate else ()).lower(*args)
    compiled = lowered.compile(compiler_options=options or None)
    return compiled, time.perf_counter() - start


def _peak_bytes(compiled: Any) -> float:
    stats = compiled.memory_analysis()
    if stats is None:
        return float("nan")
    return float(stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes
                 - stats.alias_size_in_bytes)


def _flops(compiled: Any) -> float:
    """XLA's flop count of a compiled (or lowered) program; custom calls (oneDNN convolutions) count nothing."""
    cost = compiled.cost_analysis()
    if isinstance(cost, list | tuple):  # older JAX: one dict per device program
        cost = cost[0]
    return float((cost or {}).get("flops", float("nan")))


def _xla_contender(name: str, dtype: str, compiled: Any, compile_s: float, state: Any, inputs: tuple, *,
                   train: bool, started: float, count_flops: Callable[[], float] | None = None) -> Contender:
    """Runs the first step of ``compiled(state, *inputs)``: ``-> (state, out)`` with the state donated
    (``train``), else ``-> out`` with the state left alone. ``started``: when model construction began."""
    box = {"state": state, "out": None}

    def step():
        if train:
            box["state"], box["out"] = compiled(box["state"], *inputs)
        else:
            box["out"] = compiled(box["state"], *inputs)

    def sync():
        jax.block_until_ready((box["state"], box["out"]))

    step_started = time.perf_counter()
    step()
    sync()
    finished = time.perf_counter()
    return Contender(name, dtype, step, sync, lambda: (box["state"], box["out"]), first_step_s=finished - started,
                     first_step_run_s=finished - step_started, compile_s=compile_s,
                     peak_bytes=_peak_bytes(compiled), count_flops=count_flops or (lambda: _flops(compiled)))


def task(model_name: str) -> tuple[int, int]:
    """``(classes, input channels)`` the contenders of ``model_name`` are built for: the CIFAR-scale twins' 10-class
    task at the model's own channels, else ImageNet's 1000 classes on RGB."""
    from cnn_jax.tools import torch_twins

    if model_name in torch_twins.TWINS:
        return 10, cnn_jax.model_info(model_name).in_channels
    return NUM_CLASSES, 3


def synthetic_batch(batch: int, resolution: int, channels: int = 3,
                     classes: int = NUM_CLASSES) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    images = rng.standard_normal((batch, resolution, resolution, channels), dtype=np.float32)
    return images, rng.integers(0, classes, batch).astype(np.int32)


def ours(model_name: str, mode: str, images: np.ndarray, labels: np.ndarray, *, dtype: str = "float32",
         options: dict[str, Any] | None = None, name: str = "ours") -> Contender:
    """Our model through the trainer's own train step (``mode="train"``) or the jitted eval forward."""
    from cnn_jax.config import base_config, build_model
    from cnn_jax.runtime import startup
    from cnn_jax.train import optim, steps

    started = time.perf_counter()
    config = base_config()
    config.model.name = model_name
    config.model.num_classes = task(model_name)[0]
    config.model.dtype = dtype
    options = dict(options or {})
    overrides = {key.removeprefix("model."): options.pop(key) for key in list(options) if key.startswith("model.")}
    for key, value in (PEERS.get(model_name, Peer("", "")).ours | overrides).items():
        config.model[key] = value
    config.optimizer.update(name="sgd", momentum=MOMENTUM, nesterov=False, weight_decay=WEIGHT_DECAY,
                            schedule="constant", warmup_epochs=0.0)
    model = build_model(config)
    lr_fn = optim.learning_rate_schedule(config.optimizer, LEARNING_RATE, 1, 1)
    tx = optim.make_optimizer(config.optimizer, lr_fn)
    # The trainer compiles with these on CPU (config.train.compile_keep_remat); variants add to them.
    options = {**(startup.KEEP_REMAT_OPTIONS if config.train.compile_keep_remat and jax.default_backend() == "cpu"
                  else {}), **(options or {})}
    images, labels = jnp.asarray(images), jnp.asarray(labels)

    init_state = steps.state_initializer(model, tx, images[:1].shape)  # the trainer's state

    def infer(variables, images):
        return model.apply(variables, images, train=False).logits

    def variables(state):
        return {"params": state.params, "batch_stats": state.batch_stats}

    # As the trainer does: rbg init key, and the step compiled from the state's shapes while the state initialises.
    init_key = jax.random.key(0, impl="rbg")
    with startup.garbage_collection_paused():
        abstract = jax.eval_shape(init_state, init_key)
    if mode == "train":
        fn = steps.make_train_step(model, tx, config, lr_fn)  # the trainer's step, not a re-implementation
        inputs, arg, pick = (images, labels, jax.random.key(1)), abstract, lambda state: state
    else:
        fn, inputs, arg, pick = infer, (images,), variables(abstract), variables
    state, (compiled, compile_s) = startup.initialise_while_compiling(
        lambda: jax.block_until_ready(jax.jit(init_state)(init_key)),
        lambda: _compile(fn, (arg, *inputs), mode == "train", options))

    def count_textbook_flops() -> float:
        """XLA's count of the textbook program (the oneDNN custom calls are opaque to its count); lowered only when
        the table asks, so it delays no first step. A fresh function: jit's trace cache of ``fn`` holds the
        rewritten program, and the switch is not in its key."""
        with conv_ops.rewrites(False):
            return _flops(jax.jit(lambda *args: fn(*args)).lower(arg, *inputs))

    return _xla_contender(name, dtype, compiled, compile_s, pick(state), inputs, train=mode == "train",
                          started=started, count_flops=count_textbook_flops)


def keras_peer(model_name: str, mode: str, images: np.ndarray, labels: np.ndarray, *,
               dtype: str = "float32") -> Contender:
    """``keras.applications`` on the JAX backend: Keras's own ``train_step``, jitted and donated as ``fit`` does."""
    import keras

    if keras.backend.backend() != "jax":
        raise RuntimeError(f"Keras runs on {keras.backend.backend()!r}; set KERAS_BACKEND=jax before importing it")
    constructor = PEERS[model_name].keras if model_name in PEERS else ""
    if not constructor:
        raise ValueError(f"no Keras application for {model_name!r}; keras peers exist for "
                         f"{sorted(k for k, p in PEERS.items() if p.keras)}")
    started = time.perf_counter()
    keras.config.set_dtype_policy("mixed_bfloat16" if dtype == "bfloat16" else "float32")
    try:
        model = getattr(keras.applications, constructor)(
            weights=None, input_shape=images.shape[1:], classes=NUM_CLASSES, classifier_activation=None)
    finally:
        keras.config.set_dtype_policy("float32")
    images, labels = jnp.asarray(images), jnp.asarray(labels)
    if mode == "train":
        model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.optimizer.build(model.trainable_variables)
        state = tuple([v.value for v in variables] for variables in (
            model.trainable_variables, model.non_trainable_variables, model.optimizer.variables,
            model.metrics_variables))

        def train(state, images, labels):
            logs, state = model.train_step(state, (images, labels))
            return state, logs["loss"]

        compiled, compile_s = _compile(train, (state, images, labels), True, {})
        return _xla_contender("keras", dtype, compiled, compile_s, state, (images, labels), train=True,
                              started=started)

    state = ([v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables])

    def infer(state, images):
        return model.stateless_call(*state, images, training=False)[0]

    compiled, compile_s = _compile(infer, (state, images), False, {})
    return _xla_contender("keras", dtype, compiled, compile_s, state, (images,), train=False, started=started)


def torch_peer(model_name: str, mode: str, images: np.ndarray, labels: np.ndarray, *,
               dtype: str = "float32") -> Contender:
    """torchvision's model in PyTorch eager on CPU (NCHW), SGD with momentum; ``bfloat16`` runs under autocast."""
    import torch

    from cnn_jax.tools import torch_twins

    if model_name not in PEERS and model_name not in torch_twins.TWINS:
        raise ValueError(f"no PyTorch peer for {model_name!r}; torch peers exist for "
                         f"{sorted(PEERS) + sorted(torch_twins.TWINS)}")
    started = time.perf_counter()
    torch.manual_seed(0)
    x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    if model_name in torch_twins.TWINS:
        classes, channels = task(model_name)
        ours_model = cnn_jax.create_model(model_name, num_classes=classes)
        ours_params = jax.eval_shape(lambda: ours_model.init(jax.random.key(0), jnp.zeros((1, *images.shape[1:])),
                                                             train=False))["params"]
        model = torch_twins.build(model_name, classes, sum(p.size for p in jax.tree.leaves(ours_params)))
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    else:
        model = getattr(import_torchvision().models, PEERS[model_name].torchvision)(num_classes=NUM_CLASSES)
    y = torch.from_numpy(labels.astype(np.int64))
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bfloat16")
    last: dict[str, Any] = {}  # the last step's output (detached: no graph is kept)
    if mode == "train":
        model.train()
        optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM,
                                    weight_decay=WEIGHT_DECAY)

        def step():
            optimizer.zero_grad(set_to_none=True)
            with autocast:
                output = model(x)
                loss = torch.nn.functional.cross_entropy(output.float(), y)
            loss.backward()
            optimizer.step()
            last["output"] = output.detach()
    else:
        model.eval()

        def step():
            with torch.inference_mode(), autocast:
                last["output"] = model(x)

    step_started = time.perf_counter()
    step()
    finished = time.perf_counter()
    return Contender("torch", dtype, step, lambda: None,
                     current=lambda: ({k: v.detach().clone() for k, v in model.state_dict().items()}, last["output"]),
                     first_step_s=finished - started, first_step_run_s=finished - step_started)
