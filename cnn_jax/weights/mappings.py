"""Name mappings from torchvision / timm / Keras checkpoints to cnn_jax modules, one table per family.

A :class:`Mapping` is data: rules ``(regex over a cnn_jax module path, source module name)`` tried in order (the
first full match wins). A rule's name is a template (``\\g<s>`` backreferences) or, where an index must be
computed (1-based numbering, flat block counters, optional expansion convs), a small function of the match and
the :class:`Context`. "Module" means the innermost module owning arrays: ``stage1_block0/conv1/conv`` (a conv),
``stage1_block0/conv1/bn`` (a BatchNorm), ``head/fc`` (a dense layer). Which array names a source module has
(``weight``/``running_mean`` or ``kernel``/``moving_mean``) is the source layout's business (``convert.py``).

Besides names, a mapping states the conventions the source was trained with: ``overrides`` for ``create_model``
(TF "SAME" padding, BatchNorm epsilon convention, stride placement, pooling divisor) and the source's BatchNorm
epsilon, so the importer builds the cnn_jax variant that computes the same function.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from collections.abc import Callable
from collections.abc import Mapping as MappingType
from typing import Any

from cnn_jax.weights import preprocessing
from cnn_jax.weights.preprocessing import InputConvention
from cnn_jax.weights.sources import Source, creation_index

Name = str | Callable[[re.Match, "Context"], str]


@dataclasses.dataclass(frozen=True)
class Context:
    """What a rule may consult: the target's module paths and the source checkpoint."""

    modules: frozenset[str]
    source: Source | None = None

    def has(self, path: str) -> bool:
        return path in self.modules

    def block_index(self, stage: int, block: int) -> int:
        """0-based position of ``stage{stage}_block{block}`` among all blocks (torchvision's flat ``features``)."""
        blocks = sorted({(int(m[1]), int(m[2])) for p in self.modules
                         if (m := re.match(r"stage(\d+)_block(\d+)/", p))})
        return blocks.index((stage, block))

    def num_blocks(self) -> int:
        """Blocks over all stages (``stage{s}_block{b}`` modules)."""
        return len({p.split("/")[0] for p in self.modules if p.startswith("stage")})

    def num_stages(self) -> int:
        return max(int(m[1]) for p in self.modules if (m := re.match(r"stage(\d+)_", p)))

    def source_has(self, name: str) -> bool:
        """Whether the source checkpoint has tensor ``name`` (False without a source)."""
        return self.source is not None and name in self.source.tensors

    def first_present(self, candidates: list[str], probe: str) -> str:
        """The first candidate module name whose ``{name}.{probe}`` tensor the source has; the first candidate
        when none has (the import then fails naming it)."""
        return next((name for name in candidates if self.source_has(f"{name}.{probe}")), candidates[0])

    def timm_block(self, stage: int, block: int) -> str:
        """timm's ``blocks.{i}.{j}`` for ``stage{stage}_block{block}``: the blocks of both models in order, so that
        a different grouping into stages (timm's MobileNetV3) maps by position; ``blocks.{stage-1}.{block}``
        without a source."""
        if self.source is None:
            return f"blocks.{stage - 1}.{block}"
        numbered = sorted({(int(m[1]), int(m[2])) for name in self.source.tensors
                           if (m := re.match(r"blocks\.(\d+)\.(\d+)\.", name))})
        i, j = numbered[self.block_index(stage, block)]
        return f"blocks.{i}.{j}"

    def keras_layer(self, kind: str, ordinal: int) -> str:
        """The ``ordinal``-th auto-named Keras layer of class ``kind`` in creation order."""
        names = sorted((self.source.layers_by_class.get(kind, []) if self.source else []), key=creation_index)
        if ordinal >= len(names):
            raise KeyError(f"the Keras model has {len(names)} {kind} layers; layer #{ordinal} was asked for")
        return names[ordinal]


@dataclasses.dataclass(frozen=True)
class Mapping:
    """How one family's checkpoints map onto a cnn_jax model.

    Attributes:
      family: human-readable name, e.g. "torchvision ResNet".
      rules: ``(target module regex, source module name)``; see the module docstring.
      head: the target module of the classifier (its source shape gives ``num_classes``).
      overrides: ``create_model`` arguments that make the cnn_jax model compute the source's function.
      bn_eps: the source's BatchNorm epsilon (PyTorch files do not store it; Keras layers do, read per layer).
      flatten_chw: target dense modules that read a flattened NCHW map in the source, with its channel count.
      keras_application: the ``keras.applications`` constructor whose ``.weights.h5`` this maps.
      note: what differs from the source, for the README table and the report.
      rename: a function of (rendered source name, context) for a dialect of the family's checkpoints that the
        file itself reveals (timm's ``legacy_senet154`` naming of its SENet-154).
      dialect_overrides: a function of the source giving the ``create_model`` arguments of such a dialect.
      input: the input convention the family's published weights were trained with (``preprocessing``); Keras
        models with Rescaling / Normalization layers take theirs from the file.
      bgr_input_conv: the conv reading the image, whose input channels are reversed for Keras' BGR "caffe" mode.
    """

    family: str
    rules: tuple[tuple[str, Name], ...]
    head: str
    overrides: MappingType[str, Any] = dataclasses.field(default_factory=dict)
    bn_eps: float | None = None
    flatten_chw: MappingType[str, int] = dataclasses.field(default_factory=dict)
    keras_application: str | None = None
    note: str = ""
    rename: Callable[[str, Context], str] | None = None
    dialect_overrides: Callable[[Source], dict[str, Any]] | None = None
    input: InputConvention = preprocessing.IMAGENET
    bgr_input_conv: str | None = None

    def overrides_for(self, source: Source) -> dict[str, Any]:
        """``overrides`` plus those of the dialect ``source`` is written in."""
        return {**self.overrides, **(self.dialect_overrides(source) if self.dialect_overrides else {})}

    def source_name(self, path: str, context: Context) -> str:
        for pattern, name in self.rules:
            match = re.fullmatch(pattern, path)
            if match:
                rendered = name(match, context) if callable(name) else match.expand(name)
                return self.rename(rendered, context) if self.rename else rendered
        raise KeyError(f"no rule of the {self.family} mapping covers the cnn_jax module {path!r}")


def _i(match: re.Match, group: str, offset: int = 0) -> int:
    return int(match[group]) + offset


