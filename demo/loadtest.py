"""Simulated raters hammering a running study through ``gradio_client`` (the public API, loopback only).

Each simulated rater starts a session, does the training page, then for every clip downloads it (as the page's
player does), sends ``play``, waits the clip's duration (the server refuses an earlier ``ended``), sends
``ended``, rates it, and at random sends the same rating again with other values (a double click / second tab)
or drops its client and reconnects (a reload), sometimes between ``ended`` and the rating. Afterwards the
database is compared with what the raters were told was saved: every first submission must be stored with its
values (zero lost), nothing else may be stored (zero duplicated or phantom rows), and every repeat must have
been answered ``already_rated``.
"""

from __future__ import annotations

import io
import random
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from demo.store import Store


@dataclass
class LoadConfig:
    n_raters: int = 30
    double_submit_prob: float = 0.3
    reconnect_prob: float = 0.2
    seed: int = 0


@dataclass
class LoadResult:
    n_raters: int
    submitted: int  # rating rows the raters were told were saved
    stored: int  # rating rows in the database
    lost: int
    duplicated: int
    phantom: int  # stored rows nobody submitted first (or with other values)
    repeats: int  # double submissions sent
    repeats_refused: int  # ... answered "already_rated"
    reconnects: int
    errors: list[str] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list)
    wall_s: float = 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies_s:
            return float("nan")
        xs = sorted(self.latencies_s)
        # nearest-rank percentile: the smallest value with at least q% of the samples at or below it
        k = max(0, min(len(xs) - 1, int(-(-q * len(xs) // 100)) - 1))
        return xs[k]


def _listen(client, url: str, token: str, item: dict) -> None:
    """Play the clip as a browser would: fetch it, ``play``, wait its duration, ``ended``."""
    import soundfile as sf

    with urllib.request.urlopen(url.rstrip("/") + item["audio_url"], timeout=120) as r:
        info = sf.info(io.BytesIO(r.read()))
    client.predict(token, item["item_id"], "play", api_name="/played")
    time.sleep(info.frames / info.samplerate)
    client.predict(token, item["item_id"], "ended", api_name="/played")


def _rater(url: str, rater_id: str, cfg: LoadConfig, out: dict, lock: threading.Lock) -> None:
    from gradio_client import Client

    rng = random.Random(f"{cfg.seed}:{rater_id}")
    client = Client(url, verbose=False, analytics_enabled=False, httpx_kwargs={"timeout": 120})
    s = client.predict(rater_id, "", True, api_name="/start")
    token = s["token"]
    if s["phase"] == "training":
        s = client.predict(token, api_name="/finish_training")
    given: dict[tuple[str, str, str], int] = {}
    lat, repeats, refused, reconnects = [], 0, 0, 0
    while s["phase"] == "rating":
        item = s["item"]["item_id"]
        if not s["played"]:
            _listen(client, url, token, s["item"])
        if rng.random() < cfg.reconnect_prob / 2:  # reload between the end of playback and the rating
            client = Client(url, verbose=False, analytics_enabled=False, httpx_kwargs={"timeout": 120})
            reconnects += 1
            s = client.predict(rater_id, "", False, api_name="/start")
            if s["item"]["item_id"] != item or not s["played"]:
                raise AssertionError(f"{rater_id}: resume after reload lost the current clip or its play event")
        values = {sc["name"]: rng.randint(1, 5) for sc in s["scales"]}
        t0 = time.perf_counter()
        try:
            res = client.predict(token, item, values, api_name="/rate")
        except Exception as exc:  # a network-level failure (timeout): retry on a fresh connection, as a browser would
            if "AppError" in type(exc).__name__:
                raise
            client, retried = Client(url, verbose=False, analytics_enabled=False, httpx_kwargs={"timeout": 120}), True
            reconnects += 1
            res = client.predict(token, item, values, api_name="/rate")
        else:
            retried = False
        lat.append(time.perf_counter() - t0)
        # after a retry "already_rated" is the right answer when the first attempt did land (same values)
        if res["status"] != "saved" and not retried:
            raise AssertionError(f"{rater_id}: first rating of {item} answered {res['status']!r}")
        for k, v in values.items():
            given[(rater_id, item, k)] = v
        if rng.random() < cfg.double_submit_prob:
            repeats += 1
            other = {k: 6 - v for k, v in values.items()}
            again = client.predict(token, item, other, api_name="/rate")
            refused += again["status"] == "already_rated"
        s = res["state"]
        if rng.random() < cfg.reconnect_prob / 2:  # reload after rating: resume at the next clip
            client = Client(url, verbose=False, analytics_enabled=False, httpx_kwargs={"timeout": 120})
            reconnects += 1
            s = client.predict(rater_id, "", False, api_name="/start")
    with lock:
        out["given"].update(given)
        out["lat"].extend(lat)
        out["repeats"] += repeats
        out["refused"] += refused
        out["reconnects"] += reconnects


def run_load(url: str, db_path: str | Path, cfg: LoadConfig, prefix: str = "sim") -> LoadResult:
    """Run ``cfg.n_raters`` simulated raters in parallel against ``url``; compare with the database."""
    out = {"given": {}, "lat": [], "repeats": 0, "refused": 0, "reconnects": 0}
    lock = threading.Lock()
    errors: list[str] = []
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=cfg.n_raters) as pool:
        futs = [pool.submit(_rater, url, f"{prefix}-{i:03d}", cfg, out, lock) for i in range(cfg.n_raters)]
        for f in futs:
            exc = f.exception()
            if exc is not None:
                errors.append(f"{type(exc).__name__}: {exc}")
    wall = time.perf_counter() - t0
    store = Store.open_readonly(db_path)
    try:
        _, table = store.table_rows("ratings")
    finally:
        store.close()
    rows = [(r["rater_id"], r["item_id"], r["scale"], r["value"]) for r in table
            if r["rater_id"].startswith(f"{prefix}-")]
    given = out["given"]
    seen: dict[tuple[str, str, str], int] = {}
    dup = 0
    for r, i, sc, v in rows:
        key = (r, i, sc)
        dup += key in seen
        seen[key] = v
    lost = sum(1 for k in given if k not in seen)
    phantom = sum(1 for k, v in seen.items() if given.get(k) != v)
    return LoadResult(cfg.n_raters, len(given), len(rows), lost, dup, phantom, out["repeats"], out["refused"],
                      out["reconnects"], errors, out["lat"], wall)
