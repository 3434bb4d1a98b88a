"""EfficientNet scaled from B0 by (phi, alpha, beta, gamma) on offline Fashion-MNIST: the compound-scaling proxy.

Tan & Le 2019 (arXiv:1905.11946) Sec. 3.3 searches alpha, beta, gamma at phi = 1 on a small task; this is that
task here: the 28x28 images resized (bicubic, train and eval) to the input size the sweep sets,
``round(32 * gamma^phi)``. The model keys are the arguments of ``efficientnet_phi``, so a sweep can set them on the
locked config.

Run (one point):
  python launch.py --config experiments/fashion_mnist/efficientnet_phi.py --workdir /tmp/effphi \
      --config.model.phi=1.0 --config.data.image_size=37
The sweep: experiments/sweeps/efficientnet_compound.py.
"""

from experiments.fashion_mnist.common import efficientnet_proxy_config


def get_config():
    c = efficientnet_proxy_config("efficientnet_phi")
    c.model.phi = 1.0
    c.model.alpha = 1.2
    c.model.beta = 1.1
    c.model.gamma = 1.15
    return c
