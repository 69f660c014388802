"""The served app through its public API (gradio_client, loopback): refusals, blinding, a small load test."""

import json
import sqlite3
import time
import urllib.request

import pytest

from demo.app import AppConfig, Server
from demo.loadtest import LoadConfig, run_load
from demo.service import MosService
from demo.study import load_study
from demo.synthetic import write_synthetic_study

CLIP_S = 2.0
SECRET_NAMES = ("system-alpha", "system-beta", "p000", "p001", "p002", ".wav", "clips/", "gold", "attention-0",
                "training-0")


class HeldClock:
    """The wall clock, unless a test holds it at one instant (``held``): then an `ended` right after its `play` is
    early however slowly a loaded machine answers the two calls."""

    def __init__(self):
        self.held: float | None = None

    def __call__(self) -> float:
        return time.time() if self.held is None else self.held


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    d = tmp_path_factory.mktemp("api")
    p = write_synthetic_study(d, n_prompts=3, clips_per_rater=2, seconds=CLIP_S)
    svc = MosService(load_study(p), d / "db.sqlite", clock=HeldClock())
    with Server(svc, AppConfig(port=0)) as srv:
        yield srv, svc, d / "db.sqlite"
    svc.store.close()


def _count(db, table="ratings"):
    con = sqlite3.connect(db)
    try:
        return con.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    finally:
        con.close()


def _snapshot(db):
    return {t: _count(db, t) for t in ("ratings", "raters", "play_events", "listens", "assignments")}


def test_api_refusals_write_nothing(served):
    """Every route around listening and every impersonation through the public API: refused with one line,
    nothing written, and the same answer for a known and an unknown rater id."""
    from gradio_client import Client

    srv, svc, db = served
    c = Client(srv.url, verbose=False, analytics_enabled=False, httpx_kwargs={"timeout": 120})
    s = c.predict("api-r1", "", True, api_name="/start")
    tok = s["token"]
    s = c.predict(tok, api_name="/finish_training")
    item = s["item"]["item_id"]
    mac = tok.rsplit(".", 1)[1]
    before = _snapshot(db)
    cases = [
        ((tok, item, "ended"), "/played", "without its start"),  # ended without play
        ((tok, item, {"mos_r": 3, "mos_t": 3}), "/rate", "has not been played to the end"),
        (("", item, {"mos_r": 3, "mos_t": 3}), "/rate", "token is missing or not valid"),  # no token
        (("nobody." + mac, item, {"mos_r": 3, "mos_t": 3}), "/rate", "token is missing or not valid"),
        (("api-r1." + "0" * 32, item, {"mos_r": 3, "mos_t": 3}), "/rate", "token is missing or not valid"),
        (("a/../b", "", True), "/start", "not allowed"),
        ((tok, "c0000000000", "ended"), "/played", "not one of rater"),
    ]
    for args, api, msg in cases:
        with pytest.raises(Exception) as ei:
            c.predict(*args, api_name=api)
        assert msg in str(ei.value), (api, str(ei.value))
        assert "system-" not in str(ei.value) and "p00" not in str(ei.value)
    assert _snapshot(db) == before
    # ended too soon (a seek to the end): the play is written, the early end is not. The server's clock is held
    # still from before the play until after the end, so the end comes 0 s after the play on every run (with the
    # wall clock, two slow calls on a loaded machine could take the clip's length and make it a full listen).
    svc.clock.held = time.time()
    try:
        c.predict(tok, item, "play", api_name="/played")
        after_play = _snapshot(db)
        with pytest.raises(Exception, match="listen to the whole clip"):
            c.predict(tok, item, "ended", api_name="/played")
        with pytest.raises(Exception, match="has not been played to the end"):
            c.predict(tok, item, {"mos_r": 3, "mos_t": 3}, api_name="/rate")
    finally:
        svc.clock.held = None
    assert _snapshot(db) == after_play
    for args, msg in (((tok, item, {"mos_r": 7, "mos_t": 3}), "outside 1-5"),
                      ((tok, item, {"mos_r": 3}), "no rating for scale")):
        with pytest.raises(Exception, match=msg):
            c.predict(*args, api_name="/rate")
    time.sleep(CLIP_S)  # the wall clock again, the clip's length after the held instant: now its end counts
    assert c.predict(tok, item, "ended", api_name="/played")["played"] is True
    res = c.predict(tok, item, {"mos_r": 4, "mos_t": 4}, api_name="/rate")
    assert res["status"] == "saved" and _count(db) == before["ratings"] + 2


