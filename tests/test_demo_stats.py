"""Design-respecting MOS statistics (crossed rater x clip intervals, paired comparisons, scaled screening) and the
report's small fixes (sane numbers in messages, unusable --out paths, attention failures counted per clip)."""

import importlib.util
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from basekit.errors import UserError
from demo.analysis import consensus_pvalue, crossed_mean_interval, holm, pairwise_tests, screen_raters
from demo.assign import latin_window
from demo.fmt import short_value
from demo.service import MosService
from demo.study import ScreeningRules, load_study
from demo.synthetic import write_synthetic_study

ROOT = Path(__file__).resolve().parents[1]


def test_short_value_keeps_messages_short():
    assert short_value(1e308) == "1e+308"
    assert short_value(10 ** 400) == "1e+400"
    assert short_value(-(10 ** 20)) == "-1e+20"
    assert short_value(12345) == "12345"
    assert short_value(2.5) == "2.5"
    assert short_value(math.inf) == "inf"
    assert short_value(True) == "True"
    assert len(short_value("x" * 1000)) == 40


def test_huge_rating_is_not_echoed_as_309_digits(tmp_path):
    svc = MosService(load_study(write_synthetic_study(tmp_path, n_prompts=2, clips_per_rater=2)), tmp_path / "d.db")
    try:
        for bad, shown in ((1e308, "1e+308"), (10 ** 400, "1e+400"), (6.0, "6")):
            with pytest.raises(UserError) as ei:
                svc._check_ratings({"mos_r": bad, "mos_t": 3})
            msg = str(ei.value)
            assert shown in msg and "mos_r" in msg and len(msg) < 160 and not re.search(r"\d{16}", msg)
        assert svc._check_ratings({"mos_r": 4.0, "mos_t": 5}) == {"mos_r": 4, "mos_t": 5}
    finally:
        svc.store.close()


# ---- crossed rater x clip interval ---------------------------------------------------------------------------


def _anova_reference(y: np.ndarray, level: float = 0.95):
    """Textbook two-way random-effects ANOVA of a complete R x C table (one rating per cell): the moment
    estimates, Var(mean) = (MS_A + MS_B - MS_E) / (RC) and Satterthwaite's df over the three mean squares."""
    R, C = y.shape
    g = y.mean()
    ms_a = C * ((y.mean(1) - g) ** 2).sum() / (R - 1)
    ms_b = R * ((y.mean(0) - g) ** 2).sum() / (C - 1)
    resid = y - y.mean(1, keepdims=True) - y.mean(0, keepdims=True) + g
    ms_e = (resid ** 2).sum() / ((R - 1) * (C - 1))
    v = (ms_a + ms_b - ms_e) / (R * C)
    df = (ms_a + ms_b - ms_e) ** 2 / (ms_a ** 2 / (R - 1) + ms_b ** 2 / (C - 1) + ms_e ** 2 / ((R - 1) * (C - 1)))
    half = stats.t.ppf(0.5 + level / 2, df) * math.sqrt(v)
    return dict(var_rater=(ms_a - ms_e) / C, var_clip=(ms_b - ms_e) / R, var_resid=ms_e, se=math.sqrt(v), df=df,
                low=g - half, high=g + half)


def test_crossed_interval_equals_two_way_anova_on_a_complete_table():
    rng = np.random.default_rng(3)
    R, C = 7, 9
    y = 3 + rng.normal(0, 0.6, (R, 1)) + rng.normal(0, 0.4, (1, C)) + rng.normal(0, 0.5, (R, C))
    ri, ci = np.nonzero(np.ones((R, C), bool))
    perm = rng.permutation(R * C)  # the order of the ratings does not matter
    got = crossed_mean_interval(y[ri, ci][perm], [f"rater{i}" for i in ri[perm]], [f"clip{j}" for j in ci[perm]])
    ref = _anova_reference(y)
    assert ref["var_rater"] > 0 and ref["var_clip"] > 0  # so no estimate is truncated at zero
    assert got.mean == pytest.approx(y.mean())
    for k, v in ref.items():
        assert getattr(got, k) == pytest.approx(v, rel=1e-9), k
    assert (got.n, got.n_raters, got.n_clips) == (R * C, R, C)


