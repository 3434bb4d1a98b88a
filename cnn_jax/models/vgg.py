"""VGG: Simonyan & Zisserman 2014, "Very deep convolutional networks for large-scale image recognition",
arXiv:1409.1556, Table 1 configurations A (11 weight layers), B (13), D (16) and E (19).

Every convolution is 3x3 / stride 1 / padding 1 with ReLU; each of the five stages ends in a 2x2 / stride 2
max-pool; then FC 4096-4096-classes, with dropout 0.5 on the outputs of fc6 and fc7 (Sec. 3.1). The layout is
torchvision's (``vgg11`` ... ``vgg19``, parameter counts exact): an adaptive 7x7 average pool before fc6 (the
identity at 224), and the ``_bn`` variants (not in the paper) put BatchNorm after every convolution while keeping
the conv biases. Layer names follow the paper's Caffe release (``conv1_1`` ... ``conv5_3``, ``pool1`` ... ``pool5``,
``fc6`` ... ``fc8``), which the EECS 498 lecture tables use too.
"""

from __future__ import annotations

import flax.linen as nn

from cnn_jax.layers import (
    Array,
    ClassifierModel,
    Conv,
    ModelOutput,
    Pool,
    adaptive_avg_pool,
    batch_norm,
    check_images,
)
from cnn_jax.registry import ModelInfo, register_model

PAPER = "Simonyan & Zisserman 2014, Very deep convolutional networks for large-scale image recognition, arXiv:1409.1556"

# Table 1: (output channels, number of 3x3 convolutions) per stage.
CONFIGS: dict[str, tuple[tuple[int, int], ...]] = {
    "A": ((64, 1), (128, 1), (256, 2), (512, 2), (512, 2)),
    "B": ((64, 2), (128, 2), (256, 2), (512, 2), (512, 2)),
    "D": ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)),
    "E": ((64, 2), (128, 2), (256, 4), (512, 4), (512, 4)),
}

# torchvision's VGG initialisation: He-normal (fan-out) convs, N(0, 0.01) linear layers, zero biases.
_conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
_fc_init = nn.initializers.normal(0.01)


class VGG(ClassifierModel):
    """VGG network.

    Attributes:
      stages: ``(channels, convs)`` per stage, one of ``CONFIGS``.
      batch_norm: BatchNorm (PyTorch convention) after every convolution, before the ReLU.
      fc_features: width of fc6 and fc7.
      pooled_size: side of the adaptive average pool before fc6.
      drop_rate: dropout after fc6 and fc7 (0.5 in the paper).
    """

    stages: tuple[tuple[int, int], ...] = CONFIGS["D"]
    batch_norm: bool = False
    fc_features: int = 4096
    pooled_size: int = 7
    drop_rate: float = 0.5

    @nn.compact
    def __call__(self, images: Array, *, train: bool) -> ModelOutput:
        check_images(images, self.in_channels, "VGG")
        opts = {"dtype": self.dtype, "param_dtype": self.param_dtype}
        x = images
        for stage, (channels, convs) in enumerate(self.stages, start=1):
            for i in range(1, convs + 1):
                x = Conv(channels, (3, 3), padding=1, kernel_init=_conv_init, **opts, name=f"conv{stage}_{i}")(x)
                if self.batch_norm:
                    x = batch_norm("pytorch", train=train, **opts, name=f"bn{stage}_{i}")(x)
                x = nn.relu(x)
            x = Pool("max", 2, name=f"pool{stage}")(x)
        x = adaptive_avg_pool(x, self.pooled_size)
        x = x.reshape(x.shape[0], -1)
        for name in ("fc6", "fc7"):
            x = nn.relu(nn.Dense(self.fc_features, kernel_init=_fc_init, **opts, name=name)(x))
            x = nn.Dropout(self.drop_rate, deterministic=not train)(x)
        return ModelOutput(logits=nn.Dense(self.num_classes, kernel_init=_fc_init, **opts, name="fc8")(x))


for _config, _depth in (("A", 11), ("B", 13), ("D", 16), ("E", 19)):
    for _bn in (False, True):
        _name = f"vgg{_depth}_bn" if _bn else f"vgg{_depth}"
        register_model(
            _name,
            VGG,
            ModelInfo(
                paper=PAPER,
                table=f"Table 1, configuration {_config}" + (" + BatchNorm (torchvision)" if _bn else ""),
                family="vgg",
                reference=_name,
                min_resolution=32,
            ),
            stages=CONFIGS[_config],
            batch_norm=_bn,
        )
