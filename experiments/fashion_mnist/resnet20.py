"""CIFAR-style ResNet-20 (He et al. 2015 Sec. 4.2, Table 6) on offline Fashion-MNIST, 28x28 zero-padded to 32x32.

Run:
  python launch.py --config experiments/fashion_mnist/resnet20.py --workdir /tmp/resnet20_fmnist
Recipe: the paper's CIFAR recipe (SGD momentum 0.9, weight decay 1e-4, lr 0.1 at batch 128, pad-4 random crop +
flip) with a cosine schedule over 25 epochs instead of 64k steps, so a run fits an hour of the 2-core CPU (~500
img/s). Results with seeds: docs/results/fashion_mnist (the Fashion-MNIST README lists ResNet-18 at 0.949).
"""

from cnn_jax.config import base_config


def get_config(model: str = "resnet20", epochs: float = 25.0):
    c = base_config()
    c.model.name = model
    c.model.in_channels = 1
    c.model.num_classes = 10
    c.data.train_transform = "pad_crop(4),flip"
    c.train.epochs = epochs
    c.train.global_batch = 128
    c.optimizer.base_lr = 0.2  # 0.1 at batch 128
    c.optimizer.weight_decay = 1e-4
    return c
