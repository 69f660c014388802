"""MosService rules: resume, server-timed listening, idempotent ratings, tokens, refusals that write nothing,
loudness, and the migration of a first-schema database."""

import sqlite3
import threading

import numpy as np
import pytest

from basekit.errors import UserError
from demo.service import BAD_TOKEN, MosService
from demo.study import load_study
from demo.synthetic import write_synthetic_study

TABLES = ("raters", "assignments", "ratings", "play_events", "listens", "page_times", "comparisons",
          "mushra_ratings")
SECONDS = 0.25  # the synthetic clips' length


class Clock:
    """A settable clock: the listening rule is timed with it, so no test sleeps."""

    def __init__(self, t: float = 1_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def _snapshot(db):
    """Every row of every table a rater can write (not just counts): 'nothing written' means equal snapshots."""
    con = sqlite3.connect(db)
    try:
        return {t: sorted(map(tuple, con.execute(f"SELECT * FROM {t}").fetchall()), key=repr) for t in TABLES}
    finally:
        con.close()


def _counts(db):
    return {t: len(rows) for t, rows in _snapshot(db).items()}


@pytest.fixture()
def clock():
    return Clock()


@pytest.fixture()
def svc(tmp_path, clock):
    p = write_synthetic_study(tmp_path, n_prompts=3, clips_per_rater=3)
    s = MosService(load_study(p), tmp_path / "db.sqlite", clock=clock)
    yield s
    s.store.close()


def _begin(svc, rater="r1"):
    s = svc.start(rater, consent=True)
    assert s["phase"] == "training" and len(s["training"]) == 1
    return svc.finish_training(s["token"])


def _listen(svc, clock, token, item, seconds=SECONDS):
    svc.played(token, item, "play")
    clock.t += seconds
    return svc.played(token, item, "ended")


def test_full_session_and_resume_after_restart(svc, tmp_path, clock):
    s = _begin(svc)
    tok = s["token"]
    assert s["phase"] == "rating" and s["total"] == 5  # 3 main + 1 gold + 1 attention
    seen = []
    for k in range(2):
        item = s["item"]["item_id"]
        seen.append(item)
        _listen(svc, clock, tok, item)
        s = svc.rate(tok, item, {"mos_r": 4, "mos_t": 3})["state"]
    current = s["item"]["item_id"]
    # a fresh service on the same database (a server restart) resumes at exactly the same clip, same token
    svc2 = MosService(svc.study, tmp_path / "db.sqlite", clock=clock)
    r = svc2.start("r1")
    assert r["phase"] == "rating" and r["item"]["item_id"] == current and r["position"] == 3
    assert r["token"] == tok
    con = sqlite3.connect(tmp_path / "db.sqlite")
    order = [row[0] for row in con.execute("SELECT item_id FROM assignments WHERE rater_id='r1' ORDER BY position")]
    assert order[:3] == seen + [current]
    views = con.execute("SELECT views FROM page_times WHERE rater_id='r1' AND item_id=?", (current,)).fetchone()[0]
    assert views == 2
    con.close()
    while r["phase"] == "rating":
        it = r["item"]["item_id"]
        _listen(svc2, clock, r["token"], it)
        r = svc2.rate(r["token"], it, {"mos_r": 2, "mos_t": 2})["state"]
    assert r["phase"] == "done" and r["done"] == 5 and "completion" not in r
    assert _counts(tmp_path / "db.sqlite")["ratings"] == 10


def _rate_refused(svc, db, token, item, match):
    before = _snapshot(db)
    with pytest.raises(UserError, match=match):
        svc.rate(token, item, {"mos_r": 4, "mos_t": 4})
    assert _snapshot(db) == before


def test_ended_without_play_refused_nothing_written(svc, tmp_path, clock):
    s = _begin(svc)
    item, db = s["item"]["item_id"], tmp_path / "db.sqlite"
    before = _snapshot(db)
    clock.t += 60
    with pytest.raises(UserError, match="without its start"):
        svc.played(s["token"], item, "ended")
    assert _snapshot(db) == before
    _rate_refused(svc, db, s["token"], item, "has not been played to the end")
    assert svc.state(s["token"])["played"] is False


@pytest.mark.parametrize("elapsed", [0.0, 0.5 * SECONDS, 0.89 * SECONDS])
def test_ended_too_soon_refused_nothing_written(svc, tmp_path, clock, elapsed):
    s = _begin(svc)
    item, db = s["item"]["item_id"], tmp_path / "db.sqlite"
    svc.played(s["token"], item, "play")
    before = _snapshot(db)
    clock.t += elapsed
    with pytest.raises(UserError, match="listen to the whole clip"):
        svc.played(s["token"], item, "ended")
    assert _snapshot(db) == before
    _rate_refused(svc, db, s["token"], item, "has not been played to the end")
    # the listen stays open: once the clip's time has passed, the end counts (a replay from the page)
    clock.t += SECONDS - elapsed
    assert svc.played(s["token"], item, "ended")["played"] is True


def test_seek_to_the_end_is_counted_and_does_not_unlock(svc, tmp_path, clock):
    """The page's `a.currentTime = a.duration - 0.01; a.play()`: a play, a (refused, reported) seek and an
    `ended` a moment later."""
    s = _begin(svc)
    item, db = s["item"]["item_id"], tmp_path / "db.sqlite"
    svc.played(s["token"], item, "play")
    svc.played(s["token"], item, "seek")
    clock.t += 0.02
    with pytest.raises(UserError, match="skipping ahead is not"):
        svc.played(s["token"], item, "ended")
    _rate_refused(svc, db, s["token"], item, "has not been played to the end")
    row = svc.store.query("SELECT plays, completed, seeks FROM listens WHERE rater_id='r1' AND clip_id=?", (item,))
    assert tuple(row[0]) == (1, 0, 1)


def test_pauses_allowed_listening_time_and_replays_stored(svc, tmp_path, clock):
    s = _begin(svc)
    tok, item = s["token"], s["item"]["item_id"]
    svc.played(tok, item, "play")
    clock.t += 0.1  # pause for 5 s, then resume: the listen keeps its first start
    clock.t += 5.0
    svc.played(tok, item, "play")
    clock.t += 0.15
    assert svc.played(tok, item, "ended")["played"] is True
    _listen(svc, clock, tok, item, 0.3)  # a replay
    svc.rate(tok, item, {"mos_r": 5, "mos_t": 4})
    rows = svc.store.query("SELECT listen_s, plays FROM ratings WHERE rater_id='r1' AND item_id=?", (item,))
    assert len(rows) == 2
    for r in rows:
        assert r["plays"] == 3 and r["listen_s"] == pytest.approx(0.1 + 5.0 + 0.15 + 0.3)
    lst = svc.store.query("SELECT completed FROM listens WHERE rater_id='r1' AND clip_id=?", (item,))[0]
    assert lst["completed"] == 2


def test_rating_without_token_or_with_another_raters_token(svc, tmp_path, clock):
    s1 = _begin(svc, "r1")
    s2 = _begin(svc, "r2")
    db = tmp_path / "db.sqlite"
    item1 = s1["item"]["item_id"]
    _listen(svc, clock, s1["token"], item1)
    mac2 = s2["token"].rsplit(".", 1)[1]
    r2_items = {r[0] for r in svc.store.query("SELECT item_id FROM assignments WHERE rater_id='r2'")}
    foreign = next(i for i, c in svc.clips.items() if c.test == "acr" and i not in r2_items)
    for bad in (None, "", "r1", "r1.", f"r1.{mac2}", "r1." + "0" * 32, "ghost." + "0" * 32, f"ghost.{mac2}",
                s1["token"] + "x", "../etc." + "0" * 32):
        before = _snapshot(db)
        with pytest.raises(UserError) as ei:
            svc.rate(bad, item1, {"mos_r": 4, "mos_t": 4})
        # one message for every bad token: it tells nothing about which ids exist
        assert str(ei.value) == BAD_TOKEN
        with pytest.raises(UserError, match="not valid"):
            svc.played(bad, item1, "play")
        assert _snapshot(db) == before
    # r2's own token on a clip that is not r2's
    _rate_refused(svc, db, s2["token"], foreign, "not one of rater 'r2'")
    with pytest.raises(UserError, match="not one of rater 'r2'"):
        svc.played(s2["token"], foreign, "play")
    # and r1's rating still goes through with r1's token
    assert svc.rate(s1["token"], item1, {"mos_r": 4, "mos_t": 4})["status"] == "saved"


def test_double_submission_keeps_first(svc, tmp_path, clock):
    s = _begin(svc)
    item = s["item"]["item_id"]
    _listen(svc, clock, s["token"], item)
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
    ({"mos_r": 1e308, "mos_t": 3}, r"1e\+308 is outside"),
    ({"mos_r": 3}, "no rating for scale"),
    ({"mos_r": 3, "mos_t": 3, "loudness": 2}, "unknown scale"),
    ([3, 3], "must map each scale"),
])
def test_bad_ratings_refused_nothing_written(svc, tmp_path, clock, ratings, msg):
    s = _begin(svc)
    item = s["item"]["item_id"]
    _listen(svc, clock, s["token"], item)
    before = _snapshot(tmp_path / "db.sqlite")
    with pytest.raises(UserError, match=msg):
        svc.rate(s["token"], item, ratings)
    assert _snapshot(tmp_path / "db.sqlite") == before


