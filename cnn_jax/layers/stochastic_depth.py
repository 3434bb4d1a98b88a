"""Stochastic depth (Huang et al. 2016): one module, :class:`DropPath`, for a fixed rate or a traced per-block rate
(blocks under ``nn.scan``), and the rules by which the rate grows with depth."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_jax.layers.types import Array


class DropPath(nn.Module):
    """Stochastic depth on a residual branch (Huang et al. 2016): drops the branch for whole samples.

    In training each sample keeps its branch with probability ``1 - rate`` and kept branches are scaled by
    ``1 / (1 - rate)`` (so evaluation is the identity, instead of the paper's equivalent test-time scaling by the
    survival probability). Needs a ``"dropout"`` PRNG stream in training.

    ``rate`` is fixed at construction, or given per call (``rate=``), which may be a traced value: the per-block
    rates of a stage run under ``nn.scan`` arrive as a scanned array.
    """

    rate: float = 0.0

    @nn.compact
    def __call__(self, x: Array, *, train: bool, rate: float | Array | None = None) -> Array:
        rate = self.rate if rate is None else rate
        if not train or (isinstance(rate, int | float) and rate == 0.0):
            return x
        return drop_path(x, rate, self.make_rng("dropout"))


def drop_path(x: Array, rate: float | Array, rng: Array) -> Array:
    """Drops whole samples of ``x`` with probability ``rate`` and scales the kept ones by ``1 / (1 - rate)``: the
    arithmetic of :class:`DropPath` (training mode), for callers holding their own PRNG key."""
    keep = 1.0 - rate
    mask = jax.random.bernoulli(rng, keep, (x.shape[0],) + (1,) * (x.ndim - 1))
    return jnp.where(mask, x / jnp.asarray(keep, x.dtype), jnp.zeros_like(x))


# Linear-decay rules for the drop rate of block i of n (0-based): the rules in use differ only in the denominator.
DROP_PATH_RULES: dict[str, Callable[[int, int], float]] = {
    # Huang et al. 2016 Sec. 3: p_l = 1 - l/L (1 - p_L), l = 1..L, so the last block gets the full rate.
    "huang": lambda i, n: (i + 1) / n,
    # TF EfficientNet/MnasNet builders: rate * i / n; the first block is never dropped, the last gets (n-1)/n.
    "efficientnet": lambda i, n: i / n,
    # timm: linspace(0, rate, n); the first block is never dropped, the last gets the full rate.
    "linspace": lambda i, n: i / (n - 1) if n > 1 else 0.0,
}


def drop_path_rates(rate: float, num_blocks: int, rule: str = "huang") -> list[float]:
    """Per-block drop rates decaying linearly with depth under a named rule (see ``DROP_PATH_RULES``)."""
    if rule not in DROP_PATH_RULES:
        raise ValueError(f"unknown drop-path rule {rule!r}; expected one of {sorted(DROP_PATH_RULES)}")
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"drop_path_rate must be in [0, 1); got {rate}")
    return [rate * DROP_PATH_RULES[rule](i, num_blocks) for i in range(num_blocks)]


def stage_drop_path_rates(rate: float, depths: Sequence[int], rule: str) -> list[list[float]]:
    """Per-stage lists of per-unit drop-path rates, ``rule`` applied over all units of the network."""
    rates = drop_path_rates(rate, sum(depths), rule)
    starts = [sum(depths[:i]) for i in range(len(depths))]
    return [rates[start : start + depth] for start, depth in zip(starts, depths, strict=True)]
