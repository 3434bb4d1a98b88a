"""Per-layer parameters, multiply-adds and activation memory, counted by walking the layers of a traced forward.

The walk intercepts every Flax module call (``flax.linen.intercept_methods``) while the forward is traced with
abstract inputs (``jax.make_jaxpr`` / ``jax.eval_shape``): nothing is computed, so even EfficientNet-B7 at 600 px
costs only a trace. A *layer* is a module call that owns parameters (``nn.Conv``, ``nn.Dense``, BatchNorm, ...) or
a leaf module without children (``layers.Pool``, LRN, ...); containers such as ``ConvNormAct`` are not layers
themselves. Dropout and drop-path are skipped (identities at inference). A stage of blocks under ``nn.scan`` is
traced once: its layers are one row each with ``repeats`` = the number of blocks, and totals over them.

Counting conventions (the EECS 498-007 lecture 8 / torchvision conventions, see ``shared/reference/models.md``):

- conv MACs = output elements x (Cin / groups) x Kh x Kw  (= Cout·H'·W'·Cin·K·K for one image; padding taps count);
- dense MACs = output elements x Din;
- pool ops = output elements x K x K, reported apart from the conv + dense MACs that papers and torchvision quote;
- FLOPs = 2 x MACs (one multiply plus one add);
- activation memory = output elements x bytes per element (4 for float32), KB = bytes / 1024;
- parameters = the layer's own trainable parameters; the model total counts every parameter (auxiliary heads,
  which do not run at inference, included).

As an independent check the same trace is also counted at the primitive level (every ``conv_general_dilated`` and
``dot_general`` in the jaxpr, scans multiplied out): :attr:`ModelStats.program_macs` equals :attr:`ModelStats.macs`
when the walk missed no layer.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator
from typing import Any

import flax.linen as nn
import jax
import jax.extend.core as jcore
import jax.interpreters.partial_eval as pe
import jax.numpy as jnp

from cnn_jax import layers
from cnn_jax.ops import conv_ops

LAYER_KINDS = ("conv", "dense", "pool", "norm", "other")
# Counted in the headline multiply-adds (the reference ``macs`` columns count convolutions and linear layers only).
COMPUTE_KINDS = ("conv", "dense")
_NORM_TYPES = (nn.BatchNorm, nn.LayerNorm, nn.GroupNorm, nn.RMSNorm)
# Identities at inference: not layers.
_SKIPPED_TYPES = (nn.Dropout, layers.DropPath)


@dataclasses.dataclass(frozen=True)
class LayerStats:
    """One layer call of a forward pass.

    Attributes:
      path: module path, ``/``-joined (``"conv1"``, ``"stage2_block0/conv1/conv"``).
      kind: one of ``LAYER_KINDS``.
      module: the module's class name.
      output_shape: shape of the layer's output, batch included.
      activation_bytes: bytes of the layer's output (all of its output arrays).
      params: trainable parameters the layer owns (counted on its first call only, if it is called twice).
      macs: multiply-adds for conv/dense layers, window operations for pools, 0 for the rest.
      repeats: how many times the call runs in the forward: the blocks of a stage under ``nn.scan`` are traced
        once and run once per block. ``activation_bytes``, ``params`` and ``macs`` are totals over the repeats;
        ``output_shape`` is one call's.
    """

    path: str
    kind: str
    module: str
    output_shape: tuple[int, ...]
    activation_bytes: int
    params: int
    macs: int
    repeats: int = 1

    @property
    def activation_kb(self) -> float:
        return self.activation_bytes / 1024

    @property
    def flops(self) -> int:
        """2 per multiply-add; 1 per window element for pools (a comparison or an addition)."""
        return self.macs if self.kind == "pool" else 2 * self.macs


@dataclasses.dataclass(frozen=True)
class ModelStats:
    """Totals and per-layer rows of one model at one input size.

    Attributes:
      name: registry name (or the class name for an unregistered module).
      resolution: square input size.
      batch: batch size of the counted forward (MACs and memory scale with it; parameters do not).
      in_channels: input channels.
      num_classes: classifier outputs.
      params: every trainable parameter (the figure reference rows quote).
      layers: the layers of the forward, in call order.
      unattributed_params: parameters owned by no layer seen while initialising (0 for every registered model).
      program_macs: conv + matmul multiply-adds counted on the traced program's primitives.
      variables: the shapes of ``model.init``'s variables (``jax.ShapeDtypeStruct`` leaves), so that more can be
        built on them (the trainer's state, in ``cnn_jax.train.dry_run``) without tracing the model again.
    """

    name: str
    resolution: int
    batch: int
    in_channels: int
    num_classes: int
    params: int
    layers: tuple[LayerStats, ...]
    unattributed_params: int
    program_macs: int
    variables: Any = dataclasses.field(default=None, repr=False, compare=False)

    def _sum(self, field: str, kinds: tuple[str, ...] = LAYER_KINDS) -> int:
        return sum(getattr(layer, field) for layer in self.layers if layer.kind in kinds)

    @property
    def macs(self) -> int:
        """Conv + dense multiply-adds (what papers and torchvision call "FLOPs"/"GFLOPS")."""
        return self._sum("macs", COMPUTE_KINDS)

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def pool_ops(self) -> int:
        return self._sum("macs", ("pool",))

    @property
    def activation_bytes(self) -> int:
        """Sum of every layer's output size (the lecture's memory total, without its flatten copy)."""
        return self._sum("activation_bytes")

    @property
    def activation_kb(self) -> float:
        return self.activation_bytes / 1024

    @property
    def inference_params(self) -> int:
        """Parameters of the layers that run in this forward (auxiliary heads excluded in eval mode)."""
        return self._sum("params")


@dataclasses.dataclass
class _Frame:
    """One module call on the recorder's stack; ``subtree_params`` (its per-call parameter count) is set on exit."""

    path: tuple[str, ...]
    parent: _Frame | None
    has_children: bool = False
    subtree_params: int = 0


