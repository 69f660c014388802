"""Comparison pages beside ACR: CMOS / A-B pairs (random sides, blinded) and MUSHRA pages (hidden reference, low
anchor): study keys and their checks, balanced assignment, storage and refusals, the anchor's audio, the export."""

import csv
import io
import sqlite3
from collections import Counter

import numpy as np
import pytest
import soundfile as sf
import yaml

from basekit.errors import UserError
from demo.cli import main
from demo.service import MosService
from demo.store import Store
from demo.study import check_study, load_study
from demo.synthetic import write_synthetic_study

TABLES = ("ratings", "comparisons", "mushra_ratings", "listens", "play_events", "page_assignments")
CMOS = {"pages_per_rater": 2}
MUSHRA = {"reference": "clips/reference", "pages_per_rater": 2}


class Clock:
    def __init__(self):
        self.t = 5000.0

    def __call__(self):
        return self.t


def _snapshot(db):
    con = sqlite3.connect(db)
    try:
        return {t: sorted(map(tuple, con.execute(f"SELECT * FROM {t}").fetchall()), key=repr) for t in TABLES}
    finally:
        con.close()


def _study(tmp_path, systems=("system-alpha", "system-beta"), n_prompts=3, **extra):
    extra.setdefault("access", "open")
    return write_synthetic_study(tmp_path, systems=systems, n_prompts=n_prompts, clips_per_rater=2, n_gold=0,
                                 n_attention=0, n_training=0, reference=True, extra=extra)


def _only_pages(tmp_path, **extra):
    """A study with comparison pages only (no ACR)."""
    return _study(tmp_path, tests=[t for t in ("cmos", "mushra") if t in extra], clips_per_rater=None, **extra)


def _hear(svc, clock, token, clip):
    svc.played(token, clip, "play")
    clock.t += 1.0
    svc.played(token, clip, "ended")


def _sounds(item):
    return [c["item_id"] for c in item["clips"]] + ([item["reference"]["item_id"]] if "reference" in item else [])


@pytest.mark.parametrize("extra,msg", [
    ({"cmos": {"pages_per_rater": 2, "pairs": [["system-alpha", "system-gamma"]]}},
     "unknown system(s) ['system-gamma']"),
    ({"cmos": {"pages_per_rater": 2, "pairs": [["system-alpha", "system-alpha"]]}}, "must name two different systems"),
    ({"cmos": {"pages_per_rater": 2, "pairs": [["system-alpha", "system-beta"], ["system-beta", "system-alpha"]]}},
     "is used twice"),
    ({"cmos": {"pages_per_rater": 4}}, "only 3 pages (1 pairs x 3 prompts)"),
    ({"cmos": {"pages_per_rater": 1, "type": "mos"}}, "`cmos.type` must be cmos"),
    ({"cmos": {"type": "ab"}}, "`cmos.pages_per_rater` is required"),
    ({"mushra": {"reference": "nowhere", "pages_per_rater": 1}}, "`mushra.reference` must be the folder"),
    ({"mushra": {"reference": "clips/reference", "pages_per_rater": 4}}, "only 3 prompts"),
    ({"mushra": dict(MUSHRA, anchors=["lowpass:9000"])}, "not below the Nyquist frequency"),
    ({"mushra": dict(MUSHRA, anchors=["bandpass"])}, "is not an anchor"),
    ({"mushra": dict(MUSHRA, systems=["system-alpha", "nope"])}, "`mushra.systems` must be `all` or a list"),
    ({"mushra": dict(MUSHRA, anchors=[{"name": "system-alpha", "dir": "clips/system-beta"}])},
     "MUSHRA condition name 'system-alpha' is used twice"),
    ({"tests": ["acr", "cmos"]}, "`tests` lists cmos but the study has no `cmos` section"),
    ({"tests": ["acr"], "cmos": CMOS}, "has a `cmos` section but `tests` does not list cmos"),
    ({"tests": ["acr", "abx"]}, "`tests` must be a list of distinct test names"),
    ({"tests": ["cmos"], "cmos": CMOS, "gold": [{"file": "clips/checks/gold-0.wav", "text": "t",
                                                 "expect": {"mos_r": 1}}]}, "`gold` clips are rated on ACR pages"),
    ({"loudness": {"target_lufs": 3}}, "`loudness.target_lufs` must be a number in [-70, -5]"),
    ({"loudness": {"target": -20}}, "unknown key `loudness.target`"),
])
def test_comparison_keys_validated(tmp_path, extra, msg):
    study, problems = check_study(_study(tmp_path, **extra))
    assert study is None and any(msg in x for x in problems), problems