# Conv-BN pairs inside torchvision's Conv2dNormActivation / BasicConv2d.
_SEQ = {"conv": "0", "bn": "1"}  # Sequential(conv, bn, act)
_BASIC = {"conv": "conv", "bn": "bn"}  # BasicConv2d(conv, bn)

# ---- ResNet family (torchvision and timm share these names) ---------------------------------------------------
RESNET_TORCH_RULES: tuple[tuple[str, Name], ...] = (
    (r"stem/conv1/conv", "conv1"),
    (r"stem/conv1/bn", "bn1"),
    (r"stage(?P<s>\d+)_block(?P<b>\d+)/conv(?P<k>\d)/conv", r"layer\g<s>.\g<b>.conv\g<k>"),
    (r"stage(?P<s>\d+)_block(?P<b>\d+)/conv(?P<k>\d)/bn", r"layer\g<s>.\g<b>.bn\g<k>"),
    (r"stage(?P<s>\d+)_block(?P<b>\d+)/downsample/conv", r"layer\g<s>.\g<b>.downsample.0"),
    (r"stage(?P<s>\d+)_block(?P<b>\d+)/downsample/bn", r"layer\g<s>.\g<b>.downsample.1"),
    (r"head/fc", "fc"),
)
# keras.applications.ResNet50/101/152: stage s of cnn_jax is Keras "conv{s+1}", blocks are 1-based, "_0_" is the
# projection shortcut.
RESNET_KERAS_RULES: tuple[tuple[str, Name], ...] = (
    (r"stem/conv1/(?P<u>conv|bn)", r"conv1_\g<u>"),
    (r"stage(?P<s>\d+)_block(?P<b>\d+)/conv(?P<k>\d)/(?P<u>conv|bn)",
     lambda m, c: f"conv{_i(m, 's', 1)}_block{_i(m, 'b', 1)}_{m['k']}_{m['u']}"),
    (r"stage(?P<s>\d+)_block(?P<b>\d+)/downsample/(?P<u>conv|bn)",
     lambda m, c: f"conv{_i(m, 's', 1)}_block{_i(m, 'b', 1)}_0_{m['u']}"),
    (r"head/fc", "predictions"),
)


# ---- VGG -----------------------------------------------------------------------------------------------------------
def _vgg_feature_index(match: re.Match, context: Context) -> int:
    """Index of conv ``conv{s}_{i}`` in torchvision's ``features`` Sequential: conv, [bn], relu per conv and one
    max-pool per stage."""
    convs = sorted((int(m[1]), int(m[2])) for p in context.modules if (m := re.fullmatch(r"conv(\d+)_(\d+)", p)))
    per_conv = 3 if context.has("bn1_1") else 2
    index, previous_stage = 0, convs[0][0]
    for stage, conv in convs:
        if stage != previous_stage:
            index, previous_stage = index + 1, stage  # the stage's max-pool
        if (stage, conv) == (_i(match, "s"), _i(match, "i")):
            return index
        index += per_conv
    raise KeyError(f"conv{match['s']}_{match['i']}")


VGG_TORCH_RULES: tuple[tuple[str, Name], ...] = (
    (r"conv(?P<s>\d+)_(?P<i>\d+)", lambda m, c: f"features.{_vgg_feature_index(m, c)}"),
    (r"bn(?P<s>\d+)_(?P<i>\d+)", lambda m, c: f"features.{_vgg_feature_index(m, c) + 1}"),
    (r"fc6", "classifier.0"),
    (r"fc7", "classifier.3"),
    (r"fc8", "classifier.6"),
)
VGG_KERAS_RULES: tuple[tuple[str, Name], ...] = (
    (r"conv(?P<s>\d+)_(?P<i>\d+)", r"block\g<s>_conv\g<i>"),
    (r"fc6", "fc1"),
    (r"fc7", "fc2"),
    (r"fc8", "predictions"),
)

# ---- DenseNet (torchvision and timm) ------------------------------------------------------------------------------
DENSENET_TORCH_RULES: tuple[tuple[str, Name], ...] = (
    (r"stem/conv", "features.conv0"),
    (r"stem/bn", "features.norm0"),
    (r"block(?P<b>\d+)_layer(?P<i>\d+)/conv(?P<k>\d)/conv",
     lambda m, c: f"features.denseblock{m['b']}.denselayer{_i(m, 'i', 1)}.conv{m['k']}"),
    (r"block(?P<b>\d+)_layer(?P<i>\d+)/conv(?P<k>\d)/bn",
     lambda m, c: f"features.denseblock{m['b']}.denselayer{_i(m, 'i', 1)}.norm{m['k']}"),
    (r"transition(?P<t>\d+)/conv", r"features.transition\g<t>.conv"),
    (r"transition(?P<t>\d+)/bn", r"features.transition\g<t>.norm"),
    (r"final_bn", "features.norm5"),
    (r"head/fc", "classifier"),
)
# Keras: dense block b is "conv{b+1}", layer i is "block{i+1}" with BN "_0_bn" before conv "_1_conv" and "_1_bn"
# before "_2_conv"; transition t is "pool{t+1}".
_KERAS_DENSE_UNIT = {("1", "bn"): "0_bn", ("1", "conv"): "1_conv", ("2", "bn"): "1_bn", ("2", "conv"): "2_conv"}
DENSENET_KERAS_RULES: tuple[tuple[str, Name], ...] = (
    (r"stem/(?P<u>conv|bn)", r"conv1_\g<u>"),
    (r"block(?P<b>\d+)_layer(?P<i>\d+)/conv(?P<k>\d)/(?P<u>conv|bn)",
     lambda m, c: f"conv{_i(m, 'b', 1)}_block{_i(m, 'i', 1)}_{_KERAS_DENSE_UNIT[m['k'], m['u']]}"),
    (r"transition(?P<t>\d+)/(?P<u>conv|bn)", lambda m, c: f"pool{_i(m, 't', 1)}_{m['u']}"),
    (r"final_bn", "bn"),
    (r"head/fc", "predictions"),
)


# ---- MobileNet v2 / EfficientNet (MBConv) -------------------------------------------------------------------------
def _expands(m: re.Match, c: Context) -> bool:
    return c.has(f"stage{m['s']}_block{m['b']}/expand/conv")


