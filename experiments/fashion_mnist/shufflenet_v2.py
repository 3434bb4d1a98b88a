"""ShuffleNet v2 (Ma et al. 2018, Table 5) for small images on offline Fashion-MNIST at 32x32.

``shufflenet_v2_x0_5_cifar``: Conv1 at stride 1 and no max pool, so Conv5 sees a 4x4 map (the ImageNet stem leaves
1x1 at 32 px, where the 0.5x model underfit at 0.85). Recipe: SGD momentum 0.9, lr 0.1 at batch 128, cosine over 15
epochs (~35 min of the 2-core CPU, ~450 img/s), weight decay 4e-5 and label smoothing 0.1 (the ShuffleNet ImageNet
recipe's), pad-4 random crop + flip.

Run:
  python launch.py --config experiments/fashion_mnist/shufflenet_v2.py --workdir /tmp/shufflenet_v2_fmnist
  python launch.py --config experiments/fashion_mnist/shufflenet_v2.py:shufflenet_v2_x1_0_cifar --workdir /tmp/sn
"""

from cnn_jax.config import base_config


def get_config(model: str = "shufflenet_v2_x0_5_cifar"):
    c = base_config()
    c.model.name = model
    c.model.in_channels = 1
    c.model.num_classes = 10
    c.data.train_transform = "pad_crop(4),flip"
    c.train.epochs = 15.0
    c.train.global_batch = 128
    c.optimizer.base_lr = 0.2  # 0.1 at batch 128
    c.optimizer.weight_decay = 4e-5
    c.loss.label_smoothing = 0.1
    return c
