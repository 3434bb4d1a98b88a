"""ShuffleNet v2 0.5x (Ma et al. 2018) on offline Fashion-MNIST at 32x32: the efficient family that trains fastest
on a CPU (depthwise convolutions are slow on XLA:CPU; see BENCHMARKS.md).

Run:
  python launch.py --config experiments/fashion_mnist/shufflenet_v2.py --workdir /tmp/shufflenet_v2_fmnist
  python launch.py --config experiments/fashion_mnist/shufflenet_v2.py:shufflenet_v2_x1_0 --workdir /tmp/sn
Recipe: SGD momentum 0.9, lr 0.1 at batch 128, cosine over 15 epochs, weight decay 4e-5 and label smoothing 0.1
(the ShuffleNet ImageNet recipe's), pad-4 random crop + flip. Expected: ~0.90-0.92 test top-1 for 0.5x (README
results table); the Fashion-MNIST README lists MobileNet at 0.950.
"""

from experiments.common import base_config


def get_config(model: str = "shufflenet_v2_x0_5"):
    c = base_config()
    c.model.name = model
    c.model.in_channels = 1
    c.model.num_classes = 10
    c.data.train_transform = "pad_crop(4),flip"
    c.train.epochs = 15.0
    c.train.global_batch = 128
    c.optimizer.base_lr = 0.2  # 0.1 at batch 128
    c.optimizer.weight_decay = 4e-5
    c.loss.label_smoothing = 0.1
    return c
