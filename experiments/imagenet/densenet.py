"""DenseNet-121/169/201/161 on ImageNet (Huang et al. 2017 Sec. 4.2).

Run:
  python launch.py --config experiments/imagenet/densenet.py --workdir /ckpt/densenet121
  python launch.py --config experiments/imagenet/densenet.py:densenet161 --workdir /ckpt/densenet161
Recipe: batch 256, 90 epochs, lr 0.1 divided by 10 at epochs 30 and 60, weight decay 1e-4, Nesterov momentum 0.9;
DenseNet-161 batch 128 for 100 epochs, /10 at 90 (official README). ``memory_efficient`` recomputes the
concatenations in the backward pass (shared-storage implementation; see BENCHMARKS.md).
Expected: DenseNet-121 ~74.4-75.0% top-1 (paper 74.98%, torchvision 74.43%).
"""

from experiments.imagenet.common import imagenet_config


def get_config(model: str = "densenet121"):
    c = imagenet_config(model)
    c.model.memory_efficient = True
    c.train.epochs = 90.0
    c.optimizer.name = "sgd"
    c.optimizer.base_lr = 0.1
    c.optimizer.momentum = 0.9
    c.optimizer.nesterov = True
    c.optimizer.weight_decay = 1e-4
    c.optimizer.schedule = "step"
    c.optimizer.decay_epochs = (30, 60)
    c.optimizer.decay_factor = 0.1
    if model == "densenet161":
        c.train.global_batch, c.train.epochs, c.optimizer.decay_epochs = 128, 100.0, (90,)
    return c