@dataclasses.dataclass
class _Record:
    """A layer call as seen inside the trace: per-call figures, scaled by the repeat count in ``finish``."""

    path: tuple[str, ...]
    kind: str
    module: str
    output_shape: tuple[int, ...]
    activation_bytes: int
    own_params: int
    macs: int
    frame: _Frame


class _LayerRecorder:
    """A method interceptor that records the layer calls of one traced forward.

    Blocks under ``nn.scan`` are traced once but run once per scanned block: there the module sees one block's
    slice of the stacked parameters, so a layer's repeat count is its stacked parameter count (in the full
    variables) over its per-call count (or that of its nearest enclosing module with parameters). Flax's scan also
    runs a partial-evaluation trace of the body to check loop invariants; calls in that trace are not recorded.
    """

    def __init__(self) -> None:
        self.records: list[_Record] = []
        self._stack: list[_Frame] = []

    def __call__(self, next_fun: Callable[..., Any], args: Any, kwargs: Any, context: Any) -> Any:
        module = context.module
        if context.method_name == "setup" or module.scope is None:
            return next_fun(*args, **kwargs)
        path = tuple(module.path)
        if self._stack and self._stack[-1].path == path:  # a module calling another of its own methods
            return next_fun(*args, **kwargs)
        parent = self._stack[-1] if self._stack else None
        if parent is not None:
            parent.has_children = True
        frame = _Frame(path, parent)
        self._stack.append(frame)
        try:
            outputs = next_fun(*args, **kwargs)
        finally:
            self._stack.pop()
        arrays = [a for a in jax.tree_util.tree_leaves(outputs) if hasattr(a, "shape")]
        if any(isinstance(a, pe.JaxprTracer) for a in arrays):  # nn.scan's invariant-checking trace
            return outputs
        params = module.variables.get("params", {})
        frame.subtree_params = _size(params)
        own = {k: v for k, v in params.items() if hasattr(v, "shape")}
        if own or (not frame.has_children and not isinstance(module, _SKIPPED_TYPES)):
            self.records.append(_record(module, path, own, arrays, frame))
        return outputs

    def finish(self, params: Any) -> list[LayerStats]:
        """Layer rows given the model's full parameter tree (stacked along any scan axes)."""
        seen: set[tuple[str, ...]] = set()
        rows = []
        for r in self.records:
            repeats = _repeats(r, params)
            stacked = 0 if r.path in seen else r.own_params * repeats
            seen.add(r.path)
            rows.append(
                LayerStats(
                    path="/".join(r.path),
                    kind=r.kind,
                    module=r.module,
                    output_shape=r.output_shape,
                    activation_bytes=r.activation_bytes * repeats,
                    params=stacked,
                    macs=r.macs * repeats,
                    repeats=repeats,
                )
            )
        return rows


