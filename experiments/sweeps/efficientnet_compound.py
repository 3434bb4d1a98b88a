"""EfficientNet compound-scaling search (Tan & Le 2019, arXiv:1905.11946, Sec. 3.3) on a Fashion-MNIST proxy.

Stage ``search``: phi = 1, every grid point (alpha, beta, gamma) >= 1 with ``|alpha beta^2 gamma^2 - 2| <=
tolerance`` (``scaling.compound_grid``); depth and width scale B0 inside ``efficientnet_phi``, the input
size is ``round(base_resolution * gamma^phi)``. Every point runs once per seed (``SEEDS``, or ``--seeds``).
Stage ``scale``: the best point's (alpha, beta, gamma) at phi = 2 .. max_phi (its phi = 1 run is the search point
itself), picked by ``cnn_jax.sweeps.select_best``: the stage refuses, printing every point's mean ± std, when the
best point is not ahead of the runner-up by more than two standard errors or is near chance; ``point=(a,b,g)``
scales a point of your choice instead. Arguments after ``:`` override the defaults.

Run (the tiny budget of the README figure, docs/sweeps/compound: 4 grid points x 3 seeds, then phi = 2, 3 x 3
seeds; 150 steps of 32 images each; 32 min on the 2-core CPU; eval top-1 35-65 %):
  python -m cnn_jax.tools.sweep experiments/sweeps/efficientnet_compound.py:step=0.1,max_points=4,max_phi=3 \
      --workdir /tmp/compound --config.train.num_steps=150 --config.train.global_batch=32 \
      --config.data.max_train_examples=10000 --config.data.max_eval_examples=2000
Keep at least ~150 steps: BatchNorm's running statistics still hold 0.9^t of their initial values after t steps,
and with far fewer steps eval-mode accuracy is near chance (see cnn_jax/models/efficientnet.py).
Full proxy budget (5 epochs per point on all 60k images): drop the --config overrides.
Resolution is by resizing, as in the paper: the base config resizes the 28x28 images (bicubic) to the input size
for training and evaluation, so a larger input shows the same garment with more pixels.
"""

from cnn_jax import sweeps
from experiments.sweeps import scaling

BASE_CONFIG = "experiments/fashion_mnist/efficientnet_phi.py"
SEEDS = (0, 1, 2)


def _point(alpha: float, beta: float, gamma: float, phi: float, base_resolution: int, series: str) -> dict:
    return {
        "model.phi": float(phi),
        "model.alpha": alpha,
        "model.beta": beta,
        "model.gamma": gamma,
        "data.image_size": scaling.proxy_resolution(base_resolution, gamma, phi),
        "_series": series,
    }


def get_stages(tolerance=0.1, step=0.05, target=2.0, max_phi=3, base_resolution=32, max_points=None,
               alpha_range=(1.0, 1.4), beta_range=(1.0, 1.3), gamma_range=(1.0, 1.3), point=None):
    grid = scaling.compound_grid(target=target, tolerance=tolerance, step=step, alpha_range=alpha_range,
                                beta_range=beta_range, gamma_range=gamma_range)
    if max_points is not None and len(grid) > max_points:
        # An even subsample of the sorted grid (keeps the spread of alpha); the full grid is the default.
        grid = [grid[round(i * (len(grid) - 1) / (max_points - 1))] for i in range(max_points)]

    def search(previous):
        return [_point(p.alpha, p.beta, p.gamma, 1.0, base_resolution, "search") for p in grid]

    def scale(previous):
        if point is not None:
            alpha, beta, gamma = point
        else:
            searched = [r for r in previous if r["stage"] == "search"]
            best = sweeps.select_best(searched, num_classes=searched[0]["num_classes"]).overrides
            alpha, beta, gamma = best["model.alpha"], best["model.beta"], best["model.gamma"]
        return [_point(alpha, beta, gamma, phi, base_resolution, "compound") for phi in range(2, max_phi + 1)]

    return [sweeps.Stage("search", search), sweeps.Stage("scale", scale, size=max_phi - 1)]
