"""Compound scaling against scaling one dimension (Tan & Le 2019, arXiv:1905.11946, Fig. 8 / Table 3), on
offline Fashion-MNIST at small scale: issue 20's part 3, one study.

Baseline: experiments/fashion_mnist/mbconv_scaling.py (EfficientNet-B0's body at width 0.5 and depth 0.5, stem at
stride 1, 24x24 inputs resized from the 28x28 images). Every point runs once per seed (``SEEDS``).

Stage ``search`` (independent points):
- ``baseline``;
- ``depth``, ``width``, ``resolution``: one dimension scaled to ``factors`` (2x and 4x) of the baseline's nominal
  FLOPs, the paper's Fig. 3 rule: depth x f, width x sqrt(f), resolution x sqrt(f) (resized, rounded to a pixel);
- ``search``: the paper's step 1 at phi = 1, a small grid of (alpha, beta, gamma) in steps of 0.1, each in
  [1.1, 1.3], with ``|alpha beta^2 gamma^2 - 2| <= 0.1`` (``scaling.compound_grid``): (1.1, 1.1, 1.2),
  (1.1, 1.2, 1.1), (1.3, 1.1, 1.1), one leaning to each dimension. The grid's (1.2, 1.1, 1.2) and (1.2, 1.2, 1.1)
  build the same networks as the first two at phi = 1 (repeats round up alike), so they are not run twice.
Stage ``scale``: ``compound``, the search point with the best mean eval top-1 at phi = 2 (d = alpha^2, w = beta^2,
r = gamma^2: ~4x). The winner is the best mean even when it is not separated from the runner-up by the seed spread
(the paper's search picks one point too); cnn_jax.tools.reproductions reports the margin. ``point=(a,b,g)`` scales
a point of your choice instead.

Nominal and real cost differ at these sizes: the feature maps round up (``ceil(r / 16)`` at the last stages, 2x2 for
17-32 px, 3x3 for 33-48 px) and repeats round up (``ceil(d * repeats)``), so the study is read along the measured
multiply-adds (``cnn_jax.analysis``), not the factor. Measured MACs relative to the baseline (4.02 M): depth 1.65x /
3.46x, width 1.97x / 3.49x, resolution 2.31x (34 px) / 3.20x (48 px), the search points 2.16x, 2.38x and 1.96x
(phi = 2: 4.60x, 3.46x and 3.29x). 24 px keeps the last maps at 2x2 from 17 to 32 px, so the search points' gamma
costs about what the rule says; a 16 px baseline (1x1 last maps) made every gamma > 1 cost >= 2.3x alone.

Budget: 33 runs (11 points x 3 seeds) at ``train.epochs`` of the base config (2), sized to ~3 hours of the 2-core
CPU from the step rates of experiments/fashion_mnist/mbconv_scaling.py; the study took 4.0 hours of run wall time
(start-up, evaluations and the larger inputs' slower steps were not in the sizing): docs/results/compound_scaling.

Run (resumable; the evidence goes to docs/results/compound_scaling, the figure and verdict by
cnn_jax.tools.reproductions):
  python -m cnn_jax.tools.sweep experiments/sweeps/compound_scaling.py --workdir /tmp/compound_scaling
  python -m cnn_jax.tools.results export /tmp/compound_scaling docs/results/compound_scaling
  python -m cnn_jax.tools.reproductions --study compound_scaling
"""

from cnn_jax import sweeps
from cnn_jax.layers.mbconv import build_blocks, round_channels
from cnn_jax.models.efficientnet import EFFICIENTNET_B0_STAGES, EfficientNet
from experiments.sweeps import scaling

BASE_CONFIG = "experiments/fashion_mnist/mbconv_scaling.py"
SEEDS = (0, 1, 2)
BASE_WIDTH, BASE_DEPTH, BASE_RESOLUTION = 0.5, 0.5, 24  # the base config's


def _run(series: str, name: str, depth: float, width: float, resolution: int) -> dict:
    return {"model.depth_mult": round(BASE_DEPTH * depth, 4), "model.width_mult": round(BASE_WIDTH * width, 4),
            "data.image_size": resolution, "_series": series, "_name": name}


def _network(run: dict) -> tuple:
    """What a point trains: its blocks after rounding (repeats up, widths to multiples of 8) and its input size."""
    width, depth = run["model.width_mult"], run["model.depth_mult"]
    blocks = build_blocks(EFFICIENTNET_B0_STAGES, round_channels(EfficientNet.stem_channels, width), act="swish",
                          width_mult=width, depth_mult=depth)
    return blocks, round_channels(EfficientNet.head_channels, width), run["data.image_size"]


def search_grid() -> list[scaling.CompoundPoint]:
    """The grid points that build distinct networks at phi = 1, smallest alpha first: on depth 0.5, alpha 1.1, 1.2
    and 1.3 round to the same repeats, so (1.2, 1.1, 1.2) trains (1.1, 1.1, 1.2)'s network and is not run again."""
    grid = scaling.compound_grid(target=2.0, tolerance=0.1, step=0.1, alpha_range=(1.1, 1.3),
                                beta_range=(1.1, 1.3), gamma_range=(1.1, 1.3))
    seen, distinct = set(), []
    for point in grid:
        network = _network(_compound(point, 1, "search"))
        if network not in seen:
            seen.add(network)
            distinct.append(point)
    return distinct


def _compound(point: scaling.CompoundPoint, phi: int, series: str) -> dict:
    name = f"{series}_a{point.alpha:g}_b{point.beta:g}_g{point.gamma:g}_phi{phi}"
    return _run(series, name, point.alpha**phi, point.beta**phi,
                scaling.proxy_resolution(BASE_RESOLUTION, point.gamma, phi))


def get_stages(factors=(2.0, 4.0), point=None):
    def search(previous):
        runs = [_run("baseline", "baseline", 1.0, 1.0, BASE_RESOLUTION)]
        for f in factors:
            runs.append(_run("depth", f"depth_x{f:g}", f, 1.0, BASE_RESOLUTION))
            runs.append(_run("width", f"width_x{f:g}", 1.0, f**0.5, BASE_RESOLUTION))
            runs.append(_run("resolution", f"resolution_x{f:g}", 1.0, 1.0,
                             scaling.proxy_resolution(BASE_RESOLUTION, f**0.5, 1.0)))
        return runs + [_compound(p, 1, "search") for p in search_grid()]

    def scale(previous):
        if point is not None:
            chosen = scaling.CompoundPoint(*point)
        else:
            searched = [r for r in previous if r["overrides"].get("_series") == "search"]
            best = sweeps.point_key(sweeps.group_points(searched)[0].overrides)
            chosen = next(p for p in search_grid() if sweeps.point_key(_compound(p, 1, "search")) == best)
        return [_compound(chosen, 2, "compound")]

    return [sweeps.Stage("search", search), sweeps.Stage("scale", scale, size=1)]
