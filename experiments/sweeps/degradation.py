"""He et al. 2015, Sec. 4.2 and Fig. 6 (the degradation problem) at small scale, on Fashion-MNIST.

Plain-20/56 (ResNet-20/56 without shortcuts, ``cnn_jax.models.cifar_resnet``) against ResNet-20/56, one recipe
and budget for all four: ResNet-20's Fashion-MNIST recipe (experiments/fashion_mnist/resnet20.py: the paper's
CIFAR optimizer, pad-4 crop + flip, cosine) over ``epochs`` epochs, three seeds each. The paper's claim: the deeper
plain net has the higher *training* error, the deeper ResNet the lower. 3 epochs keep the study at ~2.5 hours of
the 2-core CPU (the 56-layer nets train at ~170 img/s); the paper trains 64k iterations of batch 128 (~160 epochs
of CIFAR).

Run (the evidence in docs/results/degradation, the figure and verdicts by cnn_jax.tools.reproductions):
  python -m cnn_jax.tools.sweep experiments/sweeps/degradation.py --workdir /tmp/degradation
  python -m cnn_jax.tools.results export /tmp/degradation docs/results/degradation
  python -m cnn_jax.tools.reproductions --study degradation
"""

from cnn_jax import sweeps

BASE_CONFIG = "experiments/fashion_mnist/resnet20.py"
SEEDS = (0, 1, 2)


def get_sweep(epochs=3.0):
    return sweeps.product({"model.name": ["plain20", "plain56", "resnet20", "resnet56"]}, {"train.epochs": [epochs]})
