"""EfficientNet compound-scaling search (Tan & Le 2019, arXiv:1905.11946, Sec. 3.3) on a Fashion-MNIST proxy.

Stage ``search``: phi = 1, every grid point (alpha, beta, gamma) >= 1 with ``|alpha beta^2 gamma^2 - 2| <=
tolerance`` (``cnn_jax.sweeps.compound_grid``); depth and width scale B0 inside ``efficientnet_phi``, the input
size is ``round(base_resolution * gamma^phi)``. Stage ``scale``: the best point's (alpha, beta, gamma) at
phi = 2 .. max_phi (its phi = 1 run is the search point itself). Arguments after ``:`` override the defaults.

Run (the tiny budget of the README figure: 4 grid points, then phi = 2, 3; 150 steps of 32 images each; 17 min on
the shared 2-core CPU; eval top-1 0.34-0.70):
  python -m cnn_jax.tools.sweep experiments/sweeps/efficientnet_compound.py:step=0.1,max_points=4,max_phi=3 \
      --workdir /tmp/compound --config.train.num_steps=150 --config.train.global_batch=32 \
      --config.data.max_train_examples=10000 --config.data.max_eval_examples=2000
Keep at least ~150 steps: BatchNorm's running statistics still hold 0.9^t of their initial values after t steps,
and with far fewer steps eval-mode accuracy is near chance (see cnn_jax/models/efficientnet.py).
Full proxy budget (5 epochs per point on all 60k images): drop the --config overrides.
Note: the current data pipeline zero-pads 28x28 images to the input size (it has no resize), so "resolution"
here adds context, not detail; the FLOPs and the model scaling are the paper's.
"""

from cnn_jax import sweeps

BASE_CONFIG = "experiments/fashion_mnist/efficientnet_phi.py"


def _point(alpha: float, beta: float, gamma: float, phi: float, base_resolution: int, series: str) -> dict:
    return {
        "model.phi": float(phi),
        "model.alpha": alpha,
        "model.beta": beta,
        "model.gamma": gamma,
        "data.image_size": sweeps.proxy_resolution(base_resolution, gamma, phi),
        "_series": series,
    }


def get_stages(tolerance=0.1, step=0.05, target=2.0, max_phi=3, base_resolution=32, max_points=None,
               alpha_range=(1.0, 1.4), beta_range=(1.0, 1.3), gamma_range=(1.0, 1.3)):
    grid = sweeps.compound_grid(target=target, tolerance=tolerance, step=step, alpha_range=alpha_range,
                                beta_range=beta_range, gamma_range=gamma_range)
    if max_points is not None and len(grid) > max_points:
        # An even subsample of the sorted grid (keeps the spread of alpha); the full grid is the default.
        grid = [grid[round(i * (len(grid) - 1) / (max_points - 1))] for i in range(max_points)]

    def search(previous):
        return [_point(p.alpha, p.beta, p.gamma, 1.0, base_resolution, "search") for p in grid]

    def scale(previous):
        best = max((r for r in previous if r["stage"] == "search"), key=lambda r: r["metrics"]["eval/top1"])
        o = best["overrides"]
        return [_point(o["model.alpha"], o["model.beta"], o["model.gamma"], phi, base_resolution, "compound")
                for phi in range(2, max_phi + 1)]

    return [sweeps.Stage("search", search), sweeps.Stage("scale", scale)]