def _tv_mbv2_block(m: re.Match, c: Context) -> str:
    """torchvision MobileNetV2: ``features.{n}.conv`` = [expand ConvBNReLU], depthwise ConvBNReLU, conv, BN."""
    prefix = f"features.{c.block_index(_i(m, 's'), _i(m, 'b')) + 1}.conv"
    first = 1 if _expands(m, c) else 0
    if m["part"] == "expand":
        return f"{prefix}.0.{_SEQ[m['u']]}"
    if m["part"] == "depthwise":
        return f"{prefix}.{first}.{_SEQ[m['u']]}"
    return f"{prefix}.{first + 1 + (m['u'] == 'bn')}"  # project: a bare conv, then its BN


MBV2_TORCHVISION_RULES: tuple[tuple[str, Name], ...] = (
    (r"stem/(?P<u>conv|bn)", lambda m, c: f"features.0.{_SEQ[m['u']]}"),
    (r"stage(?P<s>\d+)_block(?P<b>\d+)/(?P<part>expand|depthwise|project)/(?P<u>conv|bn)", _tv_mbv2_block),
    (r"head_conv/(?P<u>conv|bn)", lambda m, c: f"features.{c.num_blocks() + 1}.{_SEQ[m['u']]}"),
    (r"head/fc", "classifier.1"),
)


def _tv_mbconv_unit(m: re.Match, c: Context, prefix: str) -> str:
    """``{prefix}.{position}.{unit}`` in torchvision's MBConv ``block`` Sequential: [expand], depthwise,
    [SqueezeExcitation], project."""
    first = 1 if _expands(m, c) else 0
    se = 1 if c.has(f"stage{m['s']}_block{m['b']}/se/reduce") else 0
    position = {"expand": 0, "depthwise": first, "se": first + 1, "project": first + 1 + se}[m["part"]]
    unit = {"conv": "0", "bn": "1", "reduce": "fc1", "expand": "fc2"}[m["u"]]
    return f"{prefix}.{position}.{unit}"


def _tv_effnet_block(m: re.Match, c: Context) -> str:
    """torchvision EfficientNet: ``features.{s}.{b}.block``."""
    return _tv_mbconv_unit(m, c, f"features.{m['s']}.{m['b']}.block")


EFFNET_TORCHVISION_RULES: tuple[tuple[str, Name], ...] = (
    (r"stem/(?P<u>conv|bn)", lambda m, c: f"features.0.{_SEQ[m['u']]}"),
    (r"stage(?P<s>\d+)_block(?P<b>\d+)/(?P<part>expand|depthwise|project|se)/(?P<u>conv|bn|reduce|expand)",
     _tv_effnet_block),
    (r"head_conv/(?P<u>conv|bn)", lambda m, c: f"features.{c.num_stages() + 1}.{_SEQ[m['u']]}"),
    (r"head/fc", "classifier.1"),
)


def _timm_mbconv_block(m: re.Match, c: Context) -> str:
    """timm ``blocks.{s-1}.{b}``: DepthwiseSeparableConv (conv_dw, bn1, se, conv_pw, bn2) when there is no
    expansion, InvertedResidual (conv_pw, bn1, conv_dw, bn2, se, conv_pwl, bn3) otherwise."""
    prefix = c.timm_block(_i(m, "s"), _i(m, "b"))
    if _expands(m, c):
        names = {("expand", "conv"): "conv_pw", ("expand", "bn"): "bn1", ("depthwise", "conv"): "conv_dw",
                 ("depthwise", "bn"): "bn2", ("project", "conv"): "conv_pwl", ("project", "bn"): "bn3"}
    else:
        names = {("depthwise", "conv"): "conv_dw", ("depthwise", "bn"): "bn1", ("project", "conv"): "conv_pw",
                 ("project", "bn"): "bn2"}
    if m["part"] == "se":
        return f"{prefix}.se.conv_{m['u']}"
    return f"{prefix}.{names[m['part'], m['u']]}"


_TIMM_MBCONV_BLOCKS = (r"stage(?P<s>\d+)_block(?P<b>\d+)/(?P<part>expand|depthwise|project|se)/"
                       r"(?P<u>conv|bn|reduce|expand)", _timm_mbconv_block)
MBCONV_TIMM_RULES: tuple[tuple[str, Name], ...] = (
    (r"stem/conv", "conv_stem"),
    (r"stem/bn", "bn1"),
    _TIMM_MBCONV_BLOCKS,
    (r"head_conv/conv", "conv_head"),
    (r"head_conv/bn", "bn2"),
    (r"head/fc", "classifier"),
)


def _keras_mbv2_block(m: re.Match, c: Context) -> str:
    """keras.applications.MobileNetV2: block 0 is ``expanded_conv_*``, block n ``block_{n}_*``; BN ``*_BN``."""
    n = c.block_index(_i(m, "s"), _i(m, "b"))
    prefix = "expanded_conv" if n == 0 else f"block_{n}"
    return f"{prefix}_{m['part']}" + ("_BN" if m["u"] == "bn" else "")


MBV2_KERAS_RULES: tuple[tuple[str, Name], ...] = (
    (r"stem/conv", "Conv1"),
    (r"stem/bn", "bn_Conv1"),
    (r"stage(?P<s>\d+)_block(?P<b>\d+)/(?P<part>expand|depthwise|project)/(?P<u>conv|bn)", _keras_mbv2_block),
    (r"head_conv/conv", "Conv_1"),
    (r"head_conv/bn", "Conv_1_bn"),
    (r"head/fc", "predictions"),
)


def _keras_effnet_block(m: re.Match, c: Context) -> str:
    """keras.applications.EfficientNetB*: stage s block b is ``block{s}{'abc...'[b]}_``."""
    prefix = f"block{m['s']}{chr(ord('a') + _i(m, 'b'))}_"
    names = {("expand", "conv"): "expand_conv", ("expand", "bn"): "expand_bn", ("depthwise", "conv"): "dwconv",
             ("depthwise", "bn"): "bn", ("project", "conv"): "project_conv", ("project", "bn"): "project_bn",
             ("se", "reduce"): "se_reduce", ("se", "expand"): "se_expand"}
    return prefix + names[m["part"], m["u"]]


EFFNET_KERAS_RULES: tuple[tuple[str, Name], ...] = (
    (r"stem/(?P<u>conv|bn)", r"stem_\g<u>"),
    (r"stage(?P<s>\d+)_block(?P<b>\d+)/(?P<part>expand|depthwise|project|se)/(?P<u>conv|bn|reduce|expand)",
     _keras_effnet_block),
    (r"head_conv/(?P<u>conv|bn)", r"top_\g<u>"),
    (r"head/fc", "predictions"),
)

