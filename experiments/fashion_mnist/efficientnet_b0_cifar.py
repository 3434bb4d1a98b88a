"""EfficientNet-B0 (Tan & Le 2019, Table 1) for small images on offline Fashion-MNIST, resized (bicubic) to 32x32.

``efficientnet_b0_cifar``: the stem at stride 1 (total stride 16, 2x2 maps in the last stages; cnn_jax/models/
efficientnet.py says why not stride 8). Recipe: the proxy task's (experiments/fashion_mnist/common.py: AdamW, PyTorch
BatchNorm momentum, dropout 0.2) with flips, over 6 epochs: an hour of the 2-core CPU (~105 img/s). The paper's
RMSProp recipe runs 350 epochs.

Run:
  python launch.py --config experiments/fashion_mnist/efficientnet_b0_cifar.py --workdir /tmp/effb0_cifar_fmnist
"""

from experiments.fashion_mnist.common import efficientnet_proxy_config


def get_config():
    c = efficientnet_proxy_config("efficientnet_b0_cifar")
    c.data.train_transform = "resize,flip"
    c.train.epochs = 6.0
    return c
