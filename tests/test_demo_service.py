"""MosService rules: resume, play-before-rate, idempotent ratings, refusals that write nothing."""

import sqlite3
import threading

import pytest

from basekit.errors import UserError
from demo.service import MosService
from demo.study import load_study
from demo.synthetic import write_synthetic_study


def _counts(db):
    con = sqlite3.connect(db)
    try:
        return {t: con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                for t in ("raters", "assignments", "ratings", "play_events")}
    finally:
        con.close()


@pytest.fixture()
def svc(tmp_path):
    p = write_synthetic_study(tmp_path, n_prompts=3, clips_per_rater=3)
    s = MosService(load_study(p), tmp_path / "db.sqlite")
    yield s
    s.store.close()


def _begin(svc, rater="r1"):
    s = svc.start(rater, consent=True)
    assert s["phase"] == "training" and len(s["training"]) == 1
    return svc.finish_training(s["token"])


def test_full_session_and_resume_after_restart(svc, tmp_path):
    s = _begin(svc)
    tok = s["token"]
    assert s["phase"] == "rating" and s["total"] == 5  # 3 main + 1 gold + 1 attention
    seen = []
    for k in range(2):
        item = s["item"]["item_id"]
        seen.append(item)
        svc.played(tok, item, "play")
        svc.played(tok, item, "ended")
        s = svc.rate(tok, item, {"mos_r": 4, "mos_t": 3})["state"]
    current = s["item"]["item_id"]
    # a fresh service on the same database (a server restart) resumes at exactly the same clip
    svc2 = MosService(svc.study, tmp_path / "db.sqlite")
    r = svc2.start("r1")
    assert r["phase"] == "rating" and r["item"]["item_id"] == current and r["position"] == 3
    con = sqlite3.connect(tmp_path / "db.sqlite")
    order = [row[0] for row in con.execute("SELECT item_id FROM assignments WHERE rater_id='r1' ORDER BY position")]
    assert order[:3] == seen + [current]
    views = con.execute("SELECT views FROM page_times WHERE rater_id='r1' AND item_id=?", (current,)).fetchone()[0]
    assert views == 2
    con.close()
    while r["phase"] == "rating":
        it = r["item"]["item_id"]
        svc2.played(r["token"], it)
        r = svc2.rate(r["token"], it, {"mos_r": 2, "mos_t": 2})["state"]
    assert r["phase"] == "done" and r["done"] == 5
    assert _counts(tmp_path / "db.sqlite")["ratings"] == 10


def test_rating_needs_end_of_playback(svc, tmp_path):
    s = _begin(svc)
    item = s["item"]["item_id"]
    svc.played(s["token"], item, "play")  # started, not finished
    before = _counts(tmp_path / "db.sqlite")
    with pytest.raises(UserError, match="has not been played to the end"):
        svc.rate(s["token"], item, {"mos_r": 4, "mos_t": 4})
    assert _counts(tmp_path / "db.sqlite") == before


def test_double_submission_keeps_first(svc, tmp_path):
    s = _begin(svc)
    item = s["item"]["item_id"]
    svc.played(s["token"], item)
    assert svc.rate(s["token"], item, {"mos_r": 5, "mos_t": 1})["status"] == "saved"
    again = svc.rate(s["token"], item, {"mos_r": 1, "mos_t": 5})
    assert again["status"] == "already_rated"
    con = sqlite3.connect(tmp_path / "db.sqlite")
    rows = sorted(con.execute("SELECT scale, value FROM ratings WHERE item_id=?", (item,)).fetchall())
    con.close()
    assert rows == [("mos_r", 5), ("mos_t", 1)]


