"""Train-step and inference throughput of our models against peer frameworks (Keras 3 on JAX, PyTorch eager),
measured in one process on the same synthetic batch::

    python -m cnn_jax.tools.bench --model resnet50 --batch 32 --resolution 224 [--dtype bfloat16] \
        [--peers keras,torch] [--mode train,infer] [--windows 5 --steps 1] [--plain] [--variant NAME:K=V,...]

``ours`` is the trainer's own step (``cnn_jax.train.steps``, state and compiler options as ``train_and_evaluate``
builds them); ``keras`` the ``keras.applications`` model through Keras's own train step; ``torch`` torchvision's
model (or the CIFAR twins of :mod:`cnn_jax.tools.torch_twins`). ``--plain`` / ``--xla-convs`` / ``--variant`` add
our model in other formulations to A/B in the same run; ``--first-step-runs N`` times launch-to-first-step in fresh
processes. The table: first step and compile seconds, images/s (median of interleaved windows, with spread), peak
memory of the compiled program, achieved FLOP/s against this host's measured matmul peak. How each figure is
measured, and the figures: BENCHMARKS.md ("How the figures are measured"). Like ``launch.py``, the tool
re-executes itself on tcmalloc when installed (``--malloc``).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import cnn_jax  # noqa: E402
from cnn_jax.config import parse_value  # noqa: E402
from cnn_jax.machine import cpu_model  # noqa: E402
from cnn_jax.models import conv_ops  # noqa: E402
from cnn_jax.runtime import allocator  # noqa: E402


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


@dataclasses.dataclass(frozen=True)
class Result:
    first_step_s: float
    compile_s: float
    images_per_s: float
    spread: float
    peak_bytes: float
    flops_per_image: float
    dtype: str


# ---------------------------------------------------------------------------------------------------------------
# XLA helpers


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


def matmul_peak_flops(size: int = 4096, repeats: int = 5, dtype: str = "float32") -> float:
    """This host's matmul FLOP/s in ``dtype``: the best of ``repeats`` timed ``size x size`` jitted matmuls."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r}; expected one of {DTYPES}")
    a = jax.random.normal(jax.random.key(0), (size, size), dtype)
    b = jax.random.normal(jax.random.key(1), (size, size), dtype)
    matmul = jax.jit(jnp.matmul)
    matmul(a, b).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, b).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 / best


# ---------------------------------------------------------------------------------------------------------------
# Contenders


def task(model_name: str) -> tuple[int, int]:
    """``(classes, input channels)`` the contenders of ``model_name`` are built for: the CIFAR-scale twins' 10-class
    task at the model's own channels, else ImageNet's 1000 classes on RGB."""
    from cnn_jax.tools import torch_twins

    if model_name in torch_twins.TWINS:
        return 10, cnn_jax.model_info(model_name).in_channels
    return NUM_CLASSES, 3


