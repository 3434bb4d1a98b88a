"""EfficientNet-B0 body (Tan & Le 2019, Table 1) with explicit width/depth multipliers, on offline Fashion-MNIST.

``model.width_mult`` / ``model.depth_mult`` are the arguments of the ``EfficientNet`` class (B1-B7 are the
published multipliers), so single-axis scaling sweeps can set them on the locked config
(experiments/sweeps/efficientnet_single_axis.py).

Run:
  python launch.py --config experiments/fashion_mnist/efficientnet_b0.py --workdir /tmp/effb0_fmnist
"""

from experiments.common import base_config


def get_config():
    c = base_config()
    c.model.name = "efficientnet_b0"
    c.model.in_channels = 1
    c.model.num_classes = 10
    c.model.width_mult = 1.0
    c.model.depth_mult = 1.0
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
