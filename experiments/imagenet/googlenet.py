"""GoogLeNet with its two auxiliary classifiers on ImageNet (Szegedy et al. 2015 Sec. 5-6).

Run:
  python launch.py --config experiments/imagenet/googlenet.py --workdir /ckpt/googlenet
Recipe: auxiliary losses weighted by 0.3 each (Sec. 5); SGD momentum 0.9 with the learning rate decreased by 4%
every 8 epochs (Sec. 6); crops of 8-100% area, aspect 3/4-4/3, photometric distortions (colour jitter); Polyak
averaging of the final model (EMA). The paper gives no base rate: 0.01 at batch 32 as in the BVLC Caffe
reproduction, i.e. 0.08 per 256. Expected: ~69.8% top-1 (torchvision's ported weights; paper 10.07% top-5 error
single crop/model, Table 3).
"""

from experiments.imagenet.common import imagenet_config


def get_config():
    c = imagenet_config("googlenet_paper_aux")
    c.data.train_transform = "random_resized_crop,flip,color_jitter(0.4,0.4,0.4)"
    c.loss.aux_weight = 0.3
    c.train.epochs = 90.0
    c.train.ema_decay = 0.9999
    c.optimizer.name = "sgd"
    c.optimizer.base_lr = 0.08
    c.optimizer.momentum = 0.9
    c.optimizer.weight_decay = 2e-4
    c.optimizer.schedule = "exponential"
    c.optimizer.decay_factor = 0.96
    c.optimizer.decay_every_epochs = 8.0
    return c
