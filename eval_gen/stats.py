"""Seeded bootstrap confidence intervals for set-to-set distances.

Both sets are resampled independently with replacement (rows of ``[N, D]`` and ``[M, D]``), the distance is
recomputed on each replicate and the percentile interval is returned. The point estimate is always the
distance on the full sets, never the bootstrap mean.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
from tqdm.auto import tqdm

from basekit.errors import UserError


@dataclass(frozen=True)
class BootstrapCI:
    """Percentile interval ``[low, high]`` at ``level`` from ``n_boot`` replicates."""

    low: float
    high: float
    level: float
    n_boot: int
    std: float

    def as_dict(self) -> dict:
        return {"low": self.low, "high": self.high, "level": self.level, "n_boot": self.n_boot, "std": self.std}


def bootstrap_ci(
    fn: Callable[[np.ndarray, np.ndarray], float],
    x: np.ndarray,
    y: np.ndarray,
    n_boot: int = 100,
    level: float = 0.95,
    seed: int = 0,
    progress: bool = False,
    desc: str = "bootstrap",
) -> BootstrapCI:
    """Percentile bootstrap CI of ``fn(x, y)`` for ``x [N, D]`` and ``y [M, D]``.

    Deterministic for a given ``seed``. Rank warnings of the replicates are silenced (they repeat the
    warning already given for the full sets).
    """
    if n_boot < 2:
        raise UserError(f"bootstrap needs at least 2 replicates, got n_boot={n_boot}")
    if not 0.0 < level < 1.0:
        raise UserError(f"confidence level must lie in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    n, m = len(x), len(y)
    vals = np.empty(n_boot, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for b in tqdm(range(n_boot), desc=desc, disable=None if progress else True, leave=False):
            vals[b] = fn(x[rng.integers(0, n, n)], y[rng.integers(0, m, m)])
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(vals, [alpha, 1.0 - alpha])
    return BootstrapCI(low=float(lo), high=float(hi), level=level, n_boot=n_boot, std=float(vals.std(ddof=1)))
