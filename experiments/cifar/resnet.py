"""CIFAR-10 ResNet-20/32/44/56/110 (He et al. 2016 Sec. 4.2, Table 6).

Run:
  python launch.py --config experiments/cifar/resnet.py:20 --workdir /ckpt/cifar_resnet20
  python launch.py --config experiments/cifar/resnet.py:110 --workdir /ckpt/cifar_resnet110
(TFDS ``cifar10``: prepare it once with network access, see the README's Data section.)
Recipe: batch 128, SGD momentum 0.9, weight decay 1e-4, lr 0.1 divided by 10 at 32k and 48k iterations, stop at
64k (= epochs 82, 123, 164 at 390 steps per epoch), pad-4 random crop + flip; ResNet-110 warms up for the first
~400 iterations (the paper uses lr 0.01 until training error < 80%; here one linear warm-up epoch).
Expected test error: 8.75 / 7.51 / 7.17 / 6.97 / 6.43% (Table 6).
"""

from cnn_jax.config import base_config


def get_config(depth: str = "20"):
    c = base_config()
    c.model.name = f"resnet{int(depth)}"
    c.model.num_classes = 10
    c.model.in_channels = 3
    c.data.name = "cifar10"
    c.data.image_size = 32
    c.data.train_transform = "pad_crop(4),flip"
    c.train.global_batch = 128
    c.train.eval_batch = 1000
    c.train.epochs = 164.0
    c.optimizer.name = "sgd"
    c.optimizer.base_lr = 0.2  # 0.1 at batch 128
    c.optimizer.momentum = 0.9
    c.optimizer.weight_decay = 1e-4
    c.optimizer.schedule = "step"
    c.optimizer.decay_epochs = (82, 123)
    c.optimizer.decay_factor = 0.1
    c.optimizer.warmup_epochs = 1.0 if int(depth) >= 110 else 0.0
    return c