def test_foreign_clip_bad_ids_and_consent(svc, tmp_path, clock):
    s = _begin(svc, "r1")
    before = _snapshot(tmp_path / "db.sqlite")
    foreign = next(i for i in svc.clips if i not in
                   {r[0] for r in svc.store.query("SELECT item_id FROM assignments WHERE rater_id='r1'")})
    with pytest.raises(UserError, match="not one of rater 'r1'"):
        svc.played(s["token"], foreign)
    with pytest.raises(UserError, match="not one of rater 'r1'"):
        svc.played(s["token"], "x" * 10_000, "play")
    with pytest.raises(UserError, match="event 'pause' is unknown"):
        svc.played(s["token"], s["item"]["item_id"], "pause")
    with pytest.raises(UserError, match="not allowed"):
        svc.start("../../etc/passwd", consent=True)
    with pytest.raises(UserError, match="has not agreed"):
        svc.start("r3", consent=False)
    assert _snapshot(tmp_path / "db.sqlite") == before


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


def test_concurrent_threads_one_rater_two_tabs(svc, tmp_path, clock):
    """Many threads submit the same clip of the same rater at once: exactly one row per scale survives."""
    s = _begin(svc)
    item = s["item"]["item_id"]
    _listen(svc, clock, s["token"], item)
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