def _synthetic_batch(batch: int, resolution: int, channels: int = 3,
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


_TORCHVISION_SHIM: list[Any] = []  # the torch.library.Library must outlive the import


def import_torchvision() -> Any:
    """Imports torchvision next to a CPU-only torch.

    torchvision's PyPI wheel is a CUDA build; its compiled operators fail to load, and its Python code then
    registers fake kernels for ``torchvision::nms``/``qnms``, which fails unless the operators exist. Declaring
    their schemas (as torchvision's C++ library would) lets the import, and every model, work; nms itself is
    never called here.
    """
    import torch

    if not _TORCHVISION_SHIM and "torchvision" not in sys.modules:
        try:
            library = torch.library.Library("torchvision", "DEF")
            library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            library.define("qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor")
            _TORCHVISION_SHIM.append(library)
        except RuntimeError:  # already declared (a working torchvision build or an earlier shim)
            pass
    import torchvision

    return torchvision


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


# ---------------------------------------------------------------------------------------------------------------
# Measurement


def _time_window(contender: Contender, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        contender.step()
    contender.sync()
    return time.perf_counter() - start


def parse_variant(text: str) -> tuple[str, dict[str, Any]]:
    """``"NAME:KEY=VALUE,KEY=VALUE"`` -> ``(NAME, {KEY: VALUE})`` (XLA compiler options for an extra ``ours``, or
    ``model.FIELD`` model overrides); values as ``cnn_jax.config.parse_value`` reads them (``true``/``false``,
    numbers and literals; other text as is). A repeated enum option takes
    ``|``-separated values."""
    name, sep, rest = text.partition(":")
    options = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ValueError(f"--variant {text!r}: expected NAME:KEY=VALUE[,KEY=VALUE...], got item {item!r}")
        # XLA parses booleans only from Python bools (or "True"/"False"), so "true" becomes True.
        options[key.strip()] = parse_value(value.strip().replace("|", ","))
    if not sep or not name or not options:
        raise ValueError(f"--variant {text!r}: expected NAME:KEY=VALUE[,KEY=VALUE...]")
    return name, options


def _builders(model_name: str, mode: str, *, batch: int, resolution: int, dtype: str,
              peers: Sequence[str], variants: Sequence[tuple[str, dict[str, Any]]],
              plain: bool, xla_convs: bool = False) -> dict[str, Callable[[], Contender]]:
    """``{contender name: build}``; ``build()`` constructs, compiles and runs the first step."""
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}; expected one of {MODES}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r}; expected one of {DTYPES}")
    classes, channels = task(model_name)
    images, labels = _synthetic_batch(batch, resolution, channels, classes)
    builders: dict[str, Callable[[], Contender]] = {"ours": lambda: ours(model_name, mode, images, labels,
                                                                         dtype=dtype)}
    for name, options in variants:
        builders[name] = lambda name=name, options=options: ours(model_name, mode, images, labels, dtype=dtype,
                                                                 options=options, name=name)
    if dtype != "float32":  # the same-run reference for what the lower precision buys
        builders["ours-float32"] = lambda: ours(model_name, mode, images, labels, name="ours-float32")
    if plain:
        def build_plain() -> Contender:
            with conv_ops.rewrites(False):
                return ours(model_name, mode, images, labels, dtype=dtype, name="ours-plain")

        builders["ours-plain"] = build_plain
    if xla_convs:
        def build_xla_convs() -> Contender:
            with conv_ops.rewrites(True, onednn_convs=False):
                return ours(model_name, mode, images, labels, dtype=dtype, name="ours-xla-convs")

        builders["ours-xla-convs"] = build_xla_convs
    peer_builders = {"keras": keras_peer, "torch": torch_peer}
    for peer in peers:
        if peer not in peer_builders:
            raise ValueError(f"unknown peer {peer!r}; expected some of {sorted(peer_builders)}")
        builders[peer] = lambda peer=peer: peer_builders[peer](model_name, mode, images, labels, dtype=dtype)
    return builders


FIRST_STEP_MARK = "first step finished, seconds it ran:"
WARM_CACHE = "ours-warm-cache"


@dataclasses.dataclass(frozen=True)
class FirstStep:
    """Launch of a fresh process to its first finished step, and the part of it the step itself ran."""

    total_s: float
    step_s: float

    @property
    def ready_s(self) -> float:
        """Launch to the moment the first step could start (imports, construction, initialisation, compilation)."""
        return self.total_s - self.step_s


