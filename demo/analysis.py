"""Statistics of a listening study: rater screening, per-system means with CIs, pairwise tests, Holm correction.

Pure functions over plain records (one dict per rating: ``rater_id, item_id, kind, system, prompt_id, scale,
value``), so they are easy to test against hand-worked numbers. :mod:`demo.report` reads the database and
writes the files.

- t-based 95% CI: ``mean ± t(0.975, n-1) · s / sqrt(n)`` over all ratings of a system (ratings treated as
  independent, the usual MOS report).
- Bootstrap 95% CI over raters *and* clips: each replicate draws raters and prompts with replacement
  (a crossed, two-way bootstrap); a rating's weight is (times its rater was drawn) × (times its prompt was
  drawn). It is wider than the t interval when raters or prompts differ, which is the honest answer.
- Pairwise tests per scale: Mann-Whitney U on the ratings (ordinal scale; default), Welch's t, or a Wilcoxon
  signed-rank test on per-prompt means (paired by prompt), with Holm's step-down correction across the pairs.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from scipy import stats

from demo.study import ScreeningRules

TESTS = ("mannwhitney", "welch", "wilcoxon-prompt")


@dataclass(frozen=True)
class Exclusion:
    rater_id: str
    rule: str
    reason: str


def holm(pvalues: list[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (same order as the input).

    Sort ascending; the i-th smallest (0-based) becomes ``(m - i) · p``; then a running maximum keeps the
    adjusted values monotone, and values are capped at 1.
    """
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adj = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, (m - rank) * pvalues[i])
        adj[i] = min(1.0, running)
    return adj


def _pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    if len(x) < 3 or np.std(x) == 0 or np.std(y) == 0:
        return None
    return float(np.corrcoef(x, y)[0, 1])


