"""CIFAR-style ResNet-20 (He et al. 2015 Table 6) on offline Fashion-MNIST, 28x28 zero-padded to 32x32.

Run:
  python launch.py --config experiments/fashion_mnist/resnet20.py --workdir /tmp/resnet20_fmnist
Recipe: the paper's CIFAR schedule shape (SGD momentum 0.9, wd 1e-4, lr 0.1 per 128), cosine over 30 epochs,
pad-4 random crop + flip. Reference point: the Fashion-MNIST README lists ResNet-18 at 0.949.
"""

from experiments.common import base_config


def get_config():
    c = base_config()
    c.model.name = "resnet20"
    c.model.in_channels = 1
    c.model.num_classes = 10
    c.data.train_transform = "pad_crop(4),flip"
    c.train.epochs = 30.0
    c.train.global_batch = 128
    c.optimizer.base_lr = 0.2  # 0.1 at batch 128
    c.optimizer.weight_decay = 1e-4
    return c
