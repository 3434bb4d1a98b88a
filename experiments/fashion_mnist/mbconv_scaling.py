"""The small MBConv baseline of the compound-scaling study (Tan & Le 2019, arXiv:1905.11946, Fig. 8 / Table 3).

EfficientNet-B0's body (Table 1) at width 0.5 and depth 0.5, stem at stride 1 (``efficientnet_b0_cifar``: total
stride 16), on offline Fashion-MNIST resized (bicubic, train and eval) to 24x24: below the 28x28 source, as
EfficientNet-B0's 224 px is below ImageNet's photographs, and inside the 17-32 px range where the last feature maps
stay 2x2, so the study's small resolution steps cost about what the scaling rule says (a 16 px baseline, 1x1 last
maps, made any gamma > 1 cost >= 2.3x). Recipe: the proxy task's (experiments/fashion_mnist/common.py: AdamW,
PyTorch BatchNorm momentum, dropout 0.2), no augmentation, 2 epochs.

Sizing: the study (experiments/sweeps/compound_scaling.py) has 33 runs: 3 seeds of the baseline, six
single-dimension points at ~2x and ~4x, three search points and one compound point. 2 epochs were chosen to fit
3 hours of the 2-core CPU from the measured step rates; the study took 4.0 hours of run wall time (a baseline run
3.8 min, the ~4x points 6.7-11.3 min: docs/results/compound_scaling).

Run (the baseline alone):
  python launch.py --config experiments/fashion_mnist/mbconv_scaling.py --workdir /tmp/mbconv_base
"""

from experiments.fashion_mnist.common import efficientnet_proxy_config


def get_config():
    c = efficientnet_proxy_config("efficientnet_b0_cifar")
    c.model.width_mult = 0.5
    c.model.depth_mult = 0.5
    c.data.image_size = 24
    c.train.epochs = 2.0
    return c