def first_step_in_fresh_processes(model_name: str, mode: str, contenders: Sequence[str], *, runs: int,
                                  batch: int, resolution: int, dtype: str) -> dict[str, list[FirstStep]]:
    """``{contender: [FirstStep]}`` from launching a fresh Python process to its first finished step.

    What a user waits for after typing the command: interpreter start, imports, model construction, variable
    initialisation, compilation, one step (whose own run time the process reports, so the time until it could
    start is known too). One process per measurement, contenders alternating round by round so
    load from other processes hits all alike; nothing is shared between them (no warm import or compile cache),
    except for ``ours-warm-cache``: ours relaunched with JAX's persistent compilation cache filled by an untimed
    launch first, as ``launch.py`` relaunches after a preemption (its default ``--compilation_cache_dir``).
    """
    cold = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    with tempfile.TemporaryDirectory(prefix="bench_xla_cache_") as cache:
        warm = cold | {"JAX_COMPILATION_CACHE_DIR": cache}  # JAX's defaults otherwise, as launch.py uses them

        def launch(name: str) -> FirstStep:
            command = [sys.executable, "-m", "cnn_jax.tools.bench", "--model", model_name, "--mode", mode,
                       "--batch", str(batch), "--resolution", str(resolution), "--dtype", dtype,
                       "--first-step-of", "ours" if name == WARM_CACHE else name,
                       # the allocator this process runs on (the children inherit its LD_PRELOAD)
                       "--malloc", "system" if allocator.active_allocator() == "system" else "auto"]
            if name in ("keras", "torch"):
                command += ["--peers", name]
            if name == "ours-plain":
                command.append("--plain")
            if name == "ours-xla-convs":
                command.append("--xla-convs")
            started = time.perf_counter()
            with subprocess.Popen(command, stdout=subprocess.PIPE, text=True,
                                  env=warm if name == WARM_CACHE else cold) as child:
                for line in child.stdout:
                    if line.startswith(FIRST_STEP_MARK):
                        total = time.perf_counter() - started
                        child.kill()  # its exit (freeing the runtime) is not part of the wait
                        return FirstStep(total, float(line[len(FIRST_STEP_MARK):]))
            raise RuntimeError(f"{' '.join(command)} exited with {child.returncode} before its first step")

        if WARM_CACHE in contenders:
            launch(WARM_CACHE)  # fills the cache
        seconds: dict[str, list[FirstStep]] = {name: [] for name in contenders}
        for _ in range(runs):
            for name in contenders:
                seconds[name].append(launch(name))
            print(f"#   {model_name} {mode} first step in a fresh process: " + ", ".join(
                f"{name} {seconds[name][-1].total_s:.1f} s (step {seconds[name][-1].step_s:.1f} s)"
                for name in contenders), file=sys.stderr, flush=True)
    return seconds


def measure(model_name: str, mode: str, *, batch: int, resolution: int, dtype: str = "float32",
            peers: Sequence[str] = (), variants: Sequence[tuple[str, dict[str, Any]]] = (), plain: bool = False,
            xla_convs: bool = False, windows: int = 5, steps: int = 1, warmup: int = 1) -> dict[str, Result]:
    """``{contender: Result}`` for one model and mode; timed windows are interleaved across contenders.

    ``plain`` adds ``ours-plain``: our model traced without the XLA:CPU rewrites of ``cnn_jax.models.conv_ops``.
    """
    builders = _builders(model_name, mode, batch=batch, resolution=resolution, dtype=dtype, peers=peers,
                         variants=variants, plain=plain, xla_convs=xla_convs)
    contenders = []
    for build in builders.values():
        contenders.append(build())
        c = contenders[-1]
        print(f"#   {model_name} {mode} {c.name}: first step after {c.first_step_s:.1f} s "
              f"(compile {_cell(c.compile_s, '.1f')} s)", file=sys.stderr, flush=True)
        gc.collect()
    for contender in contenders:
        for _ in range(warmup):
            _time_window(contender, 1)
    seconds: dict[str, list[float]] = {c.name: [] for c in contenders}
    for _ in range(windows):
        for contender in contenders:
            seconds[contender.name].append(_time_window(contender, steps))
    work = contenders[0].count_flops() / batch  # our model's flops per image, charged to every contender
    results = {}
    for contender in contenders:
        rates = [steps * batch / s for s in seconds[contender.name]]
        median = statistics.median(rates)
        results[contender.name] = Result(contender.first_step_s, contender.compile_s, median,
                                         (max(rates) - min(rates)) / median, contender.peak_bytes, work,
                                         contender.dtype)
    return results


