"""ShuffleNet v2 (Ma et al. 2018) and v1 (Zhang et al. 2018) on ImageNet.

Run:
  python launch.py --config experiments/imagenet/shufflenet.py --workdir /ckpt/shufflenet_v2
  python launch.py --config experiments/imagenet/shufflenet.py:shufflenet_v1_g3 --workdir /ckpt/shufflenet_v1
Recipe (v1 paper Sec. 4, followed by v2; official train.py defaults): SGD momentum 0.9, batch 1024, lr 0.5 decayed
linearly to 0 over 3e5 iterations (~240 epochs), weight decay 4e-5, label smoothing 0.1, random-resized crop with
colour jitter 0.4. Expected: ShuffleNet v2 1.0x ~69.4% top-1 (paper/torchvision 69.36%).
"""

from experiments.imagenet.common import imagenet_config


def get_config(model: str = "shufflenet_v2_x1_0"):
    c = imagenet_config(model)
    c.data.train_transform = "random_resized_crop,flip,color_jitter(0.4,0.4,0.4)"
    c.loss.label_smoothing = 0.1
    c.train.global_batch = 1024
    c.train.epochs = 240.0
    c.optimizer.name = "sgd"
    c.optimizer.base_lr = 0.5 * 256 / 1024
    c.optimizer.momentum = 0.9
    c.optimizer.weight_decay = 4e-5
    c.optimizer.schedule = "linear"
    return c
