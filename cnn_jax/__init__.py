"""cnn_jax: classic CNNs in Flax linen, faithful to their papers, trained at scale with jax.jit + sharding."""

from cnn_jax.models.layers import ModelOutput
from cnn_jax.registry import ModelInfo, create_model, list_models, model_arguments, model_info

__all__ = ["ModelInfo", "ModelOutput", "create_model", "list_models", "model_arguments", "model_info"]