def _pair_u_statistics(v, r, c):
    """U_A, U_B, U_E by explicit loops over pairs of ratings: half the summed squared differences of pairs that
    share the rater (different clips), share the clip (different raters), or any pair."""
    ua = ub = ue = 0.0
    for k in range(len(v)):
        for m in range(len(v)):
            d2 = 0.5 * (v[k] - v[m]) ** 2
            ue += d2
            ua += d2 if r[k] == r[m] else 0.0
            ub += d2 if c[k] == c[m] else 0.0
    return ua, ub, ue


def test_crossed_interval_on_an_unbalanced_design_matches_pairwise_moments():
    rng = np.random.default_rng(11)
    R, C = 6, 8
    mask = rng.random((R, C)) < 0.55
    mask[0, :] = True  # every rater and clip present, counts uneven
    mask[:, 0] = True
    y = 3 + rng.normal(0, 0.7, (R, 1)) + rng.normal(0, 0.5, (1, C)) + rng.normal(0, 0.4, (R, C))
    r, c = np.nonzero(mask)
    v = y[r, c]
    N = v.size
    n_i, m_j = np.bincount(r), np.bincount(c)
    sa2, sb2 = (n_i ** 2).sum(), (m_j ** 2).sum()
    ua, ub, ue = _pair_u_statistics(v, r, c)
    # E[U_A] = (sB + sE)(sum n_i^2 - N), E[U_B] = (sA + sE)(sum m_j^2 - N), E[U_E] = sA(N^2 - sa2) + ...
    A = np.array([[0, sa2 - N, sa2 - N], [sb2 - N, 0, sb2 - N], [N * N - sa2, N * N - sb2, N * N - N]], float)
    sA, sB, sE = np.linalg.solve(A, [ua, ub, ue])
    assert min(sA, sB, sE) > 0
    got = crossed_mean_interval(v, r, c)
    assert (got.var_rater, got.var_clip, got.var_resid) == pytest.approx((sA, sB, sE), rel=1e-9)
    assert got.se ** 2 == pytest.approx(sA * sa2 / N ** 2 + sB * sb2 / N ** 2 + sE / N, rel=1e-9)


def test_one_rating_per_rater_reduces_to_one_way_anova():
    # 6 clips x 4 raters each, every rater rates one clip: the rater effect cannot be told from the noise
    rng = np.random.default_rng(5)
    C, k = 6, 4
    y = 3 + rng.normal(0, 0.5, (C, 1)) + rng.normal(0, 0.8, (C, k))
    clips = np.repeat(np.arange(C), k)
    got = crossed_mean_interval(y.ravel(), np.arange(C * k), clips)
    ms_b = k * ((y.mean(1) - y.mean()) ** 2).sum() / (C - 1)
    ms_w = ((y - y.mean(1, keepdims=True)) ** 2).sum() / (C * (k - 1))
    assert math.isnan(got.var_rater)
    assert got.var_resid == pytest.approx(ms_w) and got.var_clip == pytest.approx((ms_b - ms_w) / k)
    assert got.se == pytest.approx(math.sqrt(ms_b / (C * k)))  # the classic one-way result
    assert got.df == pytest.approx(C - 1)


def test_crossed_interval_refuses_what_it_cannot_estimate():
    one_rater = crossed_mean_interval([3, 4, 5], ["r", "r", "r"], ["a", "b", "c"])
    assert one_rater.mean == 4 and math.isnan(one_rater.low) and one_rater.n_raters == 1
    assert crossed_mean_interval([], [], []).n == 0
    with pytest.raises(ValueError, match="same clip twice"):
        crossed_mean_interval([3, 4, 5, 2], ["r", "r", "s", "s"], ["a", "a", "a", "b"])
    same = crossed_mean_interval([4, 4, 4, 4], ["r", "r", "s", "s"], ["a", "b", "a", "b"])
    assert (same.low, same.high) == (4.0, 4.0)


# ---- pairwise comparisons paired by prompt -------------------------------------------------------------------


def _rec(rater, item, scale, value, kind="main", system="A", prompt="p"):
    return dict(rater_id=rater, item_id=item, scale=scale, value=value, kind=kind, system=system, prompt_id=prompt)