def test_blinded_payloads(svc, clock):
    s = _begin(svc)
    text = repr(s) + repr(svc.start("r1")) + repr(svc.played(s["token"], s["item"]["item_id"], "play"))
    for name in ("system-alpha", "system-beta", "p000", "p001", "p002", ".wav", "clips/", "gold", "attention"):
        assert name not in text
    assert svc.clip_wav(s["item"]["item_id"])[:4] == b"RIFF"
    with pytest.raises(UserError):
        svc.clip_wav("../study.yaml")


def _write(path, x, sr=16000):
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x.astype(np.float32), sr, subtype="FLOAT")


def _bs1770(x, sr):
    """BS.1770 integrated loudness written out from the standard (48 kHz K-weighting coefficients of Table 1/2,
    400 ms blocks, 75 % overlap, -70 LUFS absolute and -10 LU relative gates), independent of basekit."""
    from scipy import signal as sps

    assert sr == 48000
    b1, a1 = [1.53512485958697, -2.69169618940638, 1.19839281085285], [1.0, -1.69065929318241, 0.73248077421585]
    b2, a2 = [1.0, -2.0, 1.0], [1.0, -1.99004745483398, 0.99007225036621]
    y = sps.lfilter(b2, a2, sps.lfilter(b1, a1, x))
    blk, hop = 19200, 4800
    z = np.array([np.mean(y[i:i + blk] ** 2) for i in range(0, len(y) - blk + 1, hop)])
    lk = -0.691 + 10 * np.log10(z)
    z1 = z[lk > -70]
    rel = -0.691 + 10 * np.log10(z1.mean()) - 10
    return -0.691 + 10 * np.log10(z[(lk > -70) & (lk > rel)].mean())


