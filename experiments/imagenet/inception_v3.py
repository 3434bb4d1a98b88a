"""Inception v3 with its auxiliary head on ImageNet at 299x299 (Szegedy et al. 2016 Sec. 7-8).

Run:
  python launch.py --config experiments/imagenet/inception_v3.py --workdir /ckpt/inception_v3
Recipe: RMSProp decay 0.9, eps 1.0, lr 0.045 decayed x0.94 every 2 epochs, gradient clipping at 2.0, 100 epochs,
evaluation with a running average of the parameters (EMA 0.9999), label smoothing 0.1 (Sec. 7). The paper trained
50 asynchronous replicas of batch 32 with lr 0.045 each; synchronously we use batch 1600 (50 x 32) and keep lr 0.045
(base_lr 0.045 * 256 / 1600). Auxiliary weight 0.4 (TF-slim's ``train_image_classifier.py``; the paper gives none).
Expected: ~77-78% top-1 single crop (paper 78.8% with the 299 crop, torchvision 77.29%).
"""

from experiments.imagenet.common import imagenet_config


def get_config():
    c = imagenet_config("inception_v3_aux", image_size=299)
    c.loss.aux_weight = 0.4
    c.loss.label_smoothing = 0.1
    c.train.global_batch = 1600
    c.train.epochs = 100.0
    c.train.ema_decay = 0.9999
    c.optimizer.name = "rmsprop"
    c.optimizer.base_lr = 0.045 * 256 / 1600
    c.optimizer.rmsprop_decay = 0.9
    c.optimizer.momentum = 0.9
    c.optimizer.eps = 1.0
    c.optimizer.weight_decay = 4e-5
    c.optimizer.clip_global_norm = 2.0
    c.optimizer.schedule = "exponential"
    c.optimizer.decay_factor = 0.94
    c.optimizer.decay_every_epochs = 2.0
    return c