def test_missing_reference_clip(tmp_path):
    p = _study(tmp_path, mushra=MUSHRA)
    (tmp_path / "clips" / "reference" / "p001.wav").unlink()
    _, problems = check_study(p)
    assert any("MUSHRA reference folder has no clip for prompt 'p001'" in x for x in problems), problems


def test_pages_balanced_sides_random_and_stable(tmp_path):
    """With three systems, three pairs x 5 prompts = 15 A/B pages and 5 MUSHRA pages: over 30 raters every page
    is answered equally often (two raters each), each system sits on side A about half the time, a rater's
    layout is the same after a restart, and a MUSHRA layout is a permutation of the page's five sounds."""
    p = _study(tmp_path, systems=("s-a", "s-b", "s-c"), n_prompts=5, cmos={"pages_per_rater": 1},
               mushra={"reference": "clips/reference", "pages_per_rater": 1})
    # A side is a draw seeded by the page id, a MAC under the database's random secret: with a new secret on every
    # run the 30 draws fell outside [8, 22] in about 1 run in 190. A fixed secret makes them the same on every run.
    pinned = Store(tmp_path / "db.sqlite")
    pinned.set_meta("secret", "5e" * 32)
    pinned.close()
    svc = MosService(load_study(p), tmp_path / "db.sqlite")
    assert svc.secret == b"5e" * 32
    for i in range(30):
        svc.start(f"r{i}", consent=True)
    rows = svc.store.query("SELECT pa.rater_id, pa.page_id, pa.layout, p.test, p.clips FROM page_assignments pa "
                           "JOIN pages p ON p.page_id = pa.page_id")
    per_page = Counter(r["page_id"] for r in rows)
    assert len(per_page) == 15 + 5 and set(per_page.values()) == {2, 6}
    assert {per_page[r["page_id"]] for r in rows if r["test"] == "cmos"} == {2}
    first_on_a = 0
    for r in rows:
        layout, canonical = yaml.safe_load(r["layout"]), yaml.safe_load(r["clips"])
        assert sorted(layout) == sorted(canonical)
        if r["test"] == "cmos":
            first_on_a += layout[0] == canonical[0]
        else:
            assert len(layout) == 5  # three systems, the hidden reference, the anchor
    assert 8 <= first_on_a <= 22, first_on_a  # 30 seeded coin flips (17 under this secret); never swapped: 0 or 30
    before = {(r["rater_id"], r["page_id"]): r["layout"] for r in rows}
    svc2 = MosService(load_study(p), tmp_path / "db.sqlite")
    again = {(r["rater_id"], r["page_id"]): r["layout"] for r in svc2.store.query(
        "SELECT rater_id, page_id, layout FROM page_assignments")}
    assert again == before
    for s in (svc, svc2):
        s.store.close()