def test_clips_served_at_a_common_loudness_peak_limited(tmp_path):
    """Clips at very different levels come out at the target, or as close as the -1 dBFS ceiling (a click train)
    or the +20 dB cap on upward gain (a whisper) allows; gains and served loudness are in the clips table."""
    import io

    import soundfile as sf

    sr, n = 48000, 48000 * 2
    t = np.arange(n) / sr
    quiet = 0.02 * np.sin(2 * np.pi * 440 * t)          # about -37 dBFS RMS
    whisper = 0.005 * np.sin(2 * np.pi * 440 * t)       # would need about +27 dB
    loud = 0.7 * np.sin(2 * np.pi * 1000 * t)            # near full scale
    clicks = np.zeros(n)
    clicks[::4800] = 0.9                                  # peaky: reaching -23 LUFS would clip
    p = write_synthetic_study(tmp_path, n_prompts=4, clips_per_rater=2, n_gold=0, n_attention=0, n_training=0)
    for name, x in (("p000", quiet), ("p001", loud), ("p002", clicks), ("p003", whisper)):
        _write(tmp_path / "clips" / "system-alpha" / f"{name}.wav", x, sr)
    (tmp_path / "study.yaml").write_text((tmp_path / "study.yaml").read_text() + "loudness: {target_lufs: -23}\n")
    svc = MosService(load_study(p), tmp_path / "db.sqlite")
    rows = {r["prompt_id"]: r for r in svc.store.query(
        "SELECT clip_id, prompt_id, loudness_lufs, gain_db, served_lufs FROM clips WHERE system='system-alpha'")}
    for name, x in (("p000", quiet), ("p001", loud)):
        r = rows[name]
        assert r["loudness_lufs"] == pytest.approx(_bs1770(x, sr), abs=0.05)
        assert r["gain_db"] == pytest.approx(-23 - _bs1770(x, sr), abs=0.05)
        served, ssr = sf.read(io.BytesIO(svc.clip_wav(r["clip_id"])))
        assert ssr == sr and _bs1770(served, sr) == pytest.approx(-23.0, abs=0.1)
    r = rows["p002"]  # the click train: the ceiling holds, and the clip is served below the target
    served, _ = sf.read(io.BytesIO(svc.clip_wav(r["clip_id"])))
    assert np.max(np.abs(served)) <= 10 ** (-1 / 20) + 1e-3
    assert r["gain_db"] == pytest.approx(20 * np.log10(10 ** (-1 / 20) / 0.9), abs=0.02)
    assert r["served_lufs"] < -23.0 and _bs1770(served, sr) == pytest.approx(r["served_lufs"], abs=0.1)
    r = rows["p003"]
    assert r["gain_db"] == 20.0 and r["served_lufs"] == pytest.approx(_bs1770(whisper, sr) + 20, abs=0.05)
    svc.store.close()


OLD_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE clips (clip_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('main', 'gold', 'attention', 'training')), system TEXT, prompt_id TEXT,
    text TEXT NOT NULL, path TEXT NOT NULL, expect TEXT);
CREATE TABLE raters (rater_id TEXT PRIMARY KEY, idx INTEGER NOT NULL UNIQUE, created_at REAL NOT NULL,
    consent_at REAL, training_done_at REAL, completed_at REAL);
CREATE TABLE assignments (rater_id TEXT NOT NULL REFERENCES raters(rater_id), position INTEGER NOT NULL,
    item_id TEXT NOT NULL REFERENCES clips(clip_id), PRIMARY KEY (rater_id, position), UNIQUE (rater_id, item_id));
CREATE TABLE ratings (id INTEGER PRIMARY KEY AUTOINCREMENT, rater_id TEXT NOT NULL REFERENCES raters(rater_id),
    item_id TEXT NOT NULL REFERENCES clips(clip_id), scale TEXT NOT NULL,
    value INTEGER NOT NULL CHECK (value BETWEEN 1 AND 5), created_at REAL NOT NULL, UNIQUE (rater_id, item_id, scale));
CREATE TABLE play_events (id INTEGER PRIMARY KEY AUTOINCREMENT, rater_id TEXT NOT NULL, item_id TEXT NOT NULL,
    event TEXT NOT NULL CHECK (event IN ('play', 'ended')), created_at REAL NOT NULL);
CREATE TABLE page_times (rater_id TEXT NOT NULL, item_id TEXT NOT NULL, first_shown_at REAL NOT NULL,
    last_shown_at REAL NOT NULL, views INTEGER NOT NULL DEFAULT 1, submitted_at REAL, PRIMARY KEY (rater_id, item_id));
