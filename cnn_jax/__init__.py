"""cnn_jax: classic CNNs in Flax linen, faithful to their papers, trained at scale with jax.jit + sharding.

The public names are imported on first use, so light submodules (``cnn_jax.runtime.allocator``, which
``launch.py`` needs before JAX is imported) do not pull in JAX and every model family.
"""

import importlib

_EXPORTS = {"ModelOutput": "cnn_jax.layers", "ModelInfo": "cnn_jax.registry",
            "create_model": "cnn_jax.registry", "list_models": "cnn_jax.registry",
            "model_arguments": "cnn_jax.registry", "model_info": "cnn_jax.registry",
            "CompoundScale": "cnn_jax.models.efficientnet", "compound_scale": "cnn_jax.models.efficientnet",
            "efficientnet_phi_resolution": "cnn_jax.models.efficientnet"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name in ("models", "registry"):  # imported by this package's __init__ before it became lazy
        value = importlib.import_module(f"cnn_jax.{name}")
    else:
        raise AttributeError(f"module 'cnn_jax' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
