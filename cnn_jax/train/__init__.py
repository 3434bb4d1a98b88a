"""Training: optimisers, losses, the sharded train/eval steps, checkpoints and the loop."""