# ---- GoogLeNet (torchvision) --------------------------------------------------------------------------------------
_GOOGLENET_BRANCHES = {
    "branch1x1": "branch1", "branch3x3_reduce": "branch2.0", "branch3x3": "branch2.1",
    "branch5x5_reduce": "branch3.0", "branch5x5": "branch3.1", "branch_pool_proj": "branch4.1",
}
GOOGLENET_TORCHVISION_RULES: tuple[tuple[str, Name], ...] = (
    (r"conv(?P<k>\d)/(?P<u>conv|bn)", r"conv\g<k>.\g<u>"),
    (r"(?P<mod>inception\d[a-e])/(?P<br>\w+)/(?P<u>conv|bn)",
     lambda m, c: f"{m['mod']}.{_GOOGLENET_BRANCHES[m['br']]}.{m['u']}"),
    (r"(?P<aux>aux\d)/conv/(?P<u>conv|bn)", r"\g<aux>.conv.\g<u>"),
    (r"(?P<aux>aux\d)/(?P<fc>fc\d)", r"\g<aux>.\g<fc>"),
    (r"head/fc", "fc"),
)

# ---- Inception v3 -------------------------------------------------------------------------------------------------
# torchvision's names of op j of branch i (``branch{i}_{j}``, Split halves a/b) in each kind of Inception module.
_V3_TV_BRANCHES: dict[str, dict[str, str]] = {
    "A": {"branch0_0": "branch1x1", "branch1_0": "branch5x5_1", "branch1_1": "branch5x5_2",
          "branch2_0": "branch3x3dbl_1", "branch2_1": "branch3x3dbl_2", "branch2_2": "branch3x3dbl_3",
          "branch3_1": "branch_pool"},
    "B": {"branch0_0": "branch3x3", "branch1_0": "branch3x3dbl_1", "branch1_1": "branch3x3dbl_2",
          "branch1_2": "branch3x3dbl_3"},
    "C": {"branch0_0": "branch1x1", **{f"branch1_{j}": f"branch7x7_{j + 1}" for j in range(3)},
          **{f"branch2_{j}": f"branch7x7dbl_{j + 1}" for j in range(5)}, "branch3_1": "branch_pool"},
    "D": {"branch0_0": "branch3x3_1", "branch0_1": "branch3x3_2",
          **{f"branch1_{j}": f"branch7x7x3_{j + 1}" for j in range(4)}},
    "E": {"branch0_0": "branch1x1", "branch1_0": "branch3x3_1", "branch1_1a": "branch3x3_2a",
          "branch1_1b": "branch3x3_2b", "branch2_0": "branch3x3dbl_1", "branch2_1": "branch3x3dbl_2",
          "branch2_2a": "branch3x3dbl_3a", "branch2_2b": "branch3x3dbl_3b", "branch3_1": "branch_pool"},
}
_V3_MODULE_KIND = {"5b": "A", "5c": "A", "5d": "A", "6a": "B", "6b": "C", "6c": "C", "6d": "C", "6e": "C",
                   "7a": "D", "7b": "E", "7c": "E"}
_V3_TV_STEM = {"conv2d_1a": "Conv2d_1a_3x3", "conv2d_2a": "Conv2d_2a_3x3", "conv2d_2b": "Conv2d_2b_3x3",
               "conv2d_3b": "Conv2d_3b_1x1", "conv2d_4a": "Conv2d_4a_3x3"}
INCEPTION_V3_TORCHVISION_RULES: tuple[tuple[str, Name], ...] = (
    (r"(?P<l>conv2d_\w+)/(?P<u>conv|bn)", lambda m, c: f"{_V3_TV_STEM[m['l']]}.{m['u']}"),
    (r"mixed_(?P<l>\d[a-e])/(?P<br>branch\w+)/(?P<u>conv|bn)",
     lambda m, c: f"Mixed_{m['l']}.{_V3_TV_BRANCHES[_V3_MODULE_KIND[m['l']]][m['br']]}.{m['u']}"),
    (r"aux/(?P<l>conv\d)/(?P<u>conv|bn)", r"AuxLogits.\g<l>.\g<u>"),
    (r"aux/fc", "AuxLogits.fc"),
    (r"head/fc", "fc"),
)


def inception_v3_conv_order() -> list[str]:
    """cnn_jax Inception-v3 conv modules (``conv2d_1a``, ``mixed_5b/branch1_1``, ...) in the order of the layer
    table, which is the order in which keras.applications.InceptionV3 creates (and auto-numbers) its convs."""
    from cnn_jax.models.inception import INCEPTION_V3, Conv, Split

    order = []
    for name, spec in INCEPTION_V3:
        if isinstance(spec, Conv):
            order.append(name)
        elif not hasattr(spec, "kind"):  # a module: branches of ops
            for i, branch in enumerate(spec):
                for j, op in enumerate(branch):
                    if isinstance(op, Conv):
                        order.append(f"{name}/branch{i}_{j}")
                    elif isinstance(op, Split):
                        order.extend(f"{name}/branch{i}_{j}{'ab'[k]}" for k in range(len(op.parts)))
    return order


def _keras_inception(m: re.Match, c: Context) -> str:
    # Keras InceptionV3's conv2d_bn layers are unnamed (conv2d_N / batch_normalization_N): match by position.
    kind = "Conv2D" if m["u"] == "conv" else "BatchNormalization"
    return c.keras_layer(kind, inception_v3_conv_order().index(m["l"]))


INCEPTION_V3_KERAS_RULES: tuple[tuple[str, Name], ...] = (
    (r"(?P<l>conv2d_\w+|mixed_\w+/branch\w+)/(?P<u>conv|bn)", _keras_inception),
    (r"head/fc", "predictions"),
)

# ---- AlexNet (torchvision: features = conv, relu, [pool] per conv; classifier = dropout, fc, relu, ...) -------------
ALEXNET_TORCH_RULES: tuple[tuple[str, Name], ...] = (
    (r"conv(?P<i>[1-5])", lambda m, c: f"features.{(0, 3, 6, 8, 10)[_i(m, 'i', -1)]}"),
    (r"fc6", "classifier.1"),
    (r"fc7", "classifier.4"),
    (r"fc8", "classifier.6"),
)