def screen_raters(records: list[dict], expectations: dict[str, dict[str, list[int]]],
                  rules: ScreeningRules) -> list[Exclusion]:
    """Every rule a rater breaks, one :class:`Exclusion` each (a rater may appear several times).

    ``expectations`` maps a gold / attention clip id to ``{scale: accepted values}``. The consensus rule
    compares a rater's ratings of main clips with the mean of the *other* raters on the same clip.
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
    for rater, recs in sorted(by_rater.items()):
        for kind, rule, allowed_fail in (("attention", "attention", 0), ("gold", "gold", rules.max_gold_failures)):
            if not getattr(rules, rule):
                continue
            fails = []
            for r in recs:
                exp = expectations.get(r["item_id"], {}).get(r["scale"]) if r["kind"] == kind else None
                if exp is not None and r["value"] not in exp:
                    fails.append(f"{r['item_id']} {r['scale']}={r['value']} (expected {'/'.join(map(str, exp))})")
            if len(fails) > allowed_fail:
                out.append(Exclusion(rater, rule, f"failed {len(fails)} {kind} check(s): " + "; ".join(fails)))
        mrecs = [r for r in recs if r["kind"] == "main"]
        n_items = len({r["item_id"] for r in mrecs})
        if n_items < rules.min_ratings:
            out.append(Exclusion(rater, "min_ratings", f"rated {n_items} clip(s), fewer than {rules.min_ratings}"))
        scales = sorted({r["scale"] for r in mrecs})
        for sc in scales:
            vals = np.array([r["value"] for r in mrecs if r["scale"] == sc], dtype=float)
            if rules.zero_variance and len(vals) >= 2 and np.all(vals == vals[0]):
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
            if rho is not None and rho < rules.min_consensus_corr:
                out.append(Exclusion(rater, "consensus", f"correlation with the other raters on {sc} is "
                                                         f"r={rho:.2f} < {rules.min_consensus_corr}"))
    return out


def t_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    n = len(values)
    if n < 2:
        return (math.nan, math.nan)
    m = float(np.mean(values))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * np.std(values, ddof=1) / math.sqrt(n))
    return (m - half, m + half)


def bootstrap_means(records: list[dict], systems: list[str], n_boot: int = 2000, seed: int = 0,
                    level: float = 0.95) -> dict[str, tuple[float, float]]:
    """Crossed bootstrap over raters and prompts of each system's mean (records of one scale, main clips).

    Returns ``{system: (low, high)}`` percentile intervals. Replicates in which a system gets no weight are
    skipped for that system (they carry no estimate).
    """
    raters = sorted({r["rater_id"] for r in records})
    prompts = sorted({r["prompt_id"] for r in records})
    if not records:
        return {s: (math.nan, math.nan) for s in systems}
    ri = {r: i for i, r in enumerate(raters)}
    pi = {p: i for i, p in enumerate(prompts)}
    rng = np.random.default_rng(seed)
    # [B, n_raters] and [B, n_prompts]: how often each rater / prompt is drawn in each replicate
    rw = rng.multinomial(len(raters), np.full(len(raters), 1 / len(raters)), size=n_boot).astype(float)
    pw = rng.multinomial(len(prompts), np.full(len(prompts), 1 / len(prompts)), size=n_boot).astype(float)
    out = {}
    for s in systems:
        recs = [r for r in records if r["system"] == s]
        if not recs:
            out[s] = (math.nan, math.nan)
            continue
        x = np.array([r["value"] for r in recs], float)
        w = rw[:, [ri[r["rater_id"]] for r in recs]] * pw[:, [pi[r["prompt_id"]] for r in recs]]  # [B, n]
        tw = w.sum(axis=1)
        ok = tw > 0
        means = (w[ok] @ x) / tw[ok]
        a = (1 - level) / 2
        out[s] = (float(np.quantile(means, a)), float(np.quantile(means, 1 - a)))
    return out


def system_summary(records: list[dict], n_boot: int = 2000, seed: int = 0) -> list[dict]:
    """Per scale × system: n, mean, std, t CI and bootstrap CI (main clips of the kept raters)."""
    rows = []
    for sc in sorted({r["scale"] for r in records}):
        recs = [r for r in records if r["scale"] == sc]
        systems = sorted({r["system"] for r in recs})
        boot = bootstrap_means(recs, systems, n_boot=n_boot, seed=seed)
        for s in systems:
            v = np.array([r["value"] for r in recs if r["system"] == s], float)
            lo, hi = t_interval(v)
            rows.append({"scale": sc, "system": s, "n": len(v), "n_raters": len({r["rater_id"] for r in recs
                                                                                 if r["system"] == s}),
                         "mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else math.nan,
                         "ci_t_low": lo, "ci_t_high": hi, "ci_boot_low": boot[s][0], "ci_boot_high": boot[s][1]})
    return rows


def pairwise_tests(records: list[dict], test: str = "mannwhitney") -> list[dict]:
    """Every system pair per scale: statistic, p-value and the Holm-adjusted p-value (within the scale)."""
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
            x, y = vals[a], vals[b]
            n_pairs = None
            if test == "mannwhitney":
                res = stats.mannwhitneyu(x, y, alternative="two-sided")
            elif test == "welch":
                res = stats.ttest_ind(x, y, equal_var=False)
            else:
                common = sorted(set(per_prompt[a]) & set(per_prompt[b]))
                n_pairs = len(common)
                d = np.array([np.mean(per_prompt[a][p]) - np.mean(per_prompt[b][p]) for p in common])
                res = stats.wilcoxon(d) if n_pairs >= 1 and np.any(d != 0) else None
            stat = float(res.statistic) if res is not None else math.nan
            p = float(res.pvalue) if res is not None else 1.0
            block.append({"scale": sc, "system_a": a, "system_b": b, "test": test, "mean_diff": float(x.mean() - y.mean()),
                          "statistic": stat, "p": p, "n_a": len(x), "n_b": len(y), "n_pairs": n_pairs})
        for row, adj in zip(block, holm([r["p"] for r in block])):
            row["p_holm"] = adj
        rows.extend(block)
    return rows
