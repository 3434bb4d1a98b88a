"""LeNet-5 (modern ReLU/max-pool form) on offline Fashion-MNIST, 28x28 zero-padded to 32x32.

Run:
  python launch.py --config experiments/fashion_mnist/lenet5.py --workdir /tmp/lenet5_fmnist
Expected: ~0.90 test top-1 after 10 epochs (the Fashion-MNIST README lists 2-conv LeNet-like nets at 0.88-0.92).
"""

from experiments.common import base_config


def get_config():
    c = base_config()
    c.model.name = "lenet5"
    c.model.in_channels = 1
    c.model.num_classes = 10
    c.train.epochs = 10.0
    c.train.global_batch = 128
    c.optimizer.base_lr = 0.1
    c.optimizer.weight_decay = 5e-4
    return c