# ---- ShuffleNet v2 (torchvision: branch1 = dw conv, BN, 1x1 conv, BN, ReLU; branch2 = 1x1, BN, ReLU, dw, BN, 1x1,
# BN, ReLU) ----------------------------------------------------------------------------------------------------------
_TV_SHUFFLE_V2_UNIT = {"branch1_dw": ("branch1", 0), "branch1_conv": ("branch1", 2), "branch2_conv1": ("branch2", 0),
                       "branch2_dw": ("branch2", 3), "branch2_conv2": ("branch2", 5)}


def _tv_shufflenet_v2_unit(m: re.Match, c: Context) -> str:
    branch, position = _TV_SHUFFLE_V2_UNIT[m["part"]]
    return f"stage{m['s']}.{m['b']}.{branch}.{position + (m['u'] == 'bn')}"


SHUFFLENET_V2_TORCH_RULES: tuple[tuple[str, Name], ...] = (
    (r"stem/(?P<u>conv|bn)", lambda m, c: f"conv1.{_SEQ[m['u']]}"),
    (r"stage(?P<s>\d+)_block(?P<b>\d+)/(?P<part>branch[12]_\w+)/(?P<u>conv|bn)", _tv_shufflenet_v2_unit),
    (r"conv5/(?P<u>conv|bn)", lambda m, c: f"conv5.{_SEQ[m['u']]}"),
    (r"head/fc", "fc"),
)


# ---- MobileNet v3 (torchvision: features.{n}.block = [expand], depthwise, [SqueezeExcitation], project) -----------
def _tv_mbv3_block(m: re.Match, c: Context) -> str:
    """torchvision MobileNetV3: ``features.{n}.block`` with n counting blocks over all stages after the stem."""
    return _tv_mbconv_unit(m, c, f"features.{c.block_index(_i(m, 's'), _i(m, 'b')) + 1}.block")


MBV3_TORCHVISION_RULES: tuple[tuple[str, Name], ...] = (
    (r"stem/(?P<u>conv|bn)", lambda m, c: f"features.0.{_SEQ[m['u']]}"),
    (r"stage(?P<s>\d+)_block(?P<b>\d+)/(?P<part>expand|depthwise|project|se)/(?P<u>conv|bn|reduce|expand)",
     _tv_mbv3_block),
    (r"head_conv/(?P<u>conv|bn)", lambda m, c: f"features.{c.num_blocks() + 1}.{_SEQ[m['u']]}"),
    (r"pre_logits", "classifier.0"),
    (r"head/fc", "classifier.3"),
)


# ---- MnasNet (torchvision: one flat ``layers`` Sequential; stacks of _InvertedResidual(layers = expand conv, BN,
# ReLU, dw conv, BN, ReLU, project conv, BN)) -----------------------------------------------------------------------
def _tv_mnasnet_block(m: re.Match, c: Context) -> str:
    stage = _i(m, "s")
    if stage == 1:  # the separable conv after the stem: layers.3/4 (depthwise), layers.6/7 (project)
        return f"layers.{ {'depthwise': 3, 'project': 6}[m['part']] + (m['u'] == 'bn')}"
    position = {"expand": 0, "depthwise": 3, "project": 6}[m["part"]] + (m["u"] == "bn")
    return f"layers.{stage + 6}.{m['b']}.layers.{position}"


MNASNET_TORCHVISION_RULES: tuple[tuple[str, Name], ...] = (
    (r"stem/(?P<u>conv|bn)", lambda m, c: f"layers.{_SEQ[m['u']]}"),
    (r"stage(?P<s>\d+)_block(?P<b>\d+)/(?P<part>expand|depthwise|project)/(?P<u>conv|bn)", _tv_mnasnet_block),
    (r"head_conv/(?P<u>conv|bn)", lambda m, c: f"layers.{14 + (m['u'] == 'bn')}"),
    (r"head/fc", "classifier.1"),
)

# ---- timm ResNet family: ResNet-B/C/D/S, ResNeXt, SE-ResNe(X)t, SENet-154, ResNeSt --------------------------------
def _timm_stem(m: re.Match, c: Context) -> str:
    """``conv1``/``bn1``, or the deep stem's ``conv1`` Sequential (conv, BN, ReLU x 3) whose last BN is ``bn1``."""
    if not c.has("stem/conv2/conv"):
        return {"conv": "conv1", "bn": "bn1"}[m["u"]]
    k = _i(m, "k")
    if (k, m["u"]) == (3, "bn"):
        return "bn1"
    return f"conv1.{3 * (k - 1) + (m['u'] == 'bn')}"


def _timm_downsample(m: re.Match, c: Context) -> str:
    """``downsample`` = [AvgPool (ResNet-D's average-pool shortcut)], conv, BN."""
    prefix = f"layer{m['s']}.{m['b']}.downsample"
    first = 0 if c.source is None or c.source_has(f"{prefix}.0.weight") else 1
    return f"{prefix}.{first + (m['u'] == 'bn')}"


_RESNEST_SPLIT = {"conv/conv": "conv", "conv/bn": "bn0", "fc1": "fc1", "bn1": "bn1", "fc2": "fc2"}
RESNET_TIMM_RULES: tuple[tuple[str, Name], ...] = (
    (r"stem/conv(?P<k>\d)/(?P<u>conv|bn)", _timm_stem),
    (r"stage(?P<s>\d+)_block(?P<b>\d+)/conv(?P<k>\d)/conv", r"layer\g<s>.\g<b>.conv\g<k>"),
    (r"stage(?P<s>\d+)_block(?P<b>\d+)/conv(?P<k>\d)/bn", r"layer\g<s>.\g<b>.bn\g<k>"),
    (r"stage(?P<s>\d+)_block(?P<b>\d+)/conv2/(?P<u>conv/conv|conv/bn|fc1|bn1|fc2)",
     lambda m, c: f"layer{m['s']}.{m['b']}.conv2.{_RESNEST_SPLIT[m['u']]}"),  # ResNeSt's split attention
    (r"stage(?P<s>\d+)_block(?P<b>\d+)/se/reduce", r"layer\g<s>.\g<b>.se.fc1"),
    (r"stage(?P<s>\d+)_block(?P<b>\d+)/se/expand", r"layer\g<s>.\g<b>.se.fc2"),
    (r"stage(?P<s>\d+)_block(?P<b>\d+)/downsample/(?P<u>conv|bn)", _timm_downsample),
    (r"head/fc", "fc"),
)
# timm's legacy_senet154 (the Cadene port) names the same modules differently.
_LEGACY_SENET = (("conv1.0", "layer0.conv1"), ("conv1.1", "layer0.bn1"), ("conv1.3", "layer0.conv2"),
                 ("conv1.4", "layer0.bn2"), ("conv1.6", "layer0.conv3"), ("bn1", "layer0.bn3"), ("fc", "last_linear"))


