"""Wide ResNet-28-10 on CIFAR-10 (Zagoruyko & Komodakis 2016, Sec. "Implementation details").

Run:
  python launch.py --config experiments/cifar/wrn28_10.py --workdir /ckpt/wrn28_10
  python launch.py --config experiments/cifar/wrn28_10.py:cifar100 --workdir /ckpt/wrn28_10_c100
Recipe: SGD with Nesterov momentum 0.9, lr 0.1 at batch 128, weight decay 5e-4, lr x0.2 at epochs 60, 120 and 160,
200 epochs, dropout 0.3 between the convolutions of each block, pad-4 random crop + flip.
Expected test error: 3.89% (dropout) on CIFAR-10, 18.85% on CIFAR-100 (paper Table 6).
"""

from cnn_jax.config import base_config


def get_config(dataset: str = "cifar10"):
    c = base_config()
    c.model.name = "wrn28_10"
    c.model.num_classes = 100 if dataset == "cifar100" else 10
    c.model.in_channels = 3
    c.model.block_dropout = 0.3
    c.data.name = dataset
    c.data.image_size = 32
    c.data.train_transform = "pad_crop(4),flip"
    c.train.global_batch = 128
    c.train.eval_batch = 1000
    c.train.epochs = 200.0
    c.optimizer.name = "sgd"
    c.optimizer.base_lr = 0.2  # 0.1 at batch 128
    c.optimizer.momentum = 0.9
    c.optimizer.nesterov = True
    c.optimizer.weight_decay = 5e-4
    c.optimizer.schedule = "step"
    c.optimizer.decay_epochs = (60, 120, 160)
    c.optimizer.decay_factor = 0.2
    return c
