"""Analysis and `mos report`: Holm (hand-worked), t CI (scipy reference), screening rules, recovery of known true
means from a study database, unusable inputs and outputs as one line and exit 2."""

import csv
import json
import os

import numpy as np
import pytest
from scipy import stats

from demo.analysis import holm, pairwise_tests, screen_raters, t_interval
from demo.cli import main
from demo.store import Store
from demo.study import ScreeningRules


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
    ex = screen_raters(recs, {"att": {"mos_r": [2]}}, ScreeningRules(min_consensus_corr=0.2, zero_variance_min_clips=5))
    got = {(e.rater_id, e.rule) for e in ex}
    assert got == {("good3", "attention"), ("flat", "zero_variance"), ("contrarian", "consensus")}
    reason = next(e.reason for e in ex if e.rule == "consensus")
    assert "r=-1.00 over 5 clips" in reason
    # by default a constant rater is excluded only from 8 clips on: 5 equal ratings are not evidence enough
    assert ("flat", "zero_variance") not in {(e.rater_id, e.rule) for e in
                                             screen_raters(recs, {"att": {"mos_r": [2]}}, ScreeningRules())}
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


def write_study_db(path, clips: dict, ratings: list, meta: dict | None = None):
    """A study database as `mos serve` leaves it, written directly (the report only reads these columns).

    ``clips``: ``{clip_id: (kind, system, prompt_id, expect or None)}``; ``ratings``: ``(rater, clip_id, scale, value)``.
    """
    store = Store(path)
    try:
        with store.transaction() as con:
            for k, v in (meta or {}).items():
                con.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (k, v))
            for cid, (kind, system, prompt, expect) in clips.items():
                con.execute("INSERT INTO clips (clip_id, kind, system, prompt_id, text, path, expect)"
                            " VALUES (?, ?, ?, ?, 'text', 'x.wav', ?)",
                            (cid, kind, system, prompt, json.dumps(expect) if expect else None))
            for i, rater in enumerate(dict.fromkeys(r[0] for r in ratings)):
                con.execute("INSERT INTO raters (rater_id, idx, created_at) VALUES (?, ?, 0)", (rater, i))
            con.executemany("INSERT INTO ratings (rater_id, item_id, scale, value, created_at) VALUES (?, ?, ?, ?, 0)",
                            ratings)
    finally:
        store.close()


# Rating distributions over 1..5 with exactly known means.
TRUE = {"system-alpha": ([0.05, 0.10, 0.20, 0.35, 0.30], 3.75), "system-beta": ([0.20, 0.30, 0.30, 0.15, 0.05], 2.55)}


