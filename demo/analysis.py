"""Statistics of a listening study that respect its design: raters and clips are both samples.

Pure functions over plain records (one dict per rating: ``rater_id, item_id, kind, system, prompt_id, scale,
value``), so they are easy to test against hand-worked numbers. :mod:`demo.report` reads the database and
writes the files. docs/mos-statistics.md explains every choice below with its simulation check
(``benchmarks/mos_coverage.py``).

**Per-system mean (primary interval).** Each rater rates many clips and each clip is rated by many raters, so
ratings are not independent: a harsh rater lowers all of their ratings, a bad clip all of its ratings. Within one
system and scale the ratings follow the crossed random-effects model

    y_ij = μ + a_i + b_j + e_ij,    a_i ~ (0, σ_A²) rater,  b_j ~ (0, σ_B²) clip,  e_ij ~ (0, σ_E²)

with at most one rating per rater and clip (``n_i`` ratings by rater i, ``m_j`` of clip j, ``N`` in all). The MOS is
the plain mean ``ȳ``, and for any fixed design

    Var(ȳ) = σ_A² Σ_i n_i² / N²  +  σ_B² Σ_j m_j² / N²  +  σ_E² / N                                   (1)

(with every rater rating every clip: σ_A²/R + σ_B²/C + σ_E²/(RC)). The variance components come from three
U-statistics, the method of moments of Gao & Owen (2017, "Efficient moment calculations for variance components
in large unbalanced crossed random effects models", EJS 11), which needs no balance and is O(N):

    U_A = Σ_i [n_i Σ_j y_ij² − (Σ_j y_ij)²]  (pairs within a rater)   E = (σ_B² + σ_E²)(Σ n_i² − N)
    U_B = Σ_j [m_j Σ_i y_ij² − (Σ_i y_ij)²]  (pairs within a clip)    E = (σ_A² + σ_E²)(Σ m_j² − N)
    U_E = N Σ y² − (Σ y)²                     (all pairs)              E = σ_A²(N² − Σ n_i²) + σ_B²(N² − Σ m_j²)
                                                                           + σ_E²(N² − N)

Solving the three equations gives unbiased σ̂² (a negative one is set to 0, as Gao & Owen do). A factor whose every
level has one rating (each rater rated one clip) cannot be told from the residual; its coefficients in (1) and in
the equations equal the residual's, so it is merged into σ_E² exactly. The interval is ``ȳ ± t(df) · sqrt(V̂)``
with Satterthwaite's degrees of freedom for ``V̂ = T_A + T_B − T_E``, ``T_A = V̂_A + V̂_E`` (``R − 1`` df),
``T_B = V̂_B + V̂_E`` (``C − 1``), ``T_E = V̂_E`` (``N − R − C + 1``), where ``V̂_A, V̂_B, V̂_E`` are the three terms of
(1): in a complete design these are the mean squares of the two-way ANOVA over ``RC``, and the formula is the
classical one. The model holds for ratings rounded to 1..5 too: (1) is then the
Hoeffding (ANOVA) decomposition of the rating as a function of independent rater, clip and noise draws, and the
U-statistics estimate its components without assuming normality. The independent t interval
(``mean ± t(0.975, N−1) · s/√N``, the usual MOS report) is kept as a secondary column; it is far too narrow
whenever raters differ.

**Pairwise comparisons, paired by prompt.** For systems A and B on one scale, over the prompts both were rated on:
``d_p = ȳ_A(p) − ȳ_B(p)`` (clip means), the mean difference ``d̄`` with a t interval over prompts, and a test per
pair: ``paired-t`` (default, one-sample t on the d_p), ``wilcoxon-prompt`` (signed rank on the d_p), or the
tests that treat every rating as independent, ``mannwhitney`` and ``welch`` (kept for comparison with older
reports). Holm's step-down correction runs over the pairs of a scale.

**Screening that scales with the clips per rater.** The consensus rule no longer compares a rater's raw Pearson r
against ``min_consensus_corr``: with 6 clips an honest rater's r scatters by about ±0.4, and a point rule excluded
honest raters. A rater is excluded when the data show their true correlation with the others is below
``min_consensus_corr``: a one-sided Fisher-z test (``z = (atanh r − atanh c) · sqrt(n − 3)``), Holm-corrected
over every rater and scale tested, at ``consensus_alpha``. Few clips give little evidence, so few exclusions;
``consensus_alpha: null`` restores the point rule. The zero-variance rule applies from ``zero_variance_min_clips``
clips on a scale; attention and gold failures count clips, not scale answers.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from scipy import stats

from demo.study import ScreeningRules

TESTS = ("paired-t", "wilcoxon-prompt", "mannwhitney", "welch")
DEFAULT_TEST = "paired-t"


@dataclass(frozen=True)
class Exclusion:
    rater_id: str
    rule: str
    reason: str


def holm(pvalues: list[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (same order as the input); NaN entries stay NaN and are not counted.

    Sort ascending; the i-th smallest (0-based) becomes ``(m - i) · p``; then a running maximum keeps the
    adjusted values monotone, and values are capped at 1.
    """
    adj = [math.nan] * len(pvalues)
    idx = [i for i, p in enumerate(pvalues) if not math.isnan(p)]
    m = len(idx)
    running = 0.0
    for rank, i in enumerate(sorted(idx, key=lambda i: pvalues[i])):
        running = max(running, (m - rank) * pvalues[i])
        adj[i] = min(1.0, running)
    return adj


