"""Which checkpoint formats each registered model imports from, and the reference test that shows it.

``CASES`` is the list of reference comparisons ``tests/test_import_weights.py`` runs (the reference model with random
weights and perturbed BatchNorm statistics, logits compared in eval mode): ``ci`` cases run in CI, the others with
``CNN_JAX_EXTENDED_TESTS=1``. :func:`readme_table` renders the README's coverage table from ``CASES`` and the
mapping tables (``python -m cnn_jax.weights.coverage``); a test keeps the README equal to it.
"""

from __future__ import annotations

import dataclasses
import fnmatch

from cnn_jax.reporting import markdown_table
from cnn_jax.weights import mappings


@dataclasses.dataclass(frozen=True)
class Case:
    """A reference comparison: the ``reference`` model of ``fmt`` imported into the cnn_jax ``model``."""

    fmt: str
    reference: str  # torchvision / timm model name, or keras.applications constructor
    model: str
    resolution: int
    ci: bool = False


def _cases(fmt: str, pairs: str, resolution: int, ci: bool = False) -> list[Case]:
    """``"ref=model ref2 ..."`` (a bare name: the same on both sides)."""
    out = []
    for pair in pairs.split():
        reference, _, model = pair.partition("=")
        out.append(Case(fmt, reference, model or reference, resolution, ci))
    return out


CASES: tuple[Case, ...] = tuple(
    # torchvision: one model per name table in CI, the rest of each family extended.
    _cases("torchvision", "resnet18 resnet50 densenet121 mobilenet_v2 efficientnet_b0", 32, ci=True)
    + _cases("torchvision", "googlenet=googlenet_aux", 32, ci=True)
    + _cases("torchvision", "vgg16", 64, ci=True)  # 2x2 before the 7x7 adaptive pool: fc6's row order matters
    + _cases("torchvision", "inception_v3", 75, ci=True)
    + _cases("torchvision", "alexnet", 127, ci=True)  # 3x3 before the 6x6 adaptive pool
    + _cases("torchvision", "shufflenet_v2_x0_5 mobilenet_v3_small mobilenet_v3_large mnasnet0_5", 64, ci=True)
    + _cases("torchvision", "resnet34 resnet101 resnet152 resnext50_32x4d resnext101_32x8d resnext101_64x4d "
                            "wide_resnet50_2 wide_resnet101_2 densenet161 densenet169 densenet201 googlenet", 32)
    + _cases("torchvision", "efficientnet_b1 efficientnet_b2 efficientnet_b5 efficientnet_b6 efficientnet_b7", 64)
    + _cases("torchvision", "inception_v3=inception_v3_aux", 75)  # eval mode: the main head (aux needs 299)
    + _cases("torchvision", "vgg11 vgg13 vgg19 vgg11_bn vgg13_bn vgg16_bn vgg19_bn shufflenet_v2_x1_0 "
                            "shufflenet_v2_x1_5 shufflenet_v2_x2_0 mnasnet1_0", 64)
    # timm: its own families in CI (deep stem + average-pool shortcut, SE + groups, split attention, pre-activation
    # with a 1x1-conv classifier, blocks regrouped into other stages, Inception branch names, TF padding).
    + _cases("timm", "resnet50 efficientnet_b0 resnet50d seresnext50_32x4d resnest50d resnetv2_50", 32, ci=True)
    + _cases("timm", "mobilenetv3_large_100=mobilenet_v3_large", 64, ci=True)
    + _cases("timm", "inception_resnet_v2", 75, ci=True)
    + _cases("timm_tf", "tf_efficientnet_b0=efficientnet_b0", 64, ci=True)  # 'SAME': odd and even sizes differ
    + _cases("timm", "resnet50c resnet50s seresnet50 senet154 legacy_senet154=senet154 resnet18 resnext50_32x4d "
                     "wide_resnet50_2 densenet121 mobilenetv2_100=mobilenet_v2 mobilenetv1_100=mobilenet_v1_100", 32)
    + _cases("timm", "resnest101e mobilenetv3_small_100=mobilenet_v3_small", 64)
    + _cases("timm", "inception_v4", 75)
    + _cases("timm_tf", "tf_efficientnet_b3=efficientnet_b3 tf_mobilenetv3_large_100=mobilenet_v3_large", 64)
    # Keras: EfficientNet's and DenseNet's rules are checked against torchvision in CI; VGG's classifier is fixed at
    # 224x224 (~550 MB of weights written and read).
    + _cases("keras", "ResNet50=resnet50 MobileNetV2=mobilenet_v2", 32, ci=True)
    + _cases("keras", "InceptionV3=inception_v3", 75, ci=True)
    + _cases("keras", "EfficientNetB0=efficientnet_b0 DenseNet121=densenet121", 32)
    + _cases("keras", "VGG16=vgg16", 224)
)

