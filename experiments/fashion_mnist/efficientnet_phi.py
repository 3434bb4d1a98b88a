"""EfficientNet scaled from B0 by (phi, alpha, beta, gamma) on offline Fashion-MNIST: the compound-scaling proxy.

Tan & Le 2019 (arXiv:1905.11946) Sec. 3.3 searches alpha, beta, gamma at phi = 1 on a small task; this is that
task here (28x28 images, input size set by the sweep as ``round(32 * gamma^phi)``). The model keys are the
arguments of ``efficientnet_phi``, so a sweep can set them on the locked config.

Run (one point):
  python launch.py --config experiments/fashion_mnist/efficientnet_phi.py --workdir /tmp/effphi \
      --config.model.phi=1.0 --config.data.image_size=37
The sweep: experiments/sweeps/efficientnet_compound.py.
"""

from experiments.common import base_config


def get_config():
    c = base_config()
    c.model.name = "efficientnet_phi"
    c.model.in_channels = 1
    c.model.num_classes = 10
    c.model.phi = 1.0
    c.model.alpha = 1.2
    c.model.beta = 1.1
    c.model.gamma = 1.15
    c.model.drop_rate = 0.2
    # BatchNorm momentum 0.9 (PyTorch's): with TF's 0.99 the running statistics of a few-hundred-step proxy run are
    # still mostly their initial values, and eval-mode accuracy is chance.
    c.model.norm_convention = "pytorch"
    c.data.image_size = 32
    c.train.epochs = 5.0
    c.train.global_batch = 128
    c.optimizer.name = "adamw"
    c.optimizer.base_lr = 2e-3  # per 256 examples
    c.optimizer.weight_decay = 1e-4
    c.optimizer.warmup_epochs = 0.2
    return c