def _is_legacy_senet(source: Source | None) -> bool:
    return source is not None and "layer0.conv1.weight" in source.tensors


def _legacy_senet_names(name: str, c: Context) -> str:
    if not _is_legacy_senet(c.source):
        return name
    name = dict(_LEGACY_SENET).get(name, name)
    return re.sub(r"\.se\.", ".se_module.", name)


# ---- timm ResNetV2 (pre-activation) -------------------------------------------------------------------------------
RESNETV2_TIMM_RULES: tuple[tuple[str, Name], ...] = (
    (r"stem_conv", "stem.conv"),
    (r"stage(?P<s>\d+)_block(?P<b>\d+)/bn(?P<k>\d)",
     lambda m, c: f"stages.{_i(m, 's', -1)}.blocks.{m['b']}.norm{m['k']}"),
    (r"stage(?P<s>\d+)_block(?P<b>\d+)/conv(?P<k>\d)",
     lambda m, c: f"stages.{_i(m, 's', -1)}.blocks.{m['b']}.conv{m['k']}"),
    (r"stage(?P<s>\d+)_block(?P<b>\d+)/downsample",
     lambda m, c: f"stages.{_i(m, 's', -1)}.blocks.{m['b']}.downsample.conv"),
    (r"norm", "norm"),
    (r"head/fc", "head.fc"),  # a 1x1 conv in timm
)

# ---- timm MobileNet v1 / v3 (EfficientNet builder: blocks.{i}.{j}) ------------------------------------------------
MBV1_TIMM_RULES: tuple[tuple[str, Name], ...] = (
    (r"stem/conv", "conv_stem"),
    (r"stem/bn", "bn1"),
    _TIMM_MBCONV_BLOCKS,
    (r"head/fc", "classifier"),
)


def _timm_mbv3_head_conv(m: re.Match, c: Context) -> str:
    """timm's MobileNetV3 ends its ``blocks`` with the 1x1 head conv (a ConvBnAct: ``conv``, ``bn1``)."""
    names = c.source.tensors if c.source else ()
    last = max((int(found[1]) for name in names if (found := re.match(r"blocks\.(\d+)\.", name))), default=6)
    return f"blocks.{last}.0.{ {'conv': 'conv', 'bn': 'bn1'}[m['u']]}"


MBV3_TIMM_RULES: tuple[tuple[str, Name], ...] = (
    (r"stem/conv", "conv_stem"),
    (r"stem/bn", "bn1"),
    _TIMM_MBCONV_BLOCKS,
    (r"head_conv/(?P<u>conv|bn)", _timm_mbv3_head_conv),
    (r"pre_logits", "conv_head"),  # a 1x1 conv with bias in timm
    (r"head/fc", "classifier"),
)


# ---- timm Inception v4 / Inception-ResNet-v2 ----------------------------------------------------------------------
def _timm_inception_branch(prefix: str, m: re.Match, c: Context) -> str:
    """timm names op j of branch i ``branch{i}_{j}`` (Inception-C's split), ``branch{i}.{j}`` (a Sequential),
    ``branch{i}`` (a one-conv branch) or ``conv`` (a module with one conv beside a pool)."""
    i, j = m["i"], m["j"]
    module = c.first_present([f"{prefix}.branch{i}_{j}", f"{prefix}.branch{i}.{j}", f"{prefix}.branch{i}",
                              f"{prefix}.conv"], "conv.weight")
    return f"{module}.{m['u']}"


def _inception_v4_module(name: str) -> int:
    """Index of cnn_jax Inception-v4 module ``name`` (``mixed_4a``, ``inception_b_3``) in timm's ``features``."""
    from cnn_jax.models.inception import INCEPTION_V4_BODY, INCEPTION_V4_STEM

    names = [n for n, _ in INCEPTION_V4_STEM if not n.startswith("maxpool")]
    for stage in INCEPTION_V4_BODY:
        names += [f"{stage.name}_{d}" for d in range(stage.depth)] if stage.depth > 1 else [stage.name]
    return names.index(name)


_BRANCH_OP = r"(?P<mod>\w+)/branch(?P<i>\d)_(?P<j>\d[ab]?)/(?P<u>conv|bn)"
INCEPTION_V4_TIMM_RULES: tuple[tuple[str, Name], ...] = (
    (r"(?P<mod>conv2d_\w+)/(?P<u>conv|bn)", lambda m, c: f"features.{_inception_v4_module(m['mod'])}.{m['u']}"),
    (_BRANCH_OP, lambda m, c: _timm_inception_branch(f"features.{_inception_v4_module(m['mod'])}", m, c)),
    (r"head/fc", "last_linear"),
)
_IRV2_TIMM_MODULES = {"reduction_a": "mixed_6a", "reduction_b": "mixed_7a", "inception_resnet_c_last": "block8"}
_IRV2_TIMM_REPEATS = {"inception_resnet_a": "repeat", "inception_resnet_b": "repeat_1",
                      "inception_resnet_c": "repeat_2"}


def _irv2_timm_module(name: str) -> str:
    match = re.fullmatch(r"(inception_resnet_[abc])_(\d+)", name)
    return f"{_IRV2_TIMM_REPEATS[match[1]]}.{match[2]}" if match else _IRV2_TIMM_MODULES.get(name, name)


INCEPTION_RESNET_V2_TIMM_RULES: tuple[tuple[str, Name], ...] = (
    (r"(?P<mod>conv2d_\w+)/(?P<u>conv|bn)", r"\g<mod>.\g<u>"),
    (_BRANCH_OP, lambda m, c: _timm_inception_branch(_irv2_timm_module(m["mod"]), m, c)),
    (r"(?P<mod>\w+)/conv2d", lambda m, c: f"{_irv2_timm_module(m['mod'])}.conv2d"),  # the residual 1x1 (bias)
    (r"head/fc", "classif"),
)

