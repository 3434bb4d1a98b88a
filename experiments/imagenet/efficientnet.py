"""EfficientNet-B0..B7 on ImageNet (Tan & Le 2019 Sec. 5.2; the official TPU ``main.py`` values).

Run:
  python launch.py --config experiments/imagenet/efficientnet.py --workdir /ckpt/efficientnet_b0
  python launch.py --config experiments/imagenet/efficientnet.py:efficientnet_b3 --workdir /ckpt/efficientnet_b3
Recipe: RMSProp decay 0.9, momentum 0.9, eps 1e-3 (TF flavour), lr 0.016 per 256 examples (0.128 at the default
batch 2048) with 5 warm-up epochs then x0.97 every 2.4 epochs, ~350 epochs, weight decay 1e-5 not applied to
BatchNorm, EMA 0.9999, label smoothing 0.1, dropout 0.2 (B0; the model's default grows to 0.5 for B7), drop-connect
0.2, AutoAugment, input resolution and eval crop from the model's metadata; bf16 compute as on TPU.
Expected: B0 ~77.1-77.3% top-1 (paper 77.1%, official 77.3% with AutoAugment).
"""

import cnn_jax
from experiments.imagenet.common import imagenet_config


def get_config(model: str = "efficientnet_b0"):
    c = imagenet_config(model, image_size=cnn_jax.model_info(model).resolution)
    c.model.dtype = c.data.dtype = "bfloat16"
    c.model.drop_path_rate = 0.2
    c.data.train_transform = "random_resized_crop,flip,autoaugment"
    c.data.interpolation = "bicubic"
    c.loss.label_smoothing = 0.1
    c.train.global_batch = 2048
    c.train.epochs = 350.0
    c.train.ema_decay = 0.9999
    c.optimizer.name = "rmsprop"
    c.optimizer.base_lr = 0.016
    c.optimizer.rmsprop_decay = 0.9
    c.optimizer.momentum = 0.9
    c.optimizer.eps = 1e-3
    c.optimizer.weight_decay = 1e-5
    c.optimizer.warmup_epochs = 5.0
    c.optimizer.schedule = "exponential"
    c.optimizer.decay_factor = 0.97
    c.optimizer.decay_every_epochs = 2.4
    return c
