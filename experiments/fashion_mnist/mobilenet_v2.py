"""MobileNet v2 (Sandler et al. 2018, Table 2) for small images on offline Fashion-MNIST, 28x28 zero-padded to 32.

``mobilenet_v2_cifar``: the stem at stride 1 (total stride 16, 2x2 maps in the last rows; cnn_jax/models/mobilenet.py
says why not stride 8). Recipe: SGD momentum 0.9, lr 0.1 at batch 128, cosine over 11 epochs (an hour of the 2-core
CPU, ~200 img/s), weight decay 4e-5 and dropout 0.2 (the paper's), pad-4 random crop + flip.

Run:
  python launch.py --config experiments/fashion_mnist/mobilenet_v2.py --workdir /tmp/mobilenet_v2_fmnist
Reference point: the Fashion-MNIST README lists a MobileNet at 0.950 (with flips).
"""

from cnn_jax.config import base_config


def get_config():
    c = base_config()
    c.model.name = "mobilenet_v2_cifar"
    c.model.in_channels = 1
    c.model.num_classes = 10
    c.model.width_mult = 1.0  # a key, so sweeps can scale it (experiments/sweeps/efficientnet_single_axis.py)
    c.data.train_transform = "pad_crop(4),flip"
    c.train.epochs = 11.0
    c.train.global_batch = 128
    c.optimizer.base_lr = 0.2  # 0.1 at batch 128
    c.optimizer.weight_decay = 4e-5
    return c