# ---- The tables by format -----------------------------------------------------------------------------------------
RESNET_TV = Mapping("torchvision ResNet/ResNeXt/Wide ResNet", RESNET_TORCH_RULES, "head/fc", bn_eps=1e-5)
VGG_TV = Mapping("torchvision VGG", VGG_TORCH_RULES, "fc8", bn_eps=1e-5, flatten_chw={"fc6": 512},
                 note="fc6 rows permuted from torchvision's NCHW flatten to NHWC")
DENSENET_TV = Mapping("torchvision DenseNet", DENSENET_TORCH_RULES, "head/fc", bn_eps=1e-5)
MBV2_TV = Mapping("torchvision MobileNetV2", MBV2_TORCHVISION_RULES, "head/fc", bn_eps=1e-5)
EFFNET_TV = Mapping("torchvision EfficientNet B0-B4", EFFNET_TORCHVISION_RULES, "head/fc", bn_eps=1e-5,
                    overrides={"norm_convention": "pytorch"},
                    note="torchvision 0.28's B0-B4 use PyTorch's BatchNorm defaults (eps 1e-5); symmetric padding")
# B5-B7 were ported from the TF weights: BatchNorm2d(eps=0.001, momentum=0.01), i.e. the TF convention.
EFFNET_TV_B5_B7 = Mapping("torchvision EfficientNet B5-B7", EFFNET_TORCHVISION_RULES, "head/fc", bn_eps=1e-3,
                          overrides={"norm_convention": "tf"},
                          note="torchvision 0.28's B5-B7: BN eps 1e-3, momentum 0.01 (TF's); symmetric padding")
GOOGLENET_TV = Mapping("torchvision GoogLeNet", GOOGLENET_TORCHVISION_RULES, "head/fc", bn_eps=1e-3,
                       flatten_chw={"aux1/fc1": 128, "aux2/fc1": 128}, input=preprocessing.TORCHVISION_TRANSFORM_INPUT,
                       note="aux fc1 rows permuted NCHW -> NHWC; transform_input is the input convention")
INCEPTION_V3_TV = Mapping("torchvision Inception v3", INCEPTION_V3_TORCHVISION_RULES, "head/fc", bn_eps=1e-3,
                          input=preprocessing.TORCHVISION_TRANSFORM_INPUT,
                          note="transform_input is the input convention")
ALEXNET_TV = Mapping("torchvision AlexNet", ALEXNET_TORCH_RULES, "fc8", flatten_chw={"fc6": 256},
                     note="fc6 rows permuted from torchvision's NCHW flatten to NHWC")
SHUFFLENET_V2_TV = Mapping("torchvision ShuffleNet v2", SHUFFLENET_V2_TORCH_RULES, "head/fc", bn_eps=1e-5)
MBV3_TV = Mapping("torchvision MobileNetV3", MBV3_TORCHVISION_RULES, "head/fc", bn_eps=1e-3,
                  note="BN eps 1e-3 (the models' 'tf' convention)")
MNASNET_TV = Mapping("torchvision MNASNet", MNASNET_TORCHVISION_RULES, "head/fc", bn_eps=1e-5,
                     overrides={"norm_convention": "pytorch"},
                     note="torchvision's MNASNet: BN eps 1e-5 (norm_convention='pytorch'; the official TF code's: "
                          "1e-3)")
TIMM_MBCONV = Mapping("timm EfficientNet/MobileNetV2", MBCONV_TIMM_RULES, "head/fc", bn_eps=1e-5,
                      overrides={"norm_convention": "pytorch"},
                      note="timm efficientnet_b*: symmetric padding, BN eps 1e-5; the tf_efficientnet_b* weights "
                           "are the format timm_tf")
TIMM_TF_MBCONV = Mapping("timm tf_efficientnet_b*", MBCONV_TIMM_RULES, "head/fc", bn_eps=1e-3,
                         overrides={"padding": "same", "norm_convention": "tf"},
                         note="the TF-ported weights: TF 'SAME' padding, BN eps 1e-3; the .ap/.ns weights expect "
                              "the Inception convention: --mean 0.5,0.5,0.5 --std 0.5,0.5,0.5")
TIMM_RESNET = Mapping("timm ResNet/ResNeXt/SE-ResNeXt/SENet/ResNeSt", RESNET_TIMM_RULES, "head/fc", bn_eps=1e-5,
                      rename=_legacy_senet_names,
                      dialect_overrides=lambda source: {"stem_pool": "ceil"} if _is_legacy_senet(source) else {},
                      note="stems and shortcuts as the file has them (deep stem, ResNet-D's average-pool shortcut); "
                           "legacy_senet154 is recognised from the file (its naming; stem_pool='ceil')")
TIMM_RESNETV2 = Mapping("timm ResNetV2 (pre-activation)", RESNETV2_TIMM_RULES, "head/fc", bn_eps=1e-5,
                        input=preprocessing.INCEPTION,
                        note="the classifier is a 1x1 conv in timm; input [-1, 1] as timm's a1h_in1k weights")
TIMM_MBV1 = Mapping("timm MobileNetV1", MBV1_TIMM_RULES, "head/fc", bn_eps=1e-5, input=preprocessing.INCEPTION,
                    overrides={"act": "relu6"}, note="ReLU6 (the paper: ReLU); input [-1, 1] as timm's ra4 weights")
TIMM_MBV3 = Mapping("timm MobileNetV3", MBV3_TIMM_RULES, "head/fc", bn_eps=1e-5,
                    overrides={"norm_convention": "pytorch"},
                    note="timm's mobilenetv3_*_100: BN eps 1e-5; its conv_head (a 1x1 conv) is pre_logits")
TIMM_TF_MBCONV_V3 = Mapping("timm tf_mobilenetv3_*", MBV3_TIMM_RULES, "head/fc", bn_eps=1e-3,
                            overrides={"padding": "same", "norm_convention": "tf"}, input=preprocessing.INCEPTION,
                            note="the TF-ported weights: TF 'SAME' padding, BN eps 1e-3")
TIMM_INCEPTION_V4 = Mapping("timm Inception v4", INCEPTION_V4_TIMM_RULES, "head/fc", bn_eps=1e-3,
                            input=preprocessing.INCEPTION)
