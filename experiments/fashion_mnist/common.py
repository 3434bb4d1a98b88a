"""The EfficientNet proxy task shared by the B0 and (phi, alpha, beta, gamma) configs on offline Fashion-MNIST."""

import ml_collections

from experiments.common import base_config


def efficientnet_proxy_config(model: str) -> ml_collections.ConfigDict:
    c = base_config()
    c.model.name = model
    c.model.in_channels = 1
    c.model.num_classes = 10
    c.model.drop_rate = 0.2
    # BatchNorm momentum 0.9 (PyTorch's): with TF's 0.99 the running statistics of a few-hundred-step proxy run are
    # still mostly their initial values, and eval-mode accuracy is chance.
    c.model.norm_convention = "pytorch"
    c.data.image_size = 32
    c.train.epochs = 5.0
    c.train.global_batch = 128
    c.optimizer.name = "adamw"
    c.optimizer.base_lr = 2e-3  # per 256 examples
    c.optimizer.weight_decay = 1e-4
    c.optimizer.warmup_epochs = 0.2
    return c