# ---- per-system mean: crossed random effects ---------------------------------------------------------------


@dataclass(frozen=True)
class CrossedMean:
    """The mean of one system's ratings with its crossed rater × clip interval (see the module docstring).

    ``var_*`` are the moment estimates of σ_A², σ_B², σ_E² (NaN where a factor is merged into the residual); ``se``
    is ``sqrt(V̂)`` of equation (1); ``low``/``high`` the ``level`` interval on ``df`` degrees of freedom (NaN with
    fewer than 2 raters or 2 clips: then nothing can be said about other raters or clips).
    """

    mean: float
    se: float
    df: float
    low: float
    high: float
    var_rater: float
    var_clip: float
    var_resid: float
    n: int
    n_raters: int
    n_clips: int


def crossed_mean_interval(values, raters, clips, level: float = 0.95) -> CrossedMean:
    """Mean and ``level`` interval of ``values`` [N] under crossed random rater and clip effects.

    Args:
        values: ``[N]`` ratings.
        raters, clips: ``[N]`` labels (any hashable, or integer codes); one rating per (rater, clip) at most.
        level: coverage of the interval.
    """
    y = np.asarray(values, dtype=np.float64)
    _, r = np.unique(np.asarray(raters), return_inverse=True)
    _, c = np.unique(np.asarray(clips), return_inverse=True)
    N = y.size
    if not (r.size == c.size == N):
        raise ValueError(f"values, raters and clips must have one entry per rating, got {N}, {r.size}, {c.size}")
    R, C = (int(r.max()) + 1, int(c.max()) + 1) if N else (0, 0)
    nan = math.nan
    if N == 0:
        return CrossedMean(nan, nan, nan, nan, nan, nan, nan, nan, 0, 0, 0)
    if np.unique(r * C + c).size < N:
        raise ValueError("a rater rated the same clip twice; the crossed model takes one rating per rater and clip")
    mean = float(y.mean())
    if R < 2 or C < 2:
        return CrossedMean(mean, nan, nan, nan, nan, nan, nan, nan, N, R, C)
    z = y - mean  # the U-statistics are shift-invariant; centring keeps the sums of squares well conditioned
    n_i = np.bincount(r, minlength=R).astype(np.float64)
    m_j = np.bincount(c, minlength=C).astype(np.float64)
    sa2, sb2 = float((n_i ** 2).sum()), float((m_j ** 2).sum())
    u_a = float((n_i * np.bincount(r, z * z, R) - np.bincount(r, z, R) ** 2).sum())
    u_b = float((m_j * np.bincount(c, z * z, C) - np.bincount(c, z, C) ** 2).sum())
    u_e = float(N * (z * z).sum() - z.sum() ** 2)
    # rows: E[U_A], E[U_B], E[U_E]; columns: σ_A², σ_B², σ_E²
    eq = np.array([[0.0, sa2 - N, sa2 - N],
                   [sb2 - N, 0.0, sb2 - N],
                   [N * N - sa2, N * N - sb2, N * N - N]])
    u = np.array([u_a, u_b, u_e])
    # A factor with one rating per level (Σ n_i² = N) has the residual's coefficients everywhere: merge it.
    active = [k for k, on in ((0, sa2 > N), (1, sb2 > N)) if on] + [2]
    try:
        sol = np.linalg.solve(eq[np.ix_(active, active)], u[active])
    except np.linalg.LinAlgError:
        return CrossedMean(mean, nan, nan, nan, nan, nan, nan, nan, N, R, C)
    var = dict(zip(active, np.maximum(sol, 0.0)))
    coef = {0: sa2 / N ** 2, 1: sb2 / N ** 2, 2: 1.0 / N}
    parts = {k: coef[k] * var[k] for k in active}  # the three terms of (1)
    v = sum(parts.values())
    # Satterthwaite over the strata, as in the balanced two-way ANOVA where V = (MS_A + MS_B − MS_E) / (RC):
    # the rater and clip strata each carry their term plus the residual's (MS_A / RC = V_A + V_E), with R − 1
    # and C − 1 df; the residual, counted once too often, is taken off with its own df.
    factors = [(k, (R - 1, C - 1)[k]) for k in active if k != 2]
    df_e = max(N - 1 - sum(d for _, d in factors), 1)
    denom = sum((parts[k] + parts[2]) ** 2 / d for k, d in factors) + (len(factors) - 1) ** 2 * parts[2] ** 2 / df_e
    if not factors:
        denom = parts[2] ** 2 / df_e
    df = v * v / denom if denom > 0 else math.inf
    se = math.sqrt(v)
    half = float(stats.t.ppf(0.5 + level / 2, df)) * se if se > 0 else 0.0
    return CrossedMean(mean, se, float(df), mean - half, mean + half, float(var.get(0, nan)), float(var.get(1, nan)),
                       float(var[2]), N, R, C)


