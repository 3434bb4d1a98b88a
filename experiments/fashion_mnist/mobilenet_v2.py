"""MobileNet v2 (Sandler et al. 2018) on offline Fashion-MNIST at 32x32 (width 1.0).

Run:
  python launch.py --config experiments/fashion_mnist/mobilenet_v2.py --workdir /tmp/mobilenet_v2_fmnist
Reference point: the Fashion-MNIST README lists a MobileNet at 0.950 (with flips).
"""

from experiments.common import base_config


def get_config():
    c = base_config()
    c.model.name = "mobilenet_v2"
    c.model.in_channels = 1
    c.model.num_classes = 10
    c.model.width_mult = 1.0  # a key, so sweeps can scale it (experiments/sweeps/efficientnet_single_axis.py)
    c.data.train_transform = "pad_crop(4),flip"
    c.train.epochs = 30.0
    c.train.global_batch = 128
    c.optimizer.base_lr = 0.2
    c.optimizer.weight_decay = 4e-5
    return c