def _record(module: nn.Module, path: tuple[str, ...], own: dict[str, Any], arrays: list[Any], frame: _Frame) -> _Record:
    out_shape = tuple(arrays[0].shape) if arrays else ()
    out_size = math.prod(out_shape)
    kind = _kind(module)
    if kind in COMPUTE_KINDS:
        # Flax kernels are (*window, Cin / groups, Cout) for conv and (Din, Dout) for dense.
        macs = out_size * math.prod(own["kernel"].shape[:-1])
    elif kind == "pool":
        macs = out_size * module.window**2
    else:
        macs = 0
    return _Record(
        path=path,
        kind=kind,
        module=type(module).__name__,
        output_shape=out_shape,
        activation_bytes=sum(math.prod(a.shape) * jnp.dtype(a.dtype).itemsize for a in arrays),
        own_params=sum(math.prod(v.shape) for v in own.values()),
        macs=macs,
        frame=frame,
    )


def _size(tree: Any) -> int:
    return sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(tree))


def _subtree(params: Any, path: tuple[str, ...]) -> Any:
    for name in path:
        if not hasattr(params, "get") or name not in params:
            return None
        params = params[name]
    return params


def _repeats(record: _Record, params: Any) -> int:
    """How many times a recorded call runs: 1, or the product of the scan lengths around it."""
    if record.own_params:
        node = _subtree(params, record.path)
        stacked = _size([v for v in node.values() if hasattr(v, "shape")]) if node is not None else 0
        return max(1, round(stacked / record.own_params))
    frame: _Frame | None = record.frame
    while frame is not None and not frame.subtree_params:
        frame = frame.parent
    if frame is None:
        return 1
    return max(1, round(_size(_subtree(params, frame.path)) / frame.subtree_params))


def _kind(module: nn.Module) -> str:
    if isinstance(module, nn.Conv):
        return "conv"
    if isinstance(module, nn.Dense):
        return "dense"
    if isinstance(module, layers.Pool):
        return "pool"
    if isinstance(module, _NORM_TYPES):
        return "norm"
    return "other"


def _own_params(module: nn.Module) -> dict[str, Any]:
    """The parameter arrays a module holds directly (not those of its children)."""
    params = module.variables.get("params", {})
    return {k: v for k, v in params.items() if hasattr(v, "shape")}


# ---------------------------------------------------------------------------------------------------------------
# Primitive-level count of the traced program.


def _subjaxprs(eqn: Any) -> Iterator[tuple[jcore.Jaxpr, int]]:
    """Sub-programs of an equation with how many times each runs (scan bodies run ``length`` times)."""
    times = int(eqn.params.get("length", 1)) if eqn.primitive.name == "scan" else 1
    branches = eqn.params.get("branches")
    if branches is not None:  # cond: count the most expensive branch once
        costs = [(program_macs(b.jaxpr), b.jaxpr) for b in branches]
        yield max(costs, key=lambda c: c[0])[1], 1
        return
    for sub in jcore.jaxprs_in_params(eqn.params):
        yield sub, times


def program_macs(jaxpr: jcore.Jaxpr) -> int:
    """Multiply-adds of every convolution and matrix product in a jaxpr (sub-programs included)."""
    total = 0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "conv_general_dilated":
            rhs, out = eqn.invars[1].aval, eqn.outvars[0].aval
            out_feature_dim = eqn.params["dimension_numbers"].rhs_spec[0]
            total += math.prod(out.shape) * math.prod(rhs.shape) // rhs.shape[out_feature_dim]
        elif name == "dot_general":
            lhs, out = eqn.invars[0].aval, eqn.outvars[0].aval
            (lhs_contract, _), _ = eqn.params["dimension_numbers"]
            total += math.prod(out.shape) * math.prod(lhs.shape[d] for d in lhs_contract)
        for sub, times in _subjaxprs(eqn):
            total += times * program_macs(sub)
    return total


