"""ResNet-50 on ImageNet: the 90-epoch recipe (He et al. 2016 Sec. 3.4; torchvision's reference schedule).

Run (8 GPUs, or any device count: the global batch is split over all of them):
  python launch.py --config experiments/imagenet/resnet50.py --workdir /ckpt/resnet50
  python launch.py --config experiments/imagenet/resnet50.py:step --workdir /ckpt/resnet50_step
Recipe: SGD momentum 0.9 (``--config.optimizer.nesterov=True`` for Nesterov), lr 0.1 per 256 examples, weight decay
1e-4 on conv/dense kernels only, 5 warm-up epochs (Goyal et al. 2017) then cosine, or the paper's step decay
(x0.1 at epochs 30, 60, 80) with the ``step`` argument. Batch 256.
Expected: ~76.1-76.5% top-1 single 224 crop (torchvision V1 weights 76.13%; the cosine schedule ~+0.3).
Large batches: ``--config.train.global_batch=8192 --config.optimizer.name=lars`` (lr scales with the batch).
"""

from experiments.imagenet.common import imagenet_config


def get_config(schedule: str = "cosine"):
    c = imagenet_config("resnet50")
    c.train.epochs = 90.0
    c.optimizer.name = "sgd"
    c.optimizer.base_lr = 0.1
    c.optimizer.momentum = 0.9
    c.optimizer.weight_decay = 1e-4
    c.optimizer.schedule = schedule
    c.optimizer.warmup_epochs = 5.0 if schedule == "cosine" else 0.0
    c.optimizer.decay_epochs = (30, 60, 80)
    c.optimizer.decay_factor = 0.1
    return c