def test_report_recovers_known_means(tmp_path, capsys):
    clips = {f"{s}-p{j}": ("main", s, f"p{j}", None) for s in TRUE for j in range(5)}
    clips["attn"] = ("attention", None, None, {"mos_r": [2], "mos_t": [2]})
    rng = np.random.default_rng(7)
    given, ratings = {}, []
    for k in range(24):
        for cid, (kind, system, prompt, _) in clips.items():
            for sc in ("mos_r", "mos_t"):
                v = int(rng.choice(5, p=TRUE[system][0])) + 1 if kind == "main" else 2
                ratings.append((f"r{k:02d}", cid, sc, v))
                if kind == "main":
                    given.setdefault((system, sc), {}).setdefault(prompt, []).append(v)
    db = tmp_path / "db.sqlite"
    write_study_db(db, clips, ratings, meta={"secret": "s3cr3t"})
    rules = tmp_path / "rules.yaml"
    rules.write_text("min_consensus_corr: null\n")  # random raters do not agree with each other by design
    out = tmp_path / "rep"
    assert main(["report", "--db", str(db), "--out", str(out), "--rules", str(rules)]) == 0
    printed = capsys.readouterr().out
    assert "mos_r    system-alpha" in printed and "(raters x clips)" in printed
    rows = list(csv.DictReader(open(out / "summary.csv")))
    assert len(rows) == 4
    for r in rows:
        true_mean = TRUE[r["system"]][1]
        vals = [v for vs in given[(r["system"], r["scale"])].values() for v in vs]
        assert int(r["n"]) == len(vals) == 120 and int(r["n_raters"]) == 24 and int(r["n_clips"]) == 5
        assert float(r["mean"]) == pytest.approx(np.mean(vals))
        assert float(r["std"]) == pytest.approx(np.std(vals, ddof=1))
        assert float(r["ci_t_low"]) < true_mean < float(r["ci_t_high"])
        assert float(r["ci_low"]) < true_mean < float(r["ci_high"])
        # with only 5 clips the crossed interval is wider than the one that counts 120 independent ratings
        assert float(r["ci_high"]) - float(r["ci_low"]) > float(r["ci_t_high"]) - float(r["ci_t_low"])
    pw = list(csv.DictReader(open(out / "pairwise.csv")))
    assert [(x["scale"], x["system_a"], x["system_b"], x["test"]) for x in pw] == [
        ("mos_r", "system-alpha", "system-beta", "paired-t"), ("mos_t", "system-alpha", "system-beta", "paired-t")]
    for x in pw:
        a, b = given[("system-alpha", x["scale"])], given[("system-beta", x["scale"])]
        ma, mb = [np.mean(a[f"p{j}"]) for j in range(5)], [np.mean(b[f"p{j}"]) for j in range(5)]
        ref = stats.ttest_rel(ma, mb)
        assert float(x["p"]) == pytest.approx(ref.pvalue) and float(x["statistic"]) == pytest.approx(ref.statistic)
        assert float(x["p_holm"]) == pytest.approx(ref.pvalue)  # one pair per scale: Holm changes nothing
        assert float(x["mean_diff"]) == pytest.approx(np.mean(ma) - np.mean(mb))
        assert int(x["n_pairs"]) == 5 and float(x["diff_low"]) > 0  # 3.75 vs 2.55
    long = list(csv.DictReader(open(out / "ratings_long.csv")))
    assert len(long) == 24 * 11 * 2
    assert (out / "mos_r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| mos_t | system-beta | 120 | 24 | 5 |" in (out / "report.md").read_text()
    # export dumps every raw table, without the secret
    assert main(["export", "--db", str(db), "--out", str(tmp_path / "exp")]) == 0
    ratings_csv = list(csv.DictReader(open(tmp_path / "exp" / "ratings.csv")))
    assert len(ratings_csv) == 24 * 11 * 2
    assert "s3cr3t" not in (tmp_path / "exp" / "meta.csv").read_text()


def test_report_bad_inputs(tmp_path, capsys):
    assert main(["report", "--db", str(tmp_path / "none.sqlite"), "--out", str(tmp_path / "o")]) == 2
    (tmp_path / "junk.sqlite").write_bytes(b"this is not sqlite" * 100)
    assert main(["report", "--db", str(tmp_path / "junk.sqlite"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(e.startswith("mos: error: database") for e in err)


def _small_db(tmp_path):
    clips = {f"{s}{j}": ("main", s, f"p{j}", None) for s in "AB" for j in range(3)}
    ratings = [(f"r{k}", c, sc, 1 + (k + j) % 5) for k in range(4) for j, c in enumerate(clips) for sc in ("mos_r",)]
    db = tmp_path / "small.sqlite"
    write_study_db(db, clips, ratings)
    return db


@pytest.mark.parametrize("cmd", ["report", "export"])
def test_unusable_out_path_is_one_line_and_exit_2(tmp_path, capsys, cmd):
    db = _small_db(tmp_path)
    a_file = tmp_path / "taken.txt"
    a_file.write_text("x")
    for out in (a_file, a_file / "sub", "/proc/version/report"):
        assert main([cmd, "--db", str(db), "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"mos: error: --out {out} "), err
    assert a_file.read_text() == "x"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_out_folder_is_one_line_and_exit_2(tmp_path, capsys):
    db = _small_db(tmp_path)
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    try:
        assert main(["report", "--db", str(db), "--out", str(out)]) == 2
    finally:
        out.chmod(0o700)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"mos: error: cannot write {out}")


def test_rules_file_problems_are_one_line_and_exit_2(tmp_path, capsys):
    db = _small_db(tmp_path)
    cases = {
        "latin1.yaml": "min_consensus_corr: 0.3  # café\n".encode("latin-1"),  # not UTF-8
        "bad.yaml": b"min_consensus_corr: [0.3\n",  # not YAML
        "unknown.yaml": b"min_corr: 0.3\n",  # unknown key
        "alpha.yaml": b"consensus_alpha: 1.5\n",  # out of range
        "clips.yaml": b"zero_variance_min_clips: -1\n",
    }
    errors = {}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        assert main(["report", "--db", str(db), "--out", str(tmp_path / "o"), "--rules", str(tmp_path / name)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"mos: error: --rules file {tmp_path / name}"), err
        errors[name] = err[0]
    assert "not UTF-8" in errors["latin1.yaml"] and "min_corr" in errors["unknown.yaml"]
    assert not (tmp_path / "o").exists()  # nothing written before the rules were read
    # a study-like file with a `screening:` section works too, and the report records the rules it used
    (tmp_path / "ok.yaml").write_bytes(b"screening: {consensus_alpha: null, min_consensus_corr: null}\n")
    assert main(["report", "--db", str(db), "--out", str(tmp_path / "o"), "--rules", str(tmp_path / "ok.yaml")]) == 0
    assert '"min_consensus_corr": null, "consensus_alpha": null' in (tmp_path / "o" / "report.md").read_text()


def test_a_failed_write_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    import errno

    import demo.report

    def full_disk(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(demo.report, "atomic_write_bytes", full_disk)
    db = _small_db(tmp_path)
    assert main(["report", "--db", str(db), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"mos: error: cannot write {tmp_path / 'o' / 'ratings_long.csv'} (No space left on device); "
                   "pass an --out folder you can write to"]