def machine() -> str:
    """Device, host CPU and library versions."""
    cpu = cpu_model()
    import flax

    versions = [f"jax {jax.__version__}", f"jaxlib {jax.lib.__version__}", f"flax {flax.__version__}"]
    for module in ("keras", "torch"):
        if module in sys.modules:
            versions.append(f"{module} {sys.modules[module].__version__}")
    device = jax.devices()[0]
    return f"{device.platform}:{device.device_kind}; {os.cpu_count()} x {cpu}; " + ", ".join(versions)


def _cell(value: float, fmt: str) -> str:
    return "–" if value != value else format(value, fmt)  # NaN -> dash


def main(argv: list[str] | None = None) -> dict[tuple[str, str], dict[str, Result]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", nargs="+", required=True, help=f"registered model names; peers: {sorted(PEERS)}")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--dtype", choices=DTYPES, default="float32")
    parser.add_argument("--peers", default="", help="comma-separated: keras,torch")
    parser.add_argument("--mode", default="train,infer", help="comma-separated: train,infer")
    parser.add_argument("--windows", type=int, default=5,
                        help="timed windows per contender (median reported); 0: only --first-step-runs")
    parser.add_argument("--steps", type=int, default=1, help="steps per timed window")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps after the first")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME:K=V,...",
                        help="also time ours compiled with these XLA options (repeatable)")
    parser.add_argument("--plain", action="store_true",
                        help="also time ours without the XLA:CPU conv/pool rewrites (cnn_jax.models.conv_ops)")
    parser.add_argument("--xla-convs", action="store_true",
                        help="also time ours with XLA's dense convolutions instead of oneDNN's (cnn_jax.ops.onednn)")
    parser.add_argument("--matmul-size", type=int, default=4096, help="square matmul that measures the peak")
    parser.add_argument("--first-step-runs", type=int, default=0, metavar="N",
                        help="also time launch-to-first-step of every contender in N fresh processes each")
    parser.add_argument("--malloc", choices=allocator.MODES, default="auto",
                        help="memory allocator of this process and the fresh ones (cnn_jax.runtime.allocator, as "
                        "launch.py)")
    parser.add_argument("--first-step-of", metavar="CONTENDER", help=argparse.SUPPRESS)  # the fresh process's job
    args = parser.parse_args(argv)
    peers = [p for p in args.peers.split(",") if p]
    modes = [m for m in args.mode.split(",") if m]
    for mode in modes:
        if mode not in MODES:
            parser.error(f"--mode {mode!r}; expected some of {','.join(MODES)}")
    for model_name in args.model:
        cnn_jax.model_info(model_name)  # unknown names fail here, before anything compiles
    variants = [parse_variant(v) for v in args.variant]
    if not args.windows and not args.first_step_runs:
        parser.error("--windows 0 measures only launch-to-first-step: give --first-step-runs N too")
    if args.first_step_of:
        builders = _builders(args.model[0], modes[0], batch=args.batch, resolution=args.resolution,
                             dtype=args.dtype, peers=peers, variants=variants, plain=args.plain,
                             xla_convs=args.xla_convs)
        if args.first_step_of not in builders:
            parser.error(f"--first-step-of {args.first_step_of!r}; expected one of {sorted(builders)}")
        contender = builders[args.first_step_of]()
        print(FIRST_STEP_MARK, f"{contender.first_step_run_s:.6f}", flush=True)
        return {}

    print("# command: python -m cnn_jax.tools.bench " + " ".join(sys.argv[1:] if argv is None else argv))
    if os.environ.get("XLA_FLAGS"):
        print(f"# XLA_FLAGS={os.environ['XLA_FLAGS']} (not XLA's defaults)")
    print(f"# allocator: {allocator.active_allocator()} (--malloc={args.malloc}); "
          f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    results: dict[tuple[str, str], dict[str, Result]] = {}
    if args.windows:
        # The matmul peak is measured before each model and at the end, the best kept: load only lowers it. It is
        # measured in each compute dtype of the table (bf16 runs have an ours-float32 row), since a GPU's bf16
        # tensor-core peak is several times its fp32 one.
        peak_dtypes = sorted({"float32", args.dtype})
        peaks: dict[str, list[float]] = {d: [] for d in peak_dtypes}

        def measure_peaks():
            for d in peak_dtypes:
                peaks[d].append(matmul_peak_flops(args.matmul_size, dtype=d))

        for model_name in args.model:
            measure_peaks()
            for mode in modes:
                res = measure(model_name, mode, batch=args.batch, resolution=args.resolution, dtype=args.dtype,
                              peers=peers, variants=variants, plain=args.plain, xla_convs=args.xla_convs,
                              windows=args.windows, steps=args.steps, warmup=args.warmup)
                results[(model_name, mode)] = res
                for name, r in res.items():
                    print(f"#   {model_name} {mode} {name}: {r.images_per_s:.2f} img/s", file=sys.stderr, flush=True)
                gc.collect()
        measure_peaks()
        peak = {d: max(p) for d, p in peaks.items()}
        for d in peak_dtypes:
            print(f"# {d} matmul peak ({args.matmul_size}^2, jitted): {peak[d] / 1e9:.0f} GFLOP/s (best of "
                  + ", ".join(f"{p / 1e9:.0f}" for p in peaks[d]) + ")")
        print("model | mode | contender | first step s | compile s | img/s (spread) | peak MiB | GFLOP/s | % of peak "
              "| ours / contender")
        print("---|---|---|---|---|---|---|---|---|---")
        for (model_name, mode), res in results.items():
            base = res["ours"].images_per_s
            for name, r in res.items():
                achieved = r.flops_per_image * r.images_per_s
                print(f"{model_name} | {mode} | {name} | {r.first_step_s:.1f} | {_cell(r.compile_s, '.1f')} | "
                      f"{r.images_per_s:.2f} ({r.spread:.0%}) | {_cell(r.peak_bytes / 2**20, '.0f')} | "
                      f"{_cell(achieved / 1e9, '.1f')} | {_cell(100 * achieved / peak[r.dtype], '.1f')} | "
                      f"{base / r.images_per_s:.2f}")
    if args.first_step_runs:
        print(f"launch to first step, fresh process per run ({args.first_step_runs} runs each, alternating) | "
              "median s (min-max) | ours s / contender s | of which the first step ran s | ready to step s "
              "(launch to first step - its run) | ours ready s / contender ready s")
        print("---|---|---|---|---|---")
        for model_name, mode in itertools.product(args.model, modes):
            contenders = ["ours", WARM_CACHE, *(["ours-plain"] if args.plain else []),
                          *(["ours-xla-convs"] if args.xla_convs else []), *peers]
            seconds = first_step_in_fresh_processes(model_name, mode, contenders, runs=args.first_step_runs,
                                                    batch=args.batch, resolution=args.resolution, dtype=args.dtype)
            base = statistics.median(s.total_s for s in seconds["ours"])
            base_ready = statistics.median(s.ready_s for s in seconds["ours"])
            for name, runs in seconds.items():
                totals, ready = [s.total_s for s in runs], statistics.median(s.ready_s for s in runs)
                median = statistics.median(totals)
                print(f"{model_name} {mode} {name} | {median:.1f} ({min(totals):.1f}-{max(totals):.1f}) | "
                      f"{base / median:.2f} | {statistics.median(s.step_s for s in runs):.3g} | {ready:.1f} | "
                      f"{base_ready / ready:.2f}")
    print(f"# {machine()}; batch {args.batch}, {args.resolution}x{args.resolution}, {args.dtype}")
    print(f"# load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return results


if __name__ == "__main__":
    # As launch.py: the trainer runs on tcmalloc where installed (cnn_jax.runtime.allocator); so does what is
    # measured here.
    allocator.reexec_with_tcmalloc(allocator.mode_from_argv(sys.argv))
    main()
