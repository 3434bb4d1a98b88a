"""The EfficientNet proxy task shared by the B0 and (phi, alpha, beta, gamma) configs on offline Fashion-MNIST.

``data.image_size`` r is a resolution in EfficientNet's sense (Tan & Le 2019 Sec. 3.3): the 28x28 images are
resized to r x r (bicubic), for training and evaluation alike, so a larger r shows the garment with more pixels;
zero-padding to r would only add empty border. The source has 28x28 pixels, so the pixels beyond those are
interpolated: the garment spans more of the network's input and its feature maps, without new detail.
"""

import ml_collections

from cnn_jax.config import base_config


def efficientnet_proxy_config(model: str) -> ml_collections.ConfigDict:
    c = base_config()
    c.model.name = model
    c.model.in_channels = 1
    c.model.num_classes = 10
    c.model.drop_rate = 0.2
    # BatchNorm momentum 0.9 (PyTorch's): with TF's 0.99 the running statistics of a few-hundred-step proxy run are
    # still mostly their initial values, and eval-mode accuracy is chance.
    c.model.norm_convention = "pytorch"
    c.data.image_size = 32
    c.data.train_transform = "resize"
    c.data.eval_transform = "resize"
    # EfficientNet's reference preprocessing resizes bicubically (TF's efficientnet preprocessing, timm's
    # EfficientNet configs); it also interpolates smoothly at non-integer factors such as 28 -> 37, where nearest
    # would repeat every third or fourth row.
    c.data.interpolation = "bicubic"
    c.train.epochs = 5.0
    c.train.global_batch = 128
    c.optimizer.name = "adamw"
    c.optimizer.base_lr = 2e-3  # per 256 examples
    c.optimizer.weight_decay = 1e-4
    c.optimizer.warmup_epochs = 0.2
    return c