def test_pairwise_paired_by_prompt_matches_scipy_and_holm():
    rng = np.random.default_rng(2)
    means = {"A": 3.8, "B": 3.0, "C": 3.1}
    recs, per = [], {}
    for s, mu in means.items():
        for j in range(6):
            for k in range(rng.integers(2, 5)):  # uneven ratings per clip: per-prompt means, not pooled ratings
                v = int(np.clip(round(mu + rng.normal(0, 0.8)), 1, 5))
                recs.append(_rec(f"r{k}", f"{s}{j}", "mos_r", v, system=s, prompt=f"p{j}"))
                per.setdefault((s, j), []).append(v)
    recs.append(_rec("r0", "C6", "mos_r", 5, system="C", prompt="p6"))  # a prompt only C has: not paired
    rows = pairwise_tests(recs)
    assert [(r["system_a"], r["system_b"], r["n_pairs"]) for r in rows] == [("A", "B", 6), ("A", "C", 6), ("B", "C", 6)]
    raw = []
    for r in rows:
        a = [np.mean(per[(r["system_a"], j)]) for j in range(6)]
        b = [np.mean(per[(r["system_b"], j)]) for j in range(6)]
        ref = stats.ttest_rel(a, b)
        raw.append(ref.pvalue)
        assert r["p"] == pytest.approx(ref.pvalue) and r["statistic"] == pytest.approx(ref.statistic)
        d = np.subtract(a, b)
        lo, hi = stats.t.interval(0.95, 5, loc=d.mean(), scale=stats.sem(d))
        assert (r["mean_diff"], r["diff_low"], r["diff_high"]) == pytest.approx((d.mean(), lo, hi))
    # Holm by hand: sort, multiply by 3, 2, 1, running maximum, cap at 1
    order = np.argsort(raw)
    expect, running = [0.0] * 3, 0.0
    for rank, i in enumerate(order):
        running = max(running, (3 - rank) * raw[i])
        expect[i] = min(1.0, running)
    assert [r["p_holm"] for r in rows] == pytest.approx(expect)
    w = pairwise_tests(recs, test="wilcoxon-prompt")[0]
    ref_w = stats.wilcoxon(np.subtract([np.mean(per[("A", j)]) for j in range(6)],
                                       [np.mean(per[("B", j)]) for j in range(6)]))
    assert w["p"] == pytest.approx(ref_w.pvalue)


def test_pairwise_without_enough_prompts_gives_nan_not_a_number():
    recs = [_rec("r", "a", "mos_r", 4, system="A", prompt="p0"), _rec("r", "b", "mos_r", 2, system="B", prompt="p0")]
    (row,) = pairwise_tests(recs)
    assert row["n_pairs"] == 1 and row["mean_diff"] == 2
    assert math.isnan(row["p"]) and math.isnan(row["p_holm"]) and math.isnan(row["diff_low"])
    assert holm([0.01, math.nan, 0.04]) == pytest.approx([0.02, math.nan, 0.04], nan_ok=True)


# ---- screening that scales with the clips per rater -------------------------------------------------------------


def test_attention_and_gold_failures_count_clips_not_scale_answers():
    recs = [_rec(r, c, "mos_r", 4) for r in ("a", "b") for c in ("m1", "m2")]
    exp = {"att": {"mos_r": [2], "mos_t": [2]}, "g1": {"mos_r": [1, 2], "mos_t": [1, 2]}, "g2": {"mos_t": [1]}}
    recs += [_rec("a", "att", sc, 4, kind="attention") for sc in ("mos_r", "mos_t")]  # one clip, both scales wrong
    recs += [_rec("a", "g1", sc, 5, kind="gold") for sc in ("mos_r", "mos_t")]  # one gold clip, both scales wrong
    recs += [_rec("b", "g1", "mos_r", 5, kind="gold"), _rec("b", "g2", "mos_t", 3, kind="gold")]  # two gold clips
    rules = ScreeningRules(max_gold_failures=1, min_consensus_corr=None)
    ex = {(e.rater_id, e.rule): e.reason for e in screen_raters(recs, exp, rules)}
    assert set(ex) == {("a", "attention"), ("b", "gold")}
    assert ex[("a", "attention")] == ("failed 1 attention clip(s): att mos_r=4 (expected 2), mos_t=4 (expected 2)")
    assert ex[("b", "gold")].startswith("failed 2 gold clip(s): g1 mos_r=5")