def t_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """``mean ± t(0.5 + level/2, n−1) · s/√n``: every rating treated as independent (the secondary column)."""
    n = len(values)
    if n < 2:
        return (math.nan, math.nan)
    m = float(np.mean(values))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * np.std(values, ddof=1) / math.sqrt(n))
    return (m - half, m + half)


def system_summary(records: list[dict], level: float = 0.95) -> list[dict]:
    """Per scale × system (main clips of the kept raters): counts, mean, std, the crossed rater × clip interval
    (``ci_low``/``ci_high``, its ``df`` and the standard deviations of the three effects) and the independent t
    interval (``ci_t_low``/``ci_t_high``)."""
    rows = []
    for sc in sorted({r["scale"] for r in records}):
        recs = [r for r in records if r["scale"] == sc]
        for s in sorted({r["system"] for r in recs}):
            mine = [r for r in recs if r["system"] == s]
            v = np.array([r["value"] for r in mine], float)
            cm = crossed_mean_interval(v, [r["rater_id"] for r in mine], [r["item_id"] for r in mine], level)
            lo, hi = t_interval(v, level)
            rows.append({"scale": sc, "system": s, "n": cm.n, "n_raters": cm.n_raters, "n_clips": cm.n_clips,
                         "mean": cm.mean, "std": float(v.std(ddof=1)) if len(v) > 1 else math.nan,
                         "ci_low": cm.low, "ci_high": cm.high, "df": cm.df,
                         "sd_rater": _sqrt(cm.var_rater), "sd_clip": _sqrt(cm.var_clip), "sd_resid": _sqrt(cm.var_resid),
                         "ci_t_low": lo, "ci_t_high": hi})
    return rows


def _sqrt(x: float) -> float:
    return math.sqrt(x) if x >= 0 else math.nan  # NaN stays NaN (NaN >= 0 is False)


# ---- pairwise comparisons ------------------------------------------------------------------------------


