"""VGG-11/13/16/19 (+BN) on ImageNet (Simonyan & Zisserman 2015 Sec. 3.1).

Run:
  python launch.py --config experiments/imagenet/vgg.py:vgg16 --workdir /ckpt/vgg16
  python launch.py --config experiments/imagenet/vgg.py:vgg16_bn --workdir /ckpt/vgg16_bn
Recipe: batch 256, SGD momentum 0.9, weight decay 5e-4, dropout 0.5 on the first two FC layers, lr 0.01 divided by
10 three times (the paper divides on plateaus and stops at 74 epochs; the fixed points 30/50/65 follow it), lr 0.1
for the BN variants (torchvision's reference). Expected: VGG-16 ~71.6% top-1 (torchvision 71.59%), VGG-16-BN 73.4%.
"""

from experiments.imagenet.common import imagenet_config


def get_config(model: str = "vgg16"):
    c = imagenet_config(model)
    c.train.epochs = 74.0
    c.optimizer.name = "sgd"
    c.optimizer.base_lr = 0.1 if model.endswith("_bn") else 0.01
    c.optimizer.momentum = 0.9
    c.optimizer.weight_decay = 5e-4
    c.optimizer.schedule = "step"
    c.optimizer.decay_epochs = (30, 50, 65)
    c.optimizer.decay_factor = 0.1
    return c
