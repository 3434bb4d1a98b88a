"""Scaling one dimension vs all three (Tan & Le 2019, arXiv:1905.11946, Fig. 3 vs Fig. 8) on Fashion-MNIST.

Series ``depth`` (depth multiplier only), ``width`` (width multiplier only), ``resolution`` (input size only) and
``compound`` (d = alpha^phi, w = beta^phi, r = gamma^phi), for phi = 1 .. max_phi plus the unscaled baseline.
Each single-axis series spends the compound rule's whole per-step FLOPs factor ``alpha beta^2 gamma^2`` on its one
dimension (depth x f, width x sqrt(f), resolution x sqrt(f) per step), so points with the same phi cost roughly
the same. Rounding makes that rough (``cnn_jax.analysis`` MACs relative to B0, phi = 1): at 224 px depth 2.03x,
width 1.85x, resolution 2.00x, compound 2.57x (repeats round up: ceil(1.2 r) is 2 for r = 1); at the proxy's 32 px
the small feature maps round too (32 px ends in 1x1 maps, 37 px in 2x2): depth 2.08x, width 1.86x, resolution
2.62x, compound 4.48x. Compare the curves along the plot's measured-MACs axis, not by phi.
The input size is the base config's ``data.image_size``; the default base config resizes the 28x28 images to it
(bicubic, train and eval), so a larger input shows the same garment with more pixels, as in the paper. A base
config that pads instead (MobileNet v2's ``pad_crop(4)``) makes the resolution series add empty border.

Any family whose class exposes multipliers can be swept: ``depth_key`` / ``width_key`` name the config keys (None
leaves that series out) and ``--base-config`` picks the experiment, e.g. MobileNet v2 (width only)::

  python -m cnn_jax.tools.sweep experiments/sweeps/efficientnet_single_axis.py:depth_key=None \
      --base-config experiments/fashion_mnist/mobilenet_v2.py --workdir /tmp/mbv2_axes

(the base config must define the swept keys: configs are locked). Default, EfficientNet-B0's body:
  python -m cnn_jax.tools.sweep experiments/sweeps/efficientnet_single_axis.py:max_phi=2 --workdir /tmp/axes \
      --config.train.num_steps=150 --config.data.max_train_examples=10000 --config.data.max_eval_examples=2000
"""

from experiments.sweeps import scaling

BASE_CONFIG = "experiments/fashion_mnist/efficientnet_b0.py"
SEEDS = (0, 1, 2)  # every point three times: the figure's error bars


def get_sweep(max_phi=3, alpha=1.2, beta=1.1, gamma=1.15, base_resolution=32, depth_key="model.depth_mult",
              width_key="model.width_mult", resolution_key="data.image_size"):
    flops_step = alpha * beta**2 * gamma**2  # the per-phi FLOPs factor of the compound rule (~2)

    def run(series: str, phi: int, depth: float, width: float, resolution_scale: float) -> dict:
        values = {depth_key: round(depth, 4), width_key: round(width, 4),
                  resolution_key: scaling.proxy_resolution(base_resolution, resolution_scale, 1.0)}
        return {**{k: v for k, v in values.items() if k is not None}, "_series": series,
                "_name": f"{series}_phi{phi}"}

    runs = [run("baseline", 0, 1.0, 1.0, 1.0)]
    for phi in range(1, max_phi + 1):
        f = flops_step**phi
        if depth_key is not None:
            runs.append(run("depth", phi, f, 1.0, 1.0))
        if width_key is not None:
            runs.append(run("width", phi, 1.0, f**0.5, 1.0))
        runs.append(run("resolution", phi, 1.0, 1.0, f**0.5))
        if depth_key is not None and width_key is not None:
            runs.append(run("compound", phi, alpha**phi, beta**phi, gamma**phi))
    return runs