# Reference models of the parameter-count table that no comparison can check, and why (their rows name the model
# whose comparison checks the same rules).
NOT_COMPARED: dict[tuple[str, str], str] = {
    ("torchvision", "efficientnet_b3"): "with random weights the reference forgets its input (the logits of two "
                                        "different images agree to 1e-3 of their scale), so a comparison cannot see "
                                        "its weights",
    ("torchvision", "efficientnet_b4"): "as efficientnet_b3",
}

# Registered models without an importable public checkpoint, and why.
NOT_AVAILABLE: tuple[tuple[str, str], ...] = (
    ("lenet5* alexnet_paper zfnet nin_imagenet googlenet_paper*", "the paper's layout; no public checkpoint of it"),
    ("resnet20 resnet32 resnet44 resnet56 resnet110* resnet1202 plain* preact_resnet* wrn* densenet_bc* "
     "*_cifar", "CIFAR-size networks: no public checkpoint in these formats"),
    ("shufflenet_v1_*", "no torchvision, timm or Keras ShuffleNet v1"),
    ("mobilenet_v1_025 mobilenet_v1_050 mobilenet_v1_075", "timm publishes mobilenetv1_100 only"),
    ("efficientnet_phi", "a compound-scaling grid point, not a published model"),
)
# keras.applications constructors with a cnn_jax architecture that do not import, and why.
KERAS_NOT_MAPPED: tuple[tuple[str, str], ...] = (
    ("ResNet50V2/101V2/152V2", "strides in the last block of each stage (TF-slim v2), not the first as resnetv2_*"),
    ("MobileNet (v1)", "its classifier is a 1x1 conv after a reshape and dropout; not mapped yet"),
    ("MobileNetV3Large/Small", "bakes rescaling into the model and orders the head differently"),
    ("InceptionResNetV2", "conv biases and unnamed layers; timm's inception_resnet_v2 covers the architecture"),
    ("Xception, NASNet*, EfficientNetV2*, ConvNeXt*", "no cnn_jax counterpart"),
)


def supported(fmt: str, model: str) -> bool:
    try:
        mappings.find_mapping(fmt, model)
    except ValueError:
        return False
    return True


def _matches(model: str, patterns: str) -> bool:
    return any(fnmatch.fnmatchcase(model, p) for p in patterns.split())


def readme_table() -> str:
    """The README's table: one row per model that imports from some format; per format ``CI`` (a reference
    comparison in CI), ``extended`` (in the extended suite), ``rules of X`` (no comparison of its own: the name
    table and conventions compared on model X), ``-`` (no mapping)."""
    import cnn_jax

    by_pair: dict[tuple[str, str], list[Case]] = {}
    for case in CASES:
        by_pair.setdefault((case.fmt, case.model), []).append(case)
    formats = mappings.FORMATS
    body = []
    for model in cnn_jax.list_models():
        cells = []
        for fmt in formats:
            cases = by_pair.get((fmt, model), [])
            if not supported(fmt, model):
                cells.append("-")
            elif not cases:
                rules = mappings.find_mapping(fmt, model).rules
                tested = [c.model for c in CASES if c.fmt == fmt and supported(fmt, c.model)
                          and mappings.find_mapping(fmt, c.model).rules is rules]
                cells.append(f"rules of `{tested[0]}`" if tested else "untested")
            else:
                refs = ", ".join(f"`{c.reference}`" for c in cases if c.reference != model)
                where = "CI" if any(c.ci for c in cases) else "extended"
                cells.append(f"{where}" + (f" ({refs})" if refs else ""))
        if any(cell != "-" for cell in cells):
            body.append([f"`{model}`", *cells])
    lines = markdown_table(["model", *(f"`{f}`" for f in formats)], body)
    lines.append("")
    lines.append("A `-`: the library has no such model (torchvision has no ResNet-C/D/S, SE-ResNe(X)t, SENet, "
                 "ResNeSt, ResNetV2, MobileNet v1, Inception v4 or Inception-ResNet-v2; `timm_tf` holds only TF "
                 "ports), or, for Keras, the application does not import (below).")
    lines.append("")
    lines.append("Not compared against their reference, although their rules are:")
    lines += [f"- `{fmt}` `{model}`: {reason}." for (fmt, model), reason in NOT_COMPARED.items()]
    lines.append("")
    lines.append("Not available (no row above):")
    for patterns, reason in NOT_AVAILABLE:
        models = [m for m in cnn_jax.list_models() if _matches(m, patterns)]
        if models:
            lines.append(f"- {', '.join(f'`{m}`' for m in models)}: {reason}.")
    lines.append("")
    lines.append("`keras.applications` models that do not import:")
    lines += [f"- {name}: {reason}." for name, reason in KERAS_NOT_MAPPED]
    return "\n".join(lines)


if __name__ == "__main__":
    print(readme_table())