@pytest.mark.parametrize("ratings,msg", [
    ({"mos_r": 7, "mos_t": 3}, "outside 1-5"),
    ({"mos_r": 0, "mos_t": 3}, "outside 1-5"),
    ({"mos_r": 2.5, "mos_t": 3}, "outside 1-5"),
    ({"mos_r": True, "mos_t": 3}, "outside 1-5"),
    ({"mos_r": "3", "mos_t": 3}, "outside 1-5"),
    ({"mos_r": 3}, "no rating for scale"),
    ({"mos_r": 3, "mos_t": 3, "loudness": 2}, "unknown scale"),
])
def test_bad_ratings_refused_nothing_written(svc, tmp_path, ratings, msg):
    s = _begin(svc)
    item = s["item"]["item_id"]
    svc.played(s["token"], item)
    before = _counts(tmp_path / "db.sqlite")
    with pytest.raises(UserError, match=msg):
        svc.rate(s["token"], item, ratings)
    assert _counts(tmp_path / "db.sqlite") == before


def test_unknown_rater_forged_token_and_foreign_clip(svc, tmp_path):
    s = _begin(svc, "r1")
    other = _begin(svc, "r2")
    before = _counts(tmp_path / "db.sqlite")
    with pytest.raises(UserError, match="not valid"):
        svc.rate("r1.deadbeef", s["item"]["item_id"], {"mos_r": 3, "mos_t": 3})
    with pytest.raises(UserError, match="unknown rater 'ghost'"):
        svc.rate(svc.token("ghost"), s["item"]["item_id"], {"mos_r": 3, "mos_t": 3})
    foreign = next(i for i in svc.clips if i not in
                   {r[0] for r in svc.store.query("SELECT item_id FROM assignments WHERE rater_id='r1'")})
    with pytest.raises(UserError, match="not one of rater 'r1'"):
        svc.played(s["token"], foreign)
    with pytest.raises(UserError, match="not allowed"):
        svc.start("../../etc/passwd", consent=True)
    with pytest.raises(UserError, match="has not agreed"):
        svc.start("r3", consent=False)
    assert _counts(tmp_path / "db.sqlite") == before
    assert other["token"] != s["token"]


def test_passwords_and_allowed_raters(tmp_path):
    p = write_synthetic_study(tmp_path, extra={"rater_password": "pw", "admin_password": "adm",
                                               "allowed_raters": ["alice"]})
    svc = MosService(load_study(p), tmp_path / "db.sqlite")
    with pytest.raises(UserError, match="wrong or missing rater password"):
        svc.start("alice", "nope", consent=True)
    with pytest.raises(UserError, match="unknown rater 'bob'"):
        svc.start("bob", "pw", consent=True)
    assert _counts(tmp_path / "db.sqlite")["raters"] == 0
    svc.start("alice", "pw", consent=True)
    with pytest.raises(UserError, match="wrong admin password"):
        svc.admin_status("x")
    st = svc.admin_status("adm")
    assert st["raters"] == 1 and st["ratings"] == 0 and st["clips"] == 8 and st["clips_below_min"] == 8


def test_concurrent_threads_one_rater_two_tabs(svc, tmp_path):
    """Many threads submit the same clip of the same rater at once: exactly one row per scale survives."""
    s = _begin(svc)
    item = s["item"]["item_id"]
    svc.played(s["token"], item)
    statuses, errors = [], []

    def hit(v):
        try:
            statuses.append(svc.rate(s["token"], item, {"mos_r": v, "mos_t": v})["status"])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=hit, args=(1 + i % 5,)) for i in range(12)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors
    assert statuses.count("saved") == 1 and statuses.count("already_rated") == 11
    assert _counts(tmp_path / "db.sqlite")["ratings"] == 2


def test_new_raters_in_parallel_get_distinct_slots(svc, tmp_path):
    threads = [threading.Thread(target=svc.start, args=(f"p{i}",), kwargs={"consent": True}) for i in range(10)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    idx = [r[0] for r in svc.store.query("SELECT idx FROM raters ORDER BY idx")]
    assert idx == list(range(10))


def test_blinded_payloads(svc):
    s = _begin(svc)
    text = repr(s) + repr(svc.start("r1"))
    for name in ("system-alpha", "system-beta", "p000", "p001", "p002", ".wav", "clips/", "gold", "attention"):
        assert name not in text
    assert svc.clip_wav(s["item"]["item_id"])[:4] == b"RIFF"
    with pytest.raises(UserError):
        svc.clip_wav("../study.yaml")
