"""Model analysis: per-layer parameters, multiply-adds (MACs), FLOPs and activation memory."""

from cnn_jax.analysis.stats import (
    LayerStats,
    ModelStats,
    analyze,
    layer_table,
    model_stats,
    program_macs,
    xla_flops,
)

__all__ = ["LayerStats", "ModelStats", "analyze", "layer_table", "model_stats", "program_macs", "xla_flops"]