"""


def test_first_schema_database_is_migrated_with_its_rows(tmp_path, clock):
    """A database written by the first version (no listening log, no pages) opens, keeps every row, and its
    raters' tokens stay valid."""
    import hashlib
    import hmac

    p = write_synthetic_study(tmp_path, n_prompts=3, clips_per_rater=3, n_training=0)
    db = tmp_path / "db.sqlite"
    con = sqlite3.connect(db)
    con.executescript(OLD_SCHEMA)
    secret = "ab" * 32
    mac = lambda *parts: hmac.new(secret.encode(), "\x00".join(parts).encode(), hashlib.sha256).hexdigest()  # noqa
    cid = "c" + mac("clip", "main", "system-alpha", "p000")[:20]
    con.execute("INSERT INTO meta VALUES ('secret', ?)", (secret,))
    con.execute("INSERT INTO clips VALUES (?, 'main', 'system-alpha', 'p000', 't', 'x.wav', NULL)", (cid,))
    con.execute("INSERT INTO raters VALUES ('old', 0, 1.0, 1.0, 1.0, NULL)")
    con.execute("INSERT INTO assignments VALUES ('old', 0, ?)", (cid,))
    con.execute("INSERT INTO ratings (rater_id, item_id, scale, value, created_at) VALUES ('old', ?, 'mos_r', 4, 2.0)",
                (cid,))
    con.execute("INSERT INTO play_events (rater_id, item_id, event, created_at) VALUES ('old', ?, 'ended', 1.5)",
                (cid,))
    con.commit()
    con.close()
    svc = MosService(load_study(p), db, clock=clock)
    old_token = "old." + mac("token", "old")[:32]
    assert svc.rater_from_token(old_token) == "old"
    rows = svc.store.query("SELECT rater_id, item_id, scale, value, listen_s FROM ratings")
    assert [tuple(r) for r in rows] == [("old", cid, "mos_r", 4, None)]
    assert svc.store.query("SELECT test FROM clips WHERE clip_id = ?", (cid,))[0]["test"] == "acr"
    assert svc.store.query("PRAGMA user_version")[0][0] == 2
    assert svc.store.query("PRAGMA foreign_key_check") == []
    # the rebuilt tables take the new values
    s = svc.start("new", consent=True)
    svc.played(s["token"], s["item"]["item_id"], "seek")
    assert svc.store.query("SELECT COUNT(*) FROM play_events")[0][0] == 2
    svc.store.close()


def test_loudness_off_and_remeasured_when_a_file_changes(tmp_path):
    p = write_synthetic_study(tmp_path, n_prompts=2, clips_per_rater=2, extra={"loudness": "off"})
    svc = MosService(load_study(p), tmp_path / "db.sqlite")
    gains = {r["gain_db"] for r in svc.store.query("SELECT gain_db FROM clips")}
    assert gains == {0.0}  # the synthetic tones peak at about -10 dBFS: below the ceiling, left as they are
    clip = tmp_path / "clips" / "system-alpha" / "p000.wav"
    old = svc.store.query("SELECT loudness_lufs FROM clips WHERE path = ?", (str(clip),))[0][0]
    svc.store.close()
    # loudness on again, and one clip replaced by a quieter one: the restart measures again
    raw = (tmp_path / "study.yaml").read_text().replace("loudness: 'off'\n", "").replace("loudness: off\n", "")
    (tmp_path / "study.yaml").write_text(raw + "loudness: {target_lufs: -30}\n")
    x, sr = sf_read(clip)
    _write(clip, 0.5 * x, sr)
    svc = MosService(load_study(p), tmp_path / "db.sqlite")
    rows = {r["path"]: r for r in svc.store.query("SELECT path, loudness_lufs, served_lufs FROM clips")}
    other = rows[str(tmp_path / "clips" / "system-beta" / "p000.wav")]
    changed = rows[str(clip)]
    assert changed["served_lufs"] == pytest.approx(-30, abs=0.01)
    assert other["served_lufs"] == pytest.approx(-30, abs=0.01)
    assert changed["loudness_lufs"] == pytest.approx(old + 20 * np.log10(0.5), abs=0.01)  # half the amplitude
    svc.store.close()


def sf_read(path):
    import soundfile as sf

    return sf.read(path, dtype="float32")