# ---------------------------------------------------------------------------------------------------------------


def analyze(
    model: nn.Module,
    resolution: int,
    *,
    batch: int = 1,
    in_channels: int | None = None,
    train: bool = False,
    name: str | None = None,
) -> ModelStats:
    """Counts a model's layers for one ``batch x resolution x resolution x in_channels`` input.

    Two abstract traces: ``init`` (every parameter, auxiliary heads included, must belong to a recorded layer) and
    the forward in ``train`` or eval mode, whose layers are returned.
    """
    in_channels = model.in_channels if in_channels is None else in_channels
    images = jax.ShapeDtypeStruct((batch, resolution, resolution, in_channels), jnp.float32)
    key = jax.random.key(0)

    init_recorder = _LayerRecorder()
    with nn.intercept_methods(init_recorder):
        variables = jax.eval_shape(lambda x: model.init(key, x, train=False), images)
    params = _size(variables.get("params", {}))
    init_layers = init_recorder.finish(variables.get("params", {}))

    def forward(v: Any, x: jax.Array) -> Any:
        return model.apply(v, x, train=train, rngs={"dropout": key}, mutable=["batch_stats"])

    recorder = _LayerRecorder()
    # The architecture's convolutions, not XLA:CPU's faster formulation of some of them (conv_ops).
    with nn.intercept_methods(recorder), conv_ops.rewrites(False):
        closed = jax.make_jaxpr(forward)(variables, images)
    return ModelStats(
        name=name or type(model).__name__,
        resolution=resolution,
        batch=batch,
        in_channels=in_channels,
        num_classes=model.num_classes,
        params=params,
        layers=tuple(recorder.finish(variables.get("params", {}))),
        unattributed_params=params - sum(layer.params for layer in init_layers),
        program_macs=program_macs(closed.jaxpr),
        variables=variables,
    )


def layer_table(
    model: nn.Module, resolution: int, *, batch: int = 1, in_channels: int | None = None, train: bool = False
) -> list[LayerStats]:
    """The layers of ``model``'s forward at ``resolution`` (see :func:`analyze`)."""
    return list(analyze(model, resolution, batch=batch, in_channels=in_channels, train=train).layers)


def model_stats(
    name: str,
    resolution: int | None = None,
    *,
    batch: int = 1,
    num_classes: int | None = None,
    train: bool = False,
    **overrides: Any,
) -> ModelStats:
    """Counts a registered model, by default at its training resolution (``model_info`` for these overrides: e.g.
    ``efficientnet_phi``'s follows phi and gamma) with the class count of its reference row.

    Unknown names raise the registry's ``ValueError`` (with close-name suggestions).
    """
    from cnn_jax.registry import create_model, model_info

    info = model_info(name, **overrides)
    num_classes = info.reference_classes if num_classes is None else num_classes
    model = create_model(name, num_classes=num_classes, **overrides)
    return analyze(model, resolution or info.resolution, batch=batch, train=train, name=name)


def xla_flops(model: nn.Module, resolution: int, *, batch: int = 1, in_channels: int | None = None) -> float:
    """XLA's own flop count for the compiled eval-mode forward (``cost_analysis()['flops']``).

    XLA charges 2 per multiply-add but skips taps that fall on padding, and also counts elementwise operations
    (bias, activations, BatchNorm), pooling windows and reductions; so it sits near, not at, ``2 x MACs``.
    Counted on the textbook formulation (``conv_ops.rewrites(False)``): the oneDNN convolutions of the CPU program
    are custom calls, which XLA's count charges nothing. This compiles the model: use it for a few models, not the
    registry.
    """
    in_channels = model.in_channels if in_channels is None else in_channels
    images = jax.ShapeDtypeStruct((batch, resolution, resolution, in_channels), jnp.float32)
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), images)
    with conv_ops.rewrites(False):
        forward = jax.jit(lambda v, x: model.apply(v, x, train=False).logits)
        cost = forward.lower(variables, images).compile().cost_analysis()
    if isinstance(cost, list | tuple):  # older JAX returned one dict per device program
        cost = cost[0]
    return float(cost["flops"])
