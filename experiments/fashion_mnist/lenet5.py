"""LeNet-5 (modern ReLU/max-pool form) on offline Fashion-MNIST, 28x28 zero-padded to 32x32.

Run:
  python launch.py --config experiments/fashion_mnist/lenet5.py --workdir /tmp/lenet5_fmnist
Recipe: SGD momentum 0.9, lr 0.05 at batch 128, cosine over 20 epochs, weight decay 5e-4, horizontal flips (10
epochs without flips stopped at 0.912). Results with seeds: docs/results/fashion_mnist (the Fashion-MNIST README
lists 2-conv nets at 0.916-0.939).
"""

from cnn_jax.config import base_config


def get_config():
    c = base_config()
    c.model.name = "lenet5"
    c.model.in_channels = 1
    c.model.num_classes = 10
    c.data.train_transform = "flip"
    c.train.epochs = 20.0
    c.train.global_batch = 128
    c.optimizer.base_lr = 0.1  # 0.05 at batch 128
    c.optimizer.weight_decay = 5e-4
    return c