def test_cmos_page_rules_and_storage(tmp_path):
    clock = Clock()
    p = _only_pages(tmp_path, cmos=CMOS)
    db = tmp_path / "db.sqlite"
    svc = MosService(load_study(p), db, clock=clock)
    s = svc.start("r1", consent=True)
    tok, item = s["token"], s["item"]
    assert item["type"] == "cmos" and [c["label"] for c in item["clips"]] == ["A", "B"]
    assert [c[1] for c in item["choices"]] == [3, 2, 1, 0, -1, -2, -3]
    a, b = _sounds(item)
    before = _snapshot(db)
    with pytest.raises(UserError, match="not every sound on this page"):
        svc.rate(tok, item["item_id"], {"cmos": 2})
    _hear(svc, clock, tok, a)
    mid = _snapshot(db)
    with pytest.raises(UserError, match="not every sound on this page"):
        svc.rate(tok, item["item_id"], {"cmos": 2})
    _hear(svc, clock, tok, b)
    after_listen = _snapshot(db)
    for bad, msg in (({"cmos": 4}, "outside -3-3"), ({"cmos": -4}, "outside -3-3"), ({"cmos": 1.5}, "outside"),
                     ({"cmos": "2"}, "outside"), ({"prefer": "A"}, "takes {'cmos': v}"), ([2], "takes")):
        with pytest.raises(UserError, match=msg):
            svc.rate(tok, item["item_id"], bad)
    assert _snapshot(db) == after_listen and before["comparisons"] == mid["comparisons"] == []
    res = svc.rate(tok, item["item_id"], {"cmos": -2.0})
    assert res["status"] == "saved"
    assert svc.rate(tok, item["item_id"], {"cmos": 3})["status"] == "already_rated"
    row = svc.store.query("SELECT clip_a, clip_b, value, listen_s_a, plays_b FROM comparisons")
    assert [tuple(r) for r in row] == [(a, b, -2, 1.0, 1)]
    # another rater's page is not this rater's to answer
    other = svc.start("r2", consent=True)
    mine = {r[0] for r in svc.store.query("SELECT page_id FROM page_assignments WHERE rater_id='r1'")}
    foreign = next(pid for pid in svc.pages if pid not in mine)
    with pytest.raises(UserError, match="not one of rater 'r1'"):
        svc.rate(tok, foreign, {"cmos": 1})
    assert other["item"]["type"] == "cmos"
    svc.store.close()


def test_ab_preference_page(tmp_path):
    clock = Clock()
    p = _only_pages(tmp_path, cmos=dict(CMOS, type="ab"))
    svc = MosService(load_study(p), tmp_path / "db.sqlite", clock=clock)
    s = svc.start("r1", consent=True)
    item = s["item"]
    assert item["type"] == "ab" and item["question"] == "Which one do you prefer?"
    for c in _sounds(item):
        _hear(svc, clock, s["token"], c)
    with pytest.raises(UserError, match="takes {'prefer': 'A'}"):
        svc.rate(s["token"], item["item_id"], {"prefer": "C"})
    svc.rate(s["token"], item["item_id"], {"prefer": "A"})
    assert svc.store.query("SELECT value FROM comparisons")[0][0] == -1
    svc.store.close()


def test_mushra_page_rules_and_storage(tmp_path):
    clock = Clock()
    p = _only_pages(tmp_path, mushra=MUSHRA)
    db = tmp_path / "db.sqlite"
    svc = MosService(load_study(p), db, clock=clock)
    s = svc.start("r1", consent=True)
    tok, item = s["token"], s["item"]
    assert item["type"] == "mushra" and [c["label"] for c in item["clips"]] == ["1", "2", "3", "4"]
    layout = [c["item_id"] for c in item["clips"]]
    kinds = sorted(svc.clips[c].kind for c in layout)
    assert kinds == ["anchor", "hidden_reference", "main", "main"]
    # the hidden reference has its own id: it cannot be told from the sounds' ids or URLs
    assert item["reference"]["item_id"] not in layout
    scores = {c: v for c, v in zip(layout, (100, 20, 70, 45))}
    for c in layout:
        _hear(svc, clock, tok, c)
    before = _snapshot(db)
    with pytest.raises(UserError, match="not every sound on this page"):  # the reference was not heard
        svc.rate(tok, item["item_id"], scores)
    _hear(svc, clock, tok, item["reference"]["item_id"])
    heard = _snapshot(db)
    assert before["mushra_ratings"] == heard["mushra_ratings"] == []
    for bad, msg in ((dict(scores, **{layout[0]: 101}), "outside 0-100"),
                     ({c: 50 for c in layout[:3]}, "a score 0-100 for each of its sounds"),
                     (dict(scores, extra=3), "a score 0-100 for each of its sounds")):
        with pytest.raises(UserError, match=msg):
            svc.rate(tok, item["item_id"], bad)
    assert _snapshot(db) == heard
    assert svc.rate(tok, item["item_id"], scores)["status"] == "saved"
    stored = {r["clip_id"]: r["value"] for r in svc.store.query("SELECT clip_id, value FROM mushra_ratings")}
    assert stored == scores
    assert svc.rate(tok, item["item_id"], scores)["status"] == "already_rated"
    svc.store.close()


def _spectral_share_above(x, sr, hz):
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / sr)
    return spec[f > hz].sum() / spec.sum()