def test_page_has_no_api_link(served):
    srv, _, _ = served
    config = json.loads(urllib.request.urlopen(srv.url + "config", timeout=30).read())
    assert config.get("footer_links") == []
    assert "Use via API" not in urllib.request.urlopen(srv.url, timeout=30).read().decode("utf-8", "replace")


def test_blinding_every_response(served):
    from gradio_client import Client

    srv, svc, db = served
    bodies = []
    for path in ("", "config", "gradio_api/info", "gradio_api/info?all_endpoints=true"):
        bodies.append(urllib.request.urlopen(srv.url + path, timeout=30).read().decode("utf-8", "replace"))
    c = Client(srv.url, verbose=False, analytics_enabled=False, httpx_kwargs={"timeout": 120})
    s = c.predict("blind-r1", "", True, api_name="/start")
    bodies.append(json.dumps(s))
    s = c.predict(s["token"], api_name="/finish_training")
    urls = []
    while s["phase"] == "rating":
        bodies.append(json.dumps(s))
        item = s["item"]["item_id"]
        urls.append(s["item"]["audio_url"])
        bodies.append(json.dumps(c.predict(s["token"], item, "play", api_name="/played")))
        time.sleep(CLIP_S)
        bodies.append(json.dumps(c.predict(s["token"], item, "ended", api_name="/played")))
        s = c.predict(s["token"], item, {"mos_r": 2, "mos_t": 2}, api_name="/rate")["state"]
        bodies.append(json.dumps(s))
    for u in urls:
        with urllib.request.urlopen(srv.url + u.lstrip("/"), timeout=30) as r:
            assert r.headers["Content-Type"] == "audio/wav"
            assert "filename" not in str(r.headers).lower()
            assert r.read()[:4] == b"RIFF"
    for text in bodies + urls:
        for name in SECRET_NAMES:
            assert name not in text, name
    assert str(svc.study.path.parent) not in "".join(bodies)
    with pytest.raises(urllib.error.HTTPError) as ei:
        urllib.request.urlopen(srv.url + "mos/clip/..%2Fstudy.yaml", timeout=30)
    assert ei.value.code == 404


def test_small_load_zero_lost_zero_duplicated(served):
    srv, svc, db = served
    res = run_load(srv.url, db, LoadConfig(n_raters=8, double_submit_prob=0.5, reconnect_prob=0.5, seed=1),
                   prefix="load")
    assert res.errors == []
    assert res.submitted == 8 * 4 * 2  # 2 main + gold + attention clips, 2 scales
    assert (res.lost, res.duplicated, res.phantom) == (0, 0, 0)
    assert res.stored == res.submitted
    assert res.repeats > 0 and res.repeats_refused == res.repeats and res.reconnects > 0


def test_clip_route_answers_range_requests(served):
    """Browsers seek with Range requests (Safari plays no audio without them): 206 with the requested bytes."""
    srv, svc, _ = served
    cid = next(c.clip_id for c in svc.clips.values() if c.kind == "main")
    url = srv.url + "mos/clip/" + cid
    full = urllib.request.urlopen(url, timeout=30).read()
    n = len(full)
    for header, (a, b) in (("bytes=0-9", (0, 9)), ("bytes=-4", (n - 4, n - 1)), (f"bytes=10-{n + 50}", (10, n - 1)),
                           ("bytes=44-", (44, n - 1))):
        with urllib.request.urlopen(urllib.request.Request(url, headers={"Range": header}), timeout=30) as r:
            assert r.status == 206 and r.read() == full[a:b + 1]
            assert r.headers["Content-Range"] == f"bytes {a}-{b}/{n}"
    with pytest.raises(urllib.error.HTTPError) as ei:
        urllib.request.urlopen(urllib.request.Request(url, headers={"Range": f"bytes={len(full)}-"}), timeout=30)
    assert ei.value.code == 416
