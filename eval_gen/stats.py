"""Statistics behind the reported numbers: bootstrap intervals, Wilson intervals and the paired order claim.

* :func:`bootstrap_ci`: seeded bootstrap confidence intervals for set-to-set distances. Both sets are resampled
  independently with replacement (rows of ``[N, D]`` and ``[M, D]``), the distance is recomputed on each
  replicate and the percentile interval is returned. The point estimate is always the distance on the full
  sets, never the bootstrap mean.
* :func:`wilson_interval`: the Wilson score interval of a proportion ``k / n``.
* :func:`mcnemar_exact` and :func:`paired_order_claim`: two systems that generated the *same* prompts with the
  *same* seeds give one outcome (order right / wrong) each per ``(seed, prompt id)``: a paired design, where
  the two accuracies are not independent and two separate intervals understate what the data shows (or
  overstate it). McNemar's exact test uses only the discordant pairs (one system right, the other wrong):
  under "no difference" each discordant pair goes either way with probability 1/2, so the number won by
  system A is Binomial(discordant, 1/2) and the two-sided p value is that binomial test's.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable, Hashable, Mapping, Sequence

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


# ------------------------------------------------------------------------------------------ proportions, pairs
def wilson_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval ``(low, high)`` of the proportion ``k / n`` (``(nan, nan)`` when ``n == 0``).

    Unlike the normal (Wald) interval it stays inside [0, 1] and does not collapse to a point at 0 or n
    successes, which matters for accuracies near 100%.
    """
    if not 0.0 < level < 1.0:
        raise UserError(f"confidence level must lie in (0, 1), got {level}")
    if n < 0 or not 0 <= k <= max(n, 0):
        raise UserError(f"a proportion needs 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return (float("nan"), float("nan"))
    from scipy.stats import norm

    z = float(norm.ppf(0.5 + level / 2.0))
    p = k / n
    d = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / d
    half = z * math.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n)) / d
    # At k = 0 or k = n the bound is exactly 0 or 1; rounding would leave 1e-17 instead.
    return (0.0 if k == 0 else max(0.0, centre - half), 1.0 if k == n else min(1.0, centre + half))


@dataclass(frozen=True)
class McNemarResult:
    """Counts of a paired comparison of systems A and B and the exact two-sided McNemar p value.

    ``only_a``: pairs where A is right and B wrong; ``only_b`` the reverse; ``both`` / ``neither`` the
    concordant pairs. ``p_value`` is ``binomtest(only_a, only_a + only_b, 1/2)`` (1.0 without discordant pairs).
    """

    n_pairs: int
    both: int
    only_a: int
    only_b: int
    neither: int
    p_value: float

    def as_dict(self) -> dict:
        return {"n_pairs": self.n_pairs, "both": self.both, "only_a": self.only_a, "only_b": self.only_b,
                "neither": self.neither, "p_value": self.p_value}


def mcnemar_exact(a: Sequence[bool], b: Sequence[bool]) -> McNemarResult:
    """Exact McNemar test of paired binary outcomes ``a [N]`` and ``b [N]`` (element ``i`` is one pair)."""
    if len(a) != len(b):
        raise UserError(f"paired outcomes differ in length: {len(a)} vs {len(b)} (pair them by key first)")
    from scipy.stats import binomtest

    aa = np.asarray(a, dtype=bool)
    bb = np.asarray(b, dtype=bool)
    only_a, only_b = int((aa & ~bb).sum()), int((~aa & bb).sum())
    disc = only_a + only_b
    p = float(binomtest(only_a, disc, 0.5, alternative="two-sided").pvalue) if disc else 1.0
    return McNemarResult(n_pairs=int(len(aa)), both=int((aa & bb).sum()), only_a=only_a, only_b=only_b,
                         neither=int((~aa & ~bb).sum()), p_value=min(1.0, p))


def pair_outcomes(a: Mapping[Hashable, bool], b: Mapping[Hashable, bool]) -> tuple[list, list[bool], list[bool]]:
    """The keys both systems scored (sorted by ``repr`` for a stable order) and their aligned outcomes."""
    keys = sorted(set(a) & set(b), key=repr)
    return keys, [bool(a[k]) for k in keys], [bool(b[k]) for k in keys]


def paired_order_claim(a: Mapping[Hashable, bool], b: Mapping[Hashable, bool], alpha: float = 0.01,
                       min_pairs: int = 400, level: float = 0.95) -> dict:
    """Is system A's order accuracy above system B's, decided by McNemar's exact test on paired outcomes?

    ``a`` and ``b`` map a pair key (e.g. ``(seed, prompt id)``) to whether that clip's events came in the
    prompted order. Only keys present in both count; the others are reported under ``unpaired``, never
    silently dropped. The verdict is ``"yes"`` only when there are at least ``min_pairs`` pairs, A wins more
    discordant pairs than B, and the two-sided exact p value is below ``alpha``; otherwise ``"not shown"``
    with the reason.

    Returns ``{"verdict", "reason", "alpha", "min_pairs", "n_pairs", "p_value", "mcnemar": {...}, "a": {"correct",
    "n", "accuracy", "wilson": [low, high]}, "b": {...}, "unpaired": {"only_in_a", "only_in_b"}}``.
    """
    keys, xa, xb = pair_outcomes(a, b)
    m = mcnemar_exact(xa, xb)

    def side(x: list[bool]) -> dict:
        k, n = int(sum(x)), len(x)
        lo, hi = wilson_interval(k, n, level)
        return {"correct": k, "n": n, "accuracy": k / n if n else None, "wilson": [lo, hi], "level": level}

    if m.n_pairs < min_pairs:
        verdict, reason = "not shown", f"too few pairs ({m.n_pairs} < {min_pairs})"
    elif m.only_a <= m.only_b:
        verdict, reason = "not shown", (f"wrong direction: the second system wins as many or more discordant "
                                        f"pairs ({m.only_b} vs {m.only_a})")
    elif m.p_value >= alpha:
        verdict, reason = "not shown", f"p = {m.p_value:.3g} is not below {alpha:g}"
    else:
        verdict, reason = "yes", f"p = {m.p_value:.3g} < {alpha:g} over {m.n_pairs} pairs"
    return {"verdict": verdict, "reason": reason, "alpha": alpha, "min_pairs": min_pairs, "n_pairs": m.n_pairs,
            "p_value": m.p_value, "mcnemar": m.as_dict(), "a": side(xa), "b": side(xb),
            "unpaired": {"only_in_a": len(set(a) - set(b)), "only_in_b": len(set(b) - set(a))}}
