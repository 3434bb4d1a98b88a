"""The small MBConv baseline of the compound-scaling study (Tan & Le 2019, arXiv:1905.11946, Fig. 8 / Table 3).

EfficientNet-B0's body (Table 1) at width 0.5 and depth 0.5, stem at stride 1 (``efficientnet_b0_cifar``: total
stride 16), on offline Fashion-MNIST resized (bicubic, train and eval) to 16x16: the 28x28 source has more detail
than the baseline sees, as ImageNet photographs have more than EfficientNet-B0's 224 px, so the resolution axis can
gain real information up to 28 px. Recipe: the proxy task's (experiments/fashion_mnist/common.py: AdamW, PyTorch
BatchNorm momentum, dropout 0.2), no augmentation, 2 epochs.

Sizing: the study (experiments/sweeps/compound_scaling.py) has 33 runs: 3 seeds of the baseline, six single-dimension
points at ~2x and ~4x, three search points and one compound point. Measured on the 2-core CPU (launch.py, batch
128): this baseline trains at 842 img/s (71 s per epoch); at 16 px, 4x points trained 2.0-4.2x slower than their
baseline (width 2.0x, resolution 3.1x, depth 4.2x). Estimated from those, one epoch of every point and seed takes
~77 min and the runs' start-up, compilation and evaluation ~27 min, so 2 epochs fill the study's 3 hours.

Run (the baseline alone):
  python launch.py --config experiments/fashion_mnist/mbconv_scaling.py --workdir /tmp/mbconv_base
"""

from experiments.fashion_mnist.common import efficientnet_proxy_config


def get_config():
    c = efficientnet_proxy_config("efficientnet_b0_cifar")
    c.model.width_mult = 0.5
    c.model.depth_mult = 0.5
    c.data.image_size = 16
    c.train.epochs = 2.0
    return c