def test_consensus_pvalue_is_the_fisher_z_bound_of_scipy():
    rng = np.random.default_rng(4)
    x = rng.normal(size=30)
    y = 0.3 * x + rng.normal(size=30)
    res = stats.pearsonr(x, y)
    p = consensus_pvalue(res.statistic, 30, 0.6)
    assert 0 < p < 0.5
    # the one-sided upper confidence bound at level 1 - p is exactly the threshold
    hi = res.confidence_interval(confidence_level=1 - 2 * p).high
    assert hi == pytest.approx(0.6, abs=1e-9)
    assert math.isnan(consensus_pvalue(0.9, 3, 0.2))


def _simulated_study(rng, n_raters=12, per_rater=6, n_prompts=6, contrarian=None):
    """Honest raters (bias sd 0.5, noise sd 0.7) on 2 systems 1 MOS apart (clip sd 0.3), the app's Latin windows;
    a contrarian rates 6 - (the clip's true value)."""
    clip_fx = np.array([3.0, 4.0])[:, None] + rng.normal(0, 0.3, (2, n_prompts))
    recs = []
    for i in range(n_raters):
        bias = rng.normal(0, 0.5)
        for s, p in latin_window(2, n_prompts, per_rater, i):
            for sc in ("mos_r", "mos_t"):
                v = int(np.clip(np.rint(clip_fx[s, p] + bias + rng.normal(0, 0.7)), 1, 5))
                if i == contrarian:
                    v = 6 - int(np.clip(np.rint(clip_fx[s, p]), 1, 5))
                recs.append(_rec(f"r{i:02d}", f"s{s}p{p}", sc, v, system=f"s{s}", prompt=f"p{p}"))
    return recs


def test_consensus_rule_spares_honest_raters_with_few_clips_and_still_catches_a_contrarian():
    rng = np.random.default_rng(0)
    point_rule = ScreeningRules(consensus_alpha=None)  # the old rule: raw r < 0.2 excludes
    old = new = 0
    for _ in range(40):
        recs = _simulated_study(rng)  # 12 honest raters, 6 clips each (the case)
        old += len({e.rater_id for e in screen_raters(recs, {}, point_rule)})
        new += len({e.rater_id for e in screen_raters(recs, {}, ScreeningRules())})
    assert old >= 40  # the point rule excluded honest raters in most studies (over 1 in 12 on average)
    assert new <= 2  # the test excludes an honest rater in well under 1 study in 20
    for _ in range(5):
        recs = _simulated_study(rng, per_rater=30, n_prompts=15, contrarian=3)
        ex = screen_raters(recs, {}, ScreeningRules())
        assert {(e.rater_id, e.rule) for e in ex} == {("r03", "consensus")}


# ---- coverage on simulated studies (a reduced benchmarks/mos_coverage.py) -------------------------------------


@pytest.fixture(scope="module")
def cov_bench():
    spec = importlib.util.spec_from_file_location("mos_coverage", ROOT / "benchmarks" / "mos_coverage.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["mos_coverage"] = mod  # dataclasses look their module up while the file runs
    try:
        spec.loader.exec_module(mod)
    finally:
        del sys.modules["mos_coverage"]
    return mod


def test_simulated_truth_and_design(cov_bench):
    sc = cov_bench.SCENARIOS[0]
    rng = np.random.default_rng(0)
    z = sc.mu + rng.normal(0, math.sqrt(sc.sd_rater ** 2 + sc.sd_clip ** 2 + sc.sd_resid ** 2), 2_000_000)
    assert cov_bench.true_mean(sc) == pytest.approx(np.clip(np.rint(z), 1, 5).mean(), abs=0.003)  # brute force
    assert cov_bench.true_mean(cov_bench.SCENARIOS[1]) == sc.mu
    mask = cov_bench.design(cov_bench.SCENARIOS[2])
    assert (mask.sum(1) == 10).all() and set(mask.sum(0)) == {5}


def test_crossed_interval_covers_the_true_mos_and_the_t_interval_does_not(cov_bench):
    n = 400
    res = cov_bench.coverage(cov_bench.SCENARIOS[0], n_sims=n, seed=12)  # 20 raters x 40 clips, rounded 1..5
    lo, hi = cov_bench.binomial_band(n, 0.95, q=0.001)  # where a true 95% lands 999 times in 1000
    assert lo <= res["crossed"]["coverage"] <= hi
    assert res["t"]["coverage"] < lo  # the independent t interval under-covers in the same studies
    assert res["t"]["width"] < res["crossed"]["width"]
