"""MobileNet v1 (Howard et al. 2017), v2 (Sandler et al. 2018) and v3 (Howard et al. 2019) on ImageNet.

Run:
  python launch.py --config experiments/imagenet/mobilenet.py:mobilenet_v2 --workdir /ckpt/mobilenet_v2
  python launch.py --config experiments/imagenet/mobilenet.py:mobilenet_v1_100 --workdir /ckpt/mobilenet_v1
  python launch.py --config experiments/imagenet/mobilenet.py:mobilenet_v3_large --workdir /ckpt/mobilenet_v3
Recipes (TF-style RMSProp, eps inside the square root):
- v2: RMSProp decay 0.9 momentum 0.9, weight decay 4e-5, lr 0.045 per batch 96 (0.12 per 256) x0.98 per epoch
  (paper Sec. 6.1), label smoothing 0.1 and EMA 0.9999 (TF-slim reproduction), 300 epochs (torchvision).
  Expected ~72.0% top-1 (paper/TF-slim), torchvision 71.88%.
- v1: "RMSprop ... as Inception V3", little weight decay, no label smoothing (paper Sec. 3.2); the other values as
  v2. Expected ~70.6% (paper Table 7).
- v3-large: RMSProp momentum 0.9, dropout 0.2 before the classifier (the paper's keep-probability 0.8), weight decay
  1e-5, EMA 0.9999 (paper Sec. 6.1.1); the decay schedule, epochs, AutoAugment and random erasing of torchvision's
  600-epoch reference (lr 0.064 per 128, x0.973 every 2 epochs). Expected ~74.0-75.2% top-1.
"""

from experiments.imagenet.common import imagenet_config


def get_config(model: str = "mobilenet_v2"):
    c = imagenet_config(model)
    c.optimizer.name = "rmsprop"
    c.optimizer.rmsprop_decay = 0.9
    c.optimizer.momentum = 0.9
    c.optimizer.eps = 1e-3
    c.optimizer.schedule = "exponential"
    c.train.ema_decay = 0.9999
    if model.startswith("mobilenet_v3"):
        c.model.drop_rate = 0.2
        c.data.train_transform = "random_resized_crop,flip,autoaugment,random_erasing(0.2)"
        c.train.epochs = 600.0
        c.optimizer.base_lr = 0.128
        c.optimizer.weight_decay = 1e-5
        c.optimizer.decay_factor = 0.973
        c.optimizer.decay_every_epochs = 2.0
        c.optimizer.warmup_epochs = 5.0
    else:
        c.train.epochs = 300.0
        c.optimizer.base_lr = 0.12
        c.optimizer.weight_decay = 4e-5
        c.optimizer.decay_factor = 0.98
        c.optimizer.decay_every_epochs = 1.0
        c.loss.label_smoothing = 0.0 if model.startswith("mobilenet_v1") else 0.1
    return c
