"""EfficientNet-B0 body (Tan & Le 2019, Table 1) with explicit width/depth multipliers, on offline Fashion-MNIST
resized (bicubic) to ``data.image_size`` (32 by default).

``model.width_mult`` / ``model.depth_mult`` are the arguments of the ``EfficientNet`` class (B1-B7 are the
published multipliers), so single-axis scaling sweeps can set them on the locked config
(experiments/sweeps/efficientnet_single_axis.py).

Run:
  python launch.py --config experiments/fashion_mnist/efficientnet_b0.py --workdir /tmp/effb0_fmnist
"""

from experiments.fashion_mnist.common import efficientnet_proxy_config


def get_config():
    c = efficientnet_proxy_config("efficientnet_b0")
    c.model.width_mult = 1.0
    c.model.depth_mult = 1.0
    return c
