"""The EfficientNet compound-scaling grid of the scaling sweeps (Tan & Le 2019, arXiv:1905.11946, Sec. 3.3, Eq. 3):
depth ``d = alpha^phi``, width ``w = beta^phi``, resolution ``r = gamma^phi`` subject to ``alpha * beta^2 * gamma^2
~ 2`` (FLOPs grow with ``d * w^2 * r^2``, so about ``2^phi``), searched at ``phi = 1`` on a small proxy task.
Used by ``compound_scaling.py``, ``efficientnet_compound.py`` and ``efficientnet_single_axis.py``.
"""

from __future__ import annotations

import dataclasses
import math


@dataclasses.dataclass(frozen=True)
class CompoundPoint:
    alpha: float
    beta: float
    gamma: float

    @property
    def flops_factor(self) -> float:
        """``alpha * beta^2 * gamma^2``: the FLOPs multiplier of one phi step (Eq. 3's constraint, ~2)."""
        return self.alpha * self.beta**2 * self.gamma**2


def compound_grid(
    *,
    target: float = 2.0,
    tolerance: float = 0.1,
    step: float = 0.05,
    alpha_range: tuple[float, float] = (1.0, 2.0),
    beta_range: tuple[float, float] = (1.0, 1.5),
    gamma_range: tuple[float, float] = (1.0, 1.5),
) -> list[CompoundPoint]:
    """Grid points ``(alpha, beta, gamma) >= 1`` (multiples of ``step``) with ``|alpha beta^2 gamma^2 - target|
    <= tolerance``, sorted by alpha, beta, gamma.

    The paper's search (Sec. 3.3, step 1) fixes phi = 1 and grid-searches alpha, beta, gamma under
    ``alpha * beta^2 * gamma^2 ~ 2``; it reports alpha = 1.2, beta = 1.1, gamma = 1.15 (factor 1.92) for B0.
    """
    if tolerance < 0 or step <= 0:
        raise ValueError(f"compound_grid: tolerance={tolerance} must be >= 0 and step={step} > 0")

    def values(lo: float, hi: float) -> list[float]:
        n = int(math.floor((hi - lo) / step + 1e-9))
        return [round(lo + i * step, 10) for i in range(n + 1)]

    points = [
        CompoundPoint(a, b, g)
        for a in values(*alpha_range)
        for b in values(*beta_range)
        for g in values(*gamma_range)
        if abs(a * b * b * g * g - target) <= tolerance + 1e-12
    ]
    if not points:
        raise ValueError(f"compound_grid: no point within tolerance={tolerance} of alpha*beta^2*gamma^2={target} "
                         f"on a grid of step {step}; widen the tolerance or the ranges")
    return points


def proxy_resolution(base: int, gamma: float, phi: float) -> int:
    """Input size of a scaled proxy run: ``base * gamma^phi`` rounded (halves up), as for ``efficientnet_phi``."""
    return math.floor(base * gamma**phi + 0.5)