TIMM_INCEPTION_RESNET_V2 = Mapping("timm Inception-ResNet-v2", INCEPTION_RESNET_V2_TIMM_RULES, "head/fc",
                                   bn_eps=1e-3, input=preprocessing.INCEPTION)

# format -> [(cnn_jax model name patterns, mapping)]
TORCH_MAPPINGS: dict[str, list[tuple[tuple[str, ...], Mapping]]] = {
    "torchvision": [
        (("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext*", "wide_resnet*"), RESNET_TV),
        (("vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn"), VGG_TV),
        (("densenet121", "densenet161", "densenet169", "densenet201"), DENSENET_TV),
        (("mobilenet_v2",), MBV2_TV),
        (("mobilenet_v3_large", "mobilenet_v3_small"), MBV3_TV),
        (("mnasnet0_5", "mnasnet1_0"), MNASNET_TV),
        (("alexnet",), ALEXNET_TV),
        (("shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "shufflenet_v2_x1_5", "shufflenet_v2_x2_0"), SHUFFLENET_V2_TV),
        (("efficientnet_b[0-4]",), EFFNET_TV),
        (("efficientnet_b[5-7]",), EFFNET_TV_B5_B7),
        (("googlenet", "googlenet_aux"), GOOGLENET_TV),
        (("inception_v3", "inception_v3_aux"), INCEPTION_V3_TV),
    ],
    "timm": [
        (("resnet18", "resnet34", "resnet50", "resnet50[cds]", "resnet101", "resnet152", "resnext*",
          "wide_resnet*", "seresnet50", "seresnext50_32x4d", "senet154", "resnest*"), TIMM_RESNET),
        (("densenet121", "densenet161", "densenet169", "densenet201"),
         dataclasses.replace(DENSENET_TV, family="timm DenseNet")),
        (("efficientnet_b[0-7]", "mobilenet_v2"), TIMM_MBCONV),
        (("mobilenet_v1_100",), TIMM_MBV1),  # timm publishes this width only
        (("mobilenet_v3_large", "mobilenet_v3_small"), TIMM_MBV3),
        (("resnetv2_*",), TIMM_RESNETV2),
        (("inception_v4",), TIMM_INCEPTION_V4),
        (("inception_resnet_v2",), TIMM_INCEPTION_RESNET_V2),
    ],
    "timm_tf": [
        (("efficientnet_b[0-7]",), TIMM_TF_MBCONV),
        (("mobilenet_v3_large", "mobilenet_v3_small"), TIMM_TF_MBCONV_V3),
    ],
}

# cnn_jax model -> keras.applications constructor, with the family's rules and conventions.
_KERAS_RESNET = dict(rules=RESNET_KERAS_RULES, head="head/fc", overrides={"stride_in_1x1": True},
                     input=preprocessing.KERAS_CAFFE, bgr_input_conv="stem/conv1/conv",
                     note="v1: stride on the first 1x1 (stride_in_1x1=True); conv biases folded into BN means; "
                          "BN eps 1.001e-5 folded into the variances")
_KERAS_DENSENET = dict(rules=DENSENET_KERAS_RULES, head="head/fc", input=preprocessing.KERAS_TORCH,
                       note="BN eps 1.001e-5 folded into the variances")
_KERAS_EFFNET = dict(rules=EFFNET_KERAS_RULES, head="head/fc", overrides={"padding": "same"},
                     note="TF 'SAME' padding; the model's Rescaling/Normalization layers are the input "
                          "convention (weights saved from weights='imagenet' add a Rescaling by 1/sqrt(std) that the "
                          "file does not record)")
KERAS_MAPPINGS: dict[str, Mapping] = {
    **{f"resnet{d}": Mapping(f"Keras ResNet{d}", keras_application=f"ResNet{d}", **_KERAS_RESNET)
       for d in (50, 101, 152)},
    **{f"densenet{d}": Mapping(f"Keras DenseNet{d}", keras_application=f"DenseNet{d}", **_KERAS_DENSENET)
       for d in (121, 169, 201)},
    **{f"efficientnet_b{i}": Mapping(f"Keras EfficientNetB{i}", keras_application=f"EfficientNetB{i}",
                                     **_KERAS_EFFNET) for i in range(8)},
    "mobilenet_v2": Mapping("Keras MobileNetV2", MBV2_KERAS_RULES, "head/fc", keras_application="MobileNetV2",
                            overrides={"padding": "same", "norm_convention": "tf"}, input=preprocessing.KERAS_TF,
                            note="TF 'SAME' padding (Keras pads stride-2 convs bottom/right), BN eps 1e-3"),
    **{f"vgg{d}": Mapping(f"Keras VGG{d}", VGG_KERAS_RULES, "fc8", keras_application=f"VGG{d}",
                          input=preprocessing.KERAS_CAFFE, bgr_input_conv="conv1_1",
                          note="Keras flattens NHWC like cnn_jax (no permutation); input 224 only (fixed fc1)")
       for d in (16, 19)},
    "inception_v3": Mapping("Keras InceptionV3", INCEPTION_V3_KERAS_RULES, "head/fc", keras_application="InceptionV3",
                            overrides={"count_include_pad": False}, input=preprocessing.KERAS_TF,
                            note="BN without gamma (scale=False: imported as 1); 'same' average pools exclude "
                                 "padding (count_include_pad=False); convs matched by creation order"),
}

FORMATS = ("torchvision", "timm", "timm_tf", "keras")


def supported_models(fmt: str) -> list[str]:
    """cnn_jax model names that ``fmt`` can be imported into."""
    import cnn_jax

    if fmt == "keras":
        return sorted(KERAS_MAPPINGS)
    names = cnn_jax.list_models()
    return sorted(n for n in names for patterns, _ in TORCH_MAPPINGS[fmt] if any(fnmatch.fnmatchcase(n, p)
                                                                                 for p in patterns))


def find_mapping(fmt: str, model: str) -> Mapping:
    """The mapping for importing a ``fmt`` checkpoint into the registered model ``model``."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")
    if fmt == "keras":
        if model in KERAS_MAPPINGS:
            return KERAS_MAPPINGS[model]
    else:
        for patterns, mapping in TORCH_MAPPINGS[fmt]:
            if any(fnmatch.fnmatchcase(model, p) for p in patterns):
                return mapping
    raise ValueError(f"no {fmt} mapping for model {model!r}; supported: {', '.join(supported_models(fmt))}")
