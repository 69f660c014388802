"""Analysis: Holm (hand-worked), t CI (scipy reference), screening rules, recovery of known true means."""

import csv

import numpy as np
import pytest
from scipy import stats

from demo.analysis import holm, pairwise_tests, screen_raters, t_interval
from demo.cli import main
from demo.service import MosService
from demo.study import ScreeningRules, load_study
from demo.synthetic import write_synthetic_study


def test_holm_hand_worked():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> running max 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []


def test_t_interval_matches_scipy():
    x = np.array([3, 4, 4, 5, 2, 3, 4], float)
    lo, hi = t_interval(x)
    ref = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    assert (lo, hi) == pytest.approx(ref)


def _rec(rater, item, scale, value, kind="main", system="A", prompt="p"):
    return dict(rater_id=rater, item_id=item, scale=scale, value=value, kind=kind, system=system, prompt_id=prompt)


def test_screening_rules_each_listed():
    recs = []
    truth = {"c1": 1, "c2": 2, "c3": 3, "c4": 4, "c5": 5}
    for r in ("good1", "good2", "good3"):
        recs += [_rec(r, c, "mos_r", v) for c, v in truth.items()]
    recs += [_rec("flat", c, "mos_r", 3) for c in truth]  # zero variance
    recs += [_rec("contrarian", c, "mos_r", 6 - v) for c, v in truth.items()]  # r = -1 vs consensus
    recs += [_rec(r, "att", "mos_r", v, kind="attention") for r, v in
             (("good1", 2), ("good2", 2), ("good3", 4), ("flat", 2), ("contrarian", 2))]
    ex = screen_raters(recs, {"att": {"mos_r": [2]}}, ScreeningRules(min_consensus_corr=0.2))
    got = {(e.rater_id, e.rule) for e in ex}
    assert got == {("good3", "attention"), ("flat", "zero_variance"), ("contrarian", "consensus")}
    reason = next(e.reason for e in ex if e.rule == "consensus")
    assert "r=-" in reason
    # switching the rules off excludes nobody
    off = ScreeningRules(attention=False, gold=False, zero_variance=False, min_consensus_corr=None)
    assert screen_raters(recs, {"att": {"mos_r": [2]}}, off) == []


def test_pairwise_welch_matches_scipy():
    recs = [_rec("r", f"a{i}", "mos_r", v, system="A", prompt=f"p{i}") for i, v in enumerate([4, 5, 4, 3, 5])]
    recs += [_rec("r", f"b{i}", "mos_r", v, system="B", prompt=f"p{i}") for i, v in enumerate([2, 3, 2, 3, 1])]
    recs += [_rec("r", f"c{i}", "mos_r", v, system="C", prompt=f"p{i}") for i, v in enumerate([3, 3, 4, 2, 3])]
    rows = pairwise_tests(recs, test="welch")
    raw = [stats.ttest_ind([4, 5, 4, 3, 5], [2, 3, 2, 3, 1], equal_var=False).pvalue,
           stats.ttest_ind([4, 5, 4, 3, 5], [3, 3, 4, 2, 3], equal_var=False).pvalue,
           stats.ttest_ind([2, 3, 2, 3, 1], [3, 3, 4, 2, 3], equal_var=False).pvalue]
    assert [r["p"] for r in rows] == pytest.approx(raw)
    m = 3
    order = np.argsort(raw)
    expected = np.empty(3)
    running = 0
    for rank, i in enumerate(order):
        running = max(running, (m - rank) * raw[i])
        expected[i] = min(1, running)
    assert [r["p_holm"] for r in rows] == pytest.approx(expected)


# Rating distributions over 1..5 with exactly known means.
TRUE = {"system-alpha": ([0.05, 0.10, 0.20, 0.35, 0.30], 3.75), "system-beta": ([0.20, 0.30, 0.30, 0.15, 0.05], 2.55)}


def test_report_recovers_known_means(tmp_path, capsys):
    p = write_synthetic_study(tmp_path, n_prompts=5, clips_per_rater=10, n_training=0)
    svc = MosService(load_study(p), tmp_path / "db.sqlite")
    rng = np.random.default_rng(7)
    given = {}
    for k in range(24):
        s = svc.start(f"r{k:02d}", consent=True)
        while s["phase"] == "rating":
            item = s["item"]["item_id"]
            clip = svc.clips[item]
            svc.played(s["token"], item)
            if clip.kind == "main":
                v = {sc: int(rng.choice(5, p=TRUE[clip.system][0])) + 1 for sc in ("mos_r", "mos_t")}
                for sc, x in v.items():
                    given.setdefault((clip.system, sc), []).append(x)
            else:
                v = {"mos_r": 2, "mos_t": 2}
            s = svc.rate(s["token"], item, v)["state"]
    rules = tmp_path / "rules.yaml"
    rules.write_text("min_consensus_corr: null\n")  # random raters do not agree with each other by design
    out = tmp_path / "rep"
    assert main(["report", "--db", str(tmp_path / "db.sqlite"), "--out", str(out), "--rules", str(rules)]) == 0
    rows = list(csv.DictReader(open(out / "summary.csv")))
    assert len(rows) == 4
    for r in rows:
        true_mean = TRUE[r["system"]][1]
        vals = given[(r["system"], r["scale"])]
        assert int(r["n"]) == len(vals) == 120
        assert float(r["mean"]) == pytest.approx(np.mean(vals))
        assert float(r["std"]) == pytest.approx(np.std(vals, ddof=1))
        assert float(r["ci_t_low"]) < true_mean < float(r["ci_t_high"])
        assert float(r["ci_boot_low"]) < true_mean < float(r["ci_boot_high"])
    pw = list(csv.DictReader(open(out / "pairwise.csv")))
    assert all(float(x["p_holm"]) < 1e-6 for x in pw)  # 3.75 vs 2.55 with 120 ratings each
    long = list(csv.DictReader(open(out / "ratings_long.csv")))
    assert len(long) == 24 * 12 * 2
    assert (out / "mos_r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| mos_t | system-beta | 120 |" in (out / "report.md").read_text()
    # export dumps every raw table, without the secret
    assert main(["export", "--db", str(tmp_path / "db.sqlite"), "--out", str(tmp_path / "exp")]) == 0
    ratings = list(csv.DictReader(open(tmp_path / "exp" / "ratings.csv")))
    assert len(ratings) == 24 * 12 * 2
    assert "secret" not in (tmp_path / "exp" / "meta.csv").read_text()


def test_report_bad_inputs(tmp_path, capsys):
    assert main(["report", "--db", str(tmp_path / "none.sqlite"), "--out", str(tmp_path / "o")]) == 2
    (tmp_path / "junk.sqlite").write_bytes(b"this is not sqlite" * 100)
    assert main(["report", "--db", str(tmp_path / "junk.sqlite"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(e.startswith("mos: error: database") for e in err)