def pairwise_tests(records: list[dict], test: str = DEFAULT_TEST, level: float = 0.95) -> list[dict]:
    """Every system pair per scale, paired by prompt, with Holm-adjusted p-values within the scale.

    Each row: ``mean_diff`` (mean over common prompts of A's clip mean − B's), ``diff_low``/``diff_high`` (its t
    interval over prompts), ``n_pairs`` (common prompts), the chosen test's ``statistic`` and ``p`` (NaN when the
    test cannot run, e.g. one common prompt), and ``p_holm``.
    """
    if test not in TESTS:
        raise ValueError(f"test must be one of {TESTS}, got {test!r}")
    rows = []
    for sc in sorted({r["scale"] for r in records}):
        recs = [r for r in records if r["scale"] == sc]
        systems = sorted({r["system"] for r in recs})
        vals = {s: np.array([r["value"] for r in recs if r["system"] == s], float) for s in systems}
        per_prompt: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        for r in recs:
            per_prompt[r["system"]][r["prompt_id"]].append(r["value"])
        block = []
        for a, b in itertools.combinations(systems, 2):
            common = sorted(set(per_prompt[a]) & set(per_prompt[b]))
            d = np.array([np.mean(per_prompt[a][p]) - np.mean(per_prompt[b][p]) for p in common])
            n_pairs = len(common)
            diff = float(d.mean()) if n_pairs else math.nan
            lo, hi = _paired_interval(d, level)
            stat, p = math.nan, math.nan
            if test == "paired-t":
                if n_pairs >= 2 and np.ptp(d) > 0:
                    res = stats.ttest_1samp(d, 0.0)
                    stat, p = float(res.statistic), float(res.pvalue)
                elif n_pairs >= 2:  # every prompt gives the same difference: no spread to test against
                    stat, p = (0.0, 1.0) if diff == 0 else (math.copysign(math.inf, diff), 0.0)
            elif test == "wilcoxon-prompt":
                if n_pairs >= 1 and np.any(d != 0):
                    res = stats.wilcoxon(d)
                    stat, p = float(res.statistic), float(res.pvalue)
                elif n_pairs >= 1:
                    stat, p = 0.0, 1.0
            else:
                x, y = vals[a], vals[b]
                res = (stats.mannwhitneyu(x, y, alternative="two-sided") if test == "mannwhitney"
                       else stats.ttest_ind(x, y, equal_var=False))
                stat, p = float(res.statistic), float(res.pvalue)
            block.append({"scale": sc, "system_a": a, "system_b": b, "test": test, "mean_diff": diff,
                          "diff_low": lo, "diff_high": hi, "n_pairs": n_pairs, "statistic": stat, "p": p,
                          "n_a": len(vals[a]), "n_b": len(vals[b])})
        for row, adj in zip(block, holm([r["p"] for r in block])):
            row["p_holm"] = adj
        rows.extend(block)
    return rows


def _paired_interval(d: np.ndarray, level: float) -> tuple[float, float]:
    if len(d) < 2:
        return (math.nan, math.nan)
    half = float(stats.t.ppf(0.5 + level / 2, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d)))
    return (float(d.mean()) - half, float(d.mean()) + half)


# ---- screening ---------------------------------------------------------------------------------------


def _pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    if len(x) < 3 or np.std(x) == 0 or np.std(y) == 0:
        return None
    return float(np.corrcoef(x, y)[0, 1])


def consensus_pvalue(r: float, n: int, threshold: float) -> float:
    """One-sided p of "the true correlation is at least ``threshold``" given Pearson ``r`` over ``n`` clips.

    Fisher's z: ``atanh(r)`` is about normal with sd ``1/sqrt(n − 3)``. NaN for ``n < 4`` (no test possible).
    """
    if n < 4:
        return math.nan
    eps = 1e-12
    zr = math.atanh(min(max(r, -1 + eps), 1 - eps))
    zc = math.atanh(min(max(threshold, -1 + eps), 1 - eps))
    return float(stats.norm.cdf((zr - zc) * math.sqrt(n - 3)))


