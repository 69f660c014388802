"""Coverage of the MOS intervals of ``mos report`` on simulated studies with known true means.

Each simulated study draws rater biases ``a_i ~ N(0, sd_rater²)``, clip effects ``b_j ~ N(0, sd_clip²)`` and noise
``e_ij ~ N(0, sd_resid²)``; a rating is ``μ + a_i + b_j + e_ij``, rounded to the nearest integer and clipped to
1..5 as the app stores it (``rounded``), or left continuous. The estimand is the population MOS, the expected
rating of a new rater on a new clip: ``μ`` when continuous, and when rounded
``Σ_k k · P(clip(round(μ + z)) = k)`` with ``z ~ N(0, sd_rater² + sd_clip² + sd_resid²)``, exact from the normal CDF
at the half-integers. Designs: every rater rates every clip, or each rater rates a window of ``clips_per_rater``
consecutive clips (raters tile the clips as the app's assignment does, so clip counts differ by at most one).

Per study, three 95% intervals of the mean:

- ``crossed``: the primary interval of ``mos report`` (:func:`demo.analysis.crossed_mean_interval`: crossed rater
  and clip random effects, moment estimates, Satterthwaite df);
- ``t``: the independent t interval (every rating independent), the secondary column;
- ``pigeonhole``: the two-way rater × clip percentile bootstrap (raters and clips resampled independently, a
  rating weighted by how often its rater and its clip were drawn), the named alternative, for comparison.

A second table gives the share of studies in which two systems with *equal* true means are called different at
α = 0.05 (the app's Latin assignment of systems × prompts to raters; each clip has its own effect): the
paired-by-prompt t test of the report against Mann-Whitney on all ratings.

    .venv/bin/python benchmarks/mos_coverage.py [--sims 2000] [--boot 500] [--seed 0]

Prints Markdown tables. The simulation is vectorised over studies where it can be; the interval of the report is
computed by the report's own function, study by study.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass

import numpy as np
from scipy import stats

from demo.analysis import crossed_mean_interval
from demo.assign import latin_window


@dataclass(frozen=True)
class Scenario:
    name: str
    n_raters: int = 20
    n_clips: int = 40
    clips_per_rater: int | None = None  # None: every rater rates every clip
    sd_rater: float = 0.5
    sd_clip: float = 0.3
    sd_resid: float = 0.7
    mu: float = 3.6
    rounded: bool = True


SCENARIOS = (
    Scenario("20 raters × 40 clips, all rated, rounded 1..5"),
    Scenario("20 raters × 40 clips, all rated, continuous", rounded=False),
    Scenario("20 raters × 10 of 40 clips, rounded 1..5", clips_per_rater=10),
    Scenario("12 raters × 6 of 12 clips, rounded 1..5", n_raters=12, n_clips=12, clips_per_rater=6),
)


def true_mean(sc: Scenario) -> float:
    """The population MOS that the simulated ratings estimate (see the module docstring)."""
    if not sc.rounded:
        return sc.mu
    sd = math.sqrt(sc.sd_rater ** 2 + sc.sd_clip ** 2 + sc.sd_resid ** 2)
    edges = np.array([-np.inf, 1.5, 2.5, 3.5, 4.5, np.inf])
    p = np.diff(stats.norm.cdf((edges - sc.mu) / sd))  # P(rating = 1..5)
    return float(p @ np.arange(1, 6))


def design(sc: Scenario) -> np.ndarray:
    """``[R, C]`` bool: which rater rates which clip."""
    R, C = sc.n_raters, sc.n_clips
    if sc.clips_per_rater is None:
        return np.ones((R, C), dtype=bool)
    k = sc.clips_per_rater
    mask = np.zeros((R, C), dtype=bool)
    for i in range(R):
        mask[i, (i * k + np.arange(k)) % C] = True
    return mask


def simulate(sc: Scenario, n_sims: int, rng: np.random.Generator) -> np.ndarray:
    """``[S, R, C]`` ratings of ``n_sims`` studies (every cell drawn; the design mask picks the rated ones)."""
    S, R, C = n_sims, sc.n_raters, sc.n_clips
    y = (sc.mu + rng.normal(0, sc.sd_rater, (S, R, 1)) + rng.normal(0, sc.sd_clip, (S, 1, C))
         + rng.normal(0, sc.sd_resid, (S, R, C)))
    return np.clip(np.rint(y), 1, 5) if sc.rounded else y


def pigeonhole_intervals(y: np.ndarray, mask: np.ndarray, n_boot: int, rng: np.random.Generator,
                         level: float = 0.95) -> np.ndarray:
    """``[S, 2]`` percentile intervals of the two-way bootstrap for ``y`` [S, R, C] under ``mask`` [R, C]."""
    S, R, C = y.shape
    m = mask.astype(np.float64)
    Y = np.where(mask, y, 0.0)
    out = np.empty((S, 2))
    a = (1 - level) / 2
    for s in range(S):
        rw = rng.multinomial(R, np.full(R, 1 / R), size=n_boot).astype(np.float64)  # [B, R] draws per rater
        cw = rng.multinomial(C, np.full(C, 1 / C), size=n_boot).astype(np.float64)  # [B, C] draws per clip
        num = ((rw @ Y[s]) * cw).sum(1)
        den = ((rw @ m) * cw).sum(1)
        means = num[den > 0] / den[den > 0]
        out[s] = np.quantile(means, [a, 1 - a])
    return out


def coverage(sc: Scenario, n_sims: int, seed: int = 0, n_boot: int = 0, level: float = 0.95) -> dict:
    """Coverage and mean width of each interval over ``n_sims`` simulated studies (bootstrap only if n_boot)."""
    rng = np.random.default_rng(seed)
    truth = true_mean(sc)
    mask = design(sc)
    y = simulate(sc, n_sims, rng)
    ri, ci = np.nonzero(mask)
    res: dict[str, list] = {"crossed": [], "t": []}
    tq = stats.t.ppf(0.5 + level / 2, ri.size - 1)
    for s in range(n_sims):
        v = y[s, ri, ci]
        cm = crossed_mean_interval(v, ri, ci, level)
        res["crossed"].append((cm.low, cm.high))
        half = tq * v.std(ddof=1) / math.sqrt(v.size)
        res["t"].append((v.mean() - half, v.mean() + half))
    if n_boot:
        res["pigeonhole"] = list(pigeonhole_intervals(y, mask, n_boot, rng, level))
    out = {"truth": truth, "n_sims": n_sims}
    for k, iv in res.items():
        iv = np.asarray(iv, dtype=np.float64)
        out[k] = {"coverage": float(np.mean((iv[:, 0] <= truth) & (truth <= iv[:, 1]))),
                  "width": float(np.mean(iv[:, 1] - iv[:, 0]))}
    return out


def pairwise_null(n_sims: int, seed: int = 0, n_prompts: int = 20, n_raters: int = 20, clips_per_rater: int = 10,
                  sd_rater: float = 0.5, sd_clip: float = 0.3, sd_resid: float = 0.7, alpha: float = 0.05) -> dict:
    """Share of studies where two systems of equal true mean are called different at ``alpha``.

    Design: the app's Latin windows over 2 systems × ``n_prompts`` prompts; each clip (system, prompt) has its own
    effect; ratings rounded to 1..5. Tests: paired by prompt (t on per-prompt mean differences, the report's
    default) and Mann-Whitney over all ratings (each rating independent).
    """
    rng = np.random.default_rng(seed)
    cells = [latin_window(2, n_prompts, clips_per_rater, i) for i in range(n_raters)]
    ri = np.repeat(np.arange(n_raters), clips_per_rater)
    si = np.array([s for cc in cells for s, _ in cc])
    pi = np.array([p for cc in cells for _, p in cc])
    cell = si * n_prompts + pi
    counts = np.bincount(cell, minlength=2 * n_prompts).reshape(2, n_prompts)
    rated = (counts > 0).all(0)  # prompts rated under both systems
    y = (3.6 + rng.normal(0, sd_rater, (n_sims, n_raters))[:, ri] + rng.normal(0, sd_clip, (n_sims, 2 * n_prompts))[:, cell]
         + rng.normal(0, sd_resid, (n_sims, ri.size)))
    y = np.clip(np.rint(y), 1, 5)
    rej = {"paired by prompt (t)": 0, "Mann-Whitney (independent)": 0}
    for s in range(n_sims):
        sums = np.bincount(cell, weights=y[s], minlength=2 * n_prompts).reshape(2, n_prompts)
        d = (sums[0] / np.maximum(counts[0], 1) - sums[1] / np.maximum(counts[1], 1))[rated]
        rej["paired by prompt (t)"] += stats.ttest_1samp(d, 0.0).pvalue < alpha
        rej["Mann-Whitney (independent)"] += stats.mannwhitneyu(y[s, si == 0], y[s, si == 1]).pvalue < alpha
    return {k: float(v / n_sims) for k, v in rej.items()}


def binomial_band(n: int, p: float = 0.95, q: float = 0.001) -> tuple[float, float]:
    """The central ``1 − q`` range of an observed coverage share when the true coverage is ``p`` over ``n`` sims."""
    return (stats.binom.ppf(q / 2, n, p) / n, stats.binom.ppf(1 - q / 2, n, p) / n)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sims", type=int, default=2000, help="simulated studies per scenario (at least 1000 to report)")
    ap.add_argument("--boot", type=int, default=500, help="pigeonhole bootstrap replicates per study (0: skip)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    t0 = time.time()
    lo, hi = binomial_band(args.sims, q=0.05)
    print(f"# MOS interval coverage, {args.sims} simulated studies per row (nominal 95%; with {args.sims} sims a "
          f"true 95% shows as {100 * lo:.1f}-{100 * hi:.1f}% 19 times in 20)\n")
    print("rater bias sd 0.5, clip sd 0.3, residual sd 0.7, μ = 3.6 before rounding\n")
    cols = ["crossed", "t"] + (["pigeonhole"] if args.boot else [])
    print("| design | true MOS | " + " | ".join(f"{c} coverage | {c} width" for c in cols) + " |")
    print("|---|---:|" + "---:|---:|" * len(cols))
    for k, sc in enumerate(SCENARIOS):
        r = coverage(sc, args.sims, seed=args.seed + k, n_boot=args.boot)
        print(f"| {sc.name} | {r['truth']:.3f} | "
              + " | ".join(f"{100 * r[c]['coverage']:.1f}% | {r[c]['width']:.3f}" for c in cols) + " |", flush=True)
    print("\n## Two systems with equal true MOS: share called different at α = 0.05 (nominal 5%)\n")
    print("Latin windows, 2 systems × 20 prompts, 20 raters × 10 clips; rater sd 0.5, residual sd 0.7\n")
    rows = {sd: pairwise_null(args.sims, seed=args.seed + 100, sd_clip=sd) for sd in (0.3, 0.6)}
    names = list(rows[0.3])
    print("| clip sd | " + " | ".join(names) + " |\n|---:|" + "---:|" * len(names))
    for sd, pw in rows.items():
        print(f"| {sd} | " + " | ".join(f"{100 * pw[n]:.1f}%" for n in names) + " |")
    print(f"\n({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
