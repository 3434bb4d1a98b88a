"""CIFAR-style ResNet-56 (He et al. 2015 Sec. 4.2, Table 6) on offline Fashion-MNIST: ResNet-20's recipe
(experiments/fashion_mnist/resnet20.py) over 9 epochs, what an hour of the 2-core CPU trains (~170 img/s).

Run:
  python launch.py --config experiments/fashion_mnist/resnet56.py --workdir /tmp/resnet56_fmnist
"""

from experiments.fashion_mnist import resnet20


def get_config():
    return resnet20.get_config("resnet56", epochs=9.0)
