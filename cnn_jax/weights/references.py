"""The torchvision / timm reference models, built with random weights (nothing is downloaded): the exporter reads
their state-dict layout, the tests compare against them.
"""

from __future__ import annotations

import sys
from typing import Any

# The C++ operator schemas torchvision registers fake kernels for when it is imported.
TORCHVISION_OP_SCHEMAS = {
    "nms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor",
}


def import_torchvision():
    """``import torchvision``, declaring its C++ operator schemas first where its compiled ops cannot load.

    The PyPI torchvision wheel is a CUDA build: on the CPU-only torch its ``_C`` library does not load, and its
    Python side then fails registering fake kernels (``operator torchvision::nms does not exist``). Declaring the
    schemas with ``torch.library`` is enough for the models, which never call these ops.
    """
    import torch

    try:
        import torchvision
    except RuntimeError as error:
        if "torchvision::" not in str(error):
            raise
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        for op, schema in TORCHVISION_OP_SCHEMAS.items():
            try:
                torch.library.define(f"torchvision::{op}", schema)
            except RuntimeError:  # declared already
                pass
        import torchvision
    return torchvision


def build_reference(fmt: str, name: str, num_classes: int, *, aux_logits: bool | None = None,
                    transform_input: bool | None = None) -> Any:
    """The ``fmt`` ("torchvision", "timm" or "timm_tf") model ``name`` with random weights, in eval mode.

    ``aux_logits`` / ``transform_input``: torchvision GoogLeNet / Inception v3 options (None: the defaults).
    """
    if fmt == "torchvision":
        models = import_torchvision().models
        if not hasattr(models, name):
            raise ValueError(f"torchvision.models has no {name!r}")
        kwargs: dict[str, Any] = {}
        if name in ("googlenet", "inception_v3"):
            kwargs["init_weights"] = False  # scipy's truncated-normal init is slow and the values do not matter
            if aux_logits is not None:
                kwargs["aux_logits"] = aux_logits
            if transform_input is not None:
                kwargs["transform_input"] = transform_input
        model = getattr(models, name)(weights=None, num_classes=num_classes, **kwargs)
    elif fmt in ("timm", "timm_tf"):
        import_torchvision()
        import timm

        if name not in timm.list_models():
            raise ValueError(f"timm has no model {name!r}")
        model = timm.create_model(name, pretrained=False, num_classes=num_classes)
    else:
        raise ValueError(f"no PyTorch reference for format {fmt!r}; expected torchvision, timm or timm_tf")
    return model.eval()