def screen_raters(records: list[dict], expectations: dict[str, dict[str, list[int]]],
                  rules: ScreeningRules) -> list[Exclusion]:
    """Every rule a rater breaks, one :class:`Exclusion` each (a rater may appear several times).

    ``expectations`` maps a gold / attention clip id to ``{scale: accepted values}``; a clip fails when any of its
    scale answers is outside them, and failures count clips. The consensus rule compares a rater's ratings of main
    clips with the mean of the *other* raters on the same clip (see the module docstring for the test).
    """
    by_rater: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_rater[r["rater_id"]].append(r)
    out: list[Exclusion] = []
    main = [r for r in records if r["kind"] == "main"]
    # per (clip, scale): sum and count over all raters, to form leave-one-out consensus means
    tot: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0])
    for r in main:
        t = tot[(r["item_id"], r["scale"])]
        t[0] += r["value"]
        t[1] += 1
    consensus: list[tuple[str, str, float, int, float]] = []  # (rater, scale, r, n, one-sided p)
    for rater, recs in sorted(by_rater.items()):
        for kind, allowed_fail in (("attention", 0), ("gold", rules.max_gold_failures)):
            if not getattr(rules, kind):
                continue
            failed: dict[str, list[str]] = {}
            for r in recs:
                exp = expectations.get(r["item_id"], {}).get(r["scale"]) if r["kind"] == kind else None
                if exp is not None and r["value"] not in exp:
                    failed.setdefault(r["item_id"], []).append(
                        f"{r['scale']}={r['value']} (expected {'/'.join(map(str, exp))})")
            if len(failed) > allowed_fail:
                what = "; ".join(f"{item} {', '.join(v)}" for item, v in sorted(failed.items()))
                out.append(Exclusion(rater, kind, f"failed {len(failed)} {kind} clip(s): {what}"))
        mrecs = [r for r in recs if r["kind"] == "main"]
        n_items = len({r["item_id"] for r in mrecs})
        if n_items < rules.min_ratings:
            out.append(Exclusion(rater, "min_ratings", f"rated {n_items} clip(s), fewer than {rules.min_ratings}"))
        for sc in sorted({r["scale"] for r in mrecs}):
            vals = np.array([r["value"] for r in mrecs if r["scale"] == sc], dtype=float)
            if (rules.zero_variance and len(vals) >= max(2, rules.zero_variance_min_clips)
                    and np.all(vals == vals[0])):
                out.append(Exclusion(rater, "zero_variance", f"gave {int(vals[0])} to all {len(vals)} clips on {sc}"))
                continue
            if rules.min_consensus_corr is None:
                continue
            xs, ys = [], []
            for r in mrecs:
                if r["scale"] != sc:
                    continue
                s, n = tot[(r["item_id"], sc)]
                if n > 1:
                    xs.append(r["value"])
                    ys.append((s - r["value"]) / (n - 1))
            rho = _pearson(np.array(xs, float), np.array(ys, float))
            if rho is not None:
                consensus.append((rater, sc, rho, len(xs), consensus_pvalue(rho, len(xs), rules.min_consensus_corr)))
    out += _consensus_exclusions(consensus, rules)
    order = {r: i for i, r in enumerate(sorted(by_rater))}
    return sorted(out, key=lambda e: order[e.rater_id])


def _consensus_exclusions(tests: list[tuple[str, str, float, int, float]], rules: ScreeningRules) -> list[Exclusion]:
    c, alpha = rules.min_consensus_corr, rules.consensus_alpha
    out = []
    if alpha is None:  # the point rule: the raw r against the threshold
        for rater, sc, rho, n, _ in tests:
            if rho < c:
                out.append(Exclusion(rater, "consensus", f"correlation with the other raters on {sc} is r={rho:.2f} "
                                                         f"over {n} clips < {c}"))
        return out
    adj = holm([p for *_, p in tests])
    m = sum(not math.isnan(p) for *_, p in tests)
    for (rater, sc, rho, n, p), ph in zip(tests, adj):
        if not math.isnan(ph) and ph < alpha:
            out.append(Exclusion(rater, "consensus", f"correlation with the other raters on {sc} is r={rho:.2f} "
                                                     f"over {n} clips, below {c} (one-sided p={p:.2g}, "
                                                     f"Holm over {m} tests {ph:.2g} < {alpha})"))
    return out