def test_anchor_is_low_passed_reference_at_common_loudness(tmp_path):
    p = _only_pages(tmp_path, mushra=MUSHRA)
    svc = MosService(load_study(p), tmp_path / "db.sqlite")
    ref = next(c for c in svc.clips.values() if c.kind == "hidden_reference" and c.prompt_id == "p000")
    anchor = next(c for c in svc.clips.values() if c.kind == "anchor" and c.prompt_id == "p000")
    x_ref, sr = sf.read(io.BytesIO(svc.clip_wav(ref.clip_id)))
    x_an, _ = sf.read(io.BytesIO(svc.clip_wav(anchor.clip_id)))
    # the reference's noise reaches 8 kHz; the anchor keeps almost nothing above 4.5 kHz
    assert _spectral_share_above(x_ref, sr, 4500) > 0.01
    assert _spectral_share_above(x_an, sr, 4500) < 0.1 * _spectral_share_above(x_ref, sr, 4500)
    levels = {r["kind"]: r["served_lufs"] for r in svc.store.query(
        "SELECT kind, served_lufs FROM clips WHERE prompt_id = 'p000' AND test = 'mushra'")}
    assert levels["anchor"] == pytest.approx(-23.0, abs=0.05) and levels["hidden_reference"] == pytest.approx(-23.0,
                                                                                                             abs=0.05)
    svc.store.close()


def test_export_long_tables_with_system_names(tmp_path, capsys):
    """Raters always answer "beta is better by 2" (whichever side beta is on) and score MUSHRA sounds by their
    condition; the export's oriented values and conditions must give exactly that back."""
    clock = Clock()
    p = _only_pages(tmp_path, cmos=CMOS, mushra=MUSHRA)
    db = tmp_path / "db.sqlite"
    svc = MosService(load_study(p), db, clock=clock)
    by_condition = {"system-alpha": 40, "system-beta": 60, "reference": 95, "anchor-lp3500": 10}
    answers, sides, raters = 0, set(), 0
    # Sides are a seeded draw from the study seed, rater and page (and page ids are MACs under the database's random secret), so
    # raters join until both sides have been shown: at least three, at most twenty.
    while raters < 3 or len(sides) < 2:
        assert raters < 20, "twenty raters never saw system-beta on both sides"
        raters += 1
        s = svc.start(f"r{raters}", consent=True)
        while s["phase"] == "rating":
            item = s["item"]
            for c in _sounds(item):
                _hear(svc, clock, s["token"], c)
            if item["type"] == "cmos":
                b_system = svc.clips[item["clips"][1]["item_id"]].system
                sides.add(b_system)
                ans = {"cmos": 2 if b_system == "system-beta" else -2}
            else:
                ans = {c["item_id"]: by_condition[svc.clips[c["item_id"]].system] for c in item["clips"]}
            answers += 1
            s = svc.rate(s["token"], item["item_id"], ans)["state"]
    svc.store.close()
    out = tmp_path / "export"
    assert main(["export", "--db", str(db), "--out", str(out)]) == 0
    with open(out / "comparisons_long.csv") as f:
        cm = list(csv.DictReader(f))
    with open(out / "mushra_long.csv") as f:
        mu = list(csv.DictReader(f))
    assert len(cm) == 2 * raters and len(mu) == 2 * raters * 4 and answers == 4 * raters
    assert {(r["first"], r["second"], r["value_second_vs_first"]) for r in cm} == {("system-alpha", "system-beta", "2")}
    assert {r["system_a"] for r in cm} == {"system-alpha", "system-beta"}  # both sides were used
    assert all(int(r["value"]) == (2 if r["system_b"] == "system-beta" else -2) for r in cm)
    assert {(r["condition"], int(r["value"])) for r in mu} == set(by_condition.items())
    assert all(float(r["listen_s"]) == 1.0 and r["plays"] == "1" for r in mu)
    for t in ("comparisons", "mushra_ratings", "listens", "pages", "page_assignments", "clips"):
        assert (out / f"{t}.csv").is_file()
    with open(out / "clips.csv") as f:
        clips = list(csv.DictReader(f))
    assert all(r["gain_db"] != "" and r["served_lufs"] != "" for r in clips)
