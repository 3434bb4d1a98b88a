"""LeNet-5 on Fashion-MNIST: learning rate x seed (a product sweep; the smallest real example).

Run:
  python -m cnn_jax.tools.sweep experiments/sweeps/lenet_lr.py --workdir /tmp/lenet_lr
  python -m cnn_jax.tools.sweep experiments/sweeps/lenet_lr.py --workdir /tmp/lenet_lr --emit shell
"""

from cnn_jax import sweeps

BASE_CONFIG = "experiments/fashion_mnist/lenet5.py"


def get_sweep(lrs=(0.05, 0.1, 0.2), seeds=(0, 1)):
    return sweeps.product({"optimizer.base_lr": list(lrs)}, {"seed": list(seeds)})
