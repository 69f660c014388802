"""Load benchmark of the MOS app: N simulated raters in parallel through gradio_client (loopback).

Each rater rates a full small study with double submissions and reconnects (see demo.loadtest). Baseline in
the same run: the same raters calling MosService in-process from threads (no HTTP, no Gradio queue), which
isolates the cost of the web layer. Prints a Markdown table: lost / duplicated ratings (must be 0) and the
submit latency p50 / p95, with the ratio to the in-process baseline.

    .venv/bin/python benchmarks/bench_mos_load.py [--raters 30] [--prompts 4] [--per-rater 4]
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from demo.app import AppConfig, Server
from demo.loadtest import LoadConfig, LoadResult, run_load
from demo.service import MosService
from demo.study import load_study
from demo.synthetic import write_synthetic_study


def in_process(svc: MosService, n: int, seed: int) -> LoadResult:
    lat, lock = [], threading.Lock()
    given = {}

    def rater(i):
        rng = random.Random(f"{seed}:{i}")
        s = svc.start(f"local-{i:03d}", consent=True)
        s = svc.finish_training(s["token"]) if s["phase"] == "training" else s
        while s["phase"] == "rating":
            item = s["item"]["item_id"]
            svc.played(s["token"], item, "play")
            time.sleep(svc.levels[item]["duration_s"])  # the server refuses an `ended` before the clip's time
            svc.played(s["token"], item, "ended")
            v = {"mos_r": rng.randint(1, 5), "mos_t": rng.randint(1, 5)}
            t0 = time.perf_counter()
            res = svc.rate(s["token"], item, v)
            with lock:
                lat.append(time.perf_counter() - t0)
                given.update({(f"local-{i:03d}", item, k): x for k, x in v.items()})
            s = res["state"]

    t0 = time.perf_counter()
    with ThreadPoolExecutor(n) as pool:
        list(pool.map(rater, range(n)))
    _, table = svc.store.table_rows("ratings")
    rows = [(r["rater_id"], r["item_id"], r["scale"], r["value"]) for r in table if r["rater_id"].startswith("local-")]
    stored = {(r[0], r[1], r[2]): r[3] for r in rows}
    lost = sum(1 for k in given if k not in stored)
    return LoadResult(n, len(given), len(rows), lost, len(rows) - len(stored),
                      sum(1 for k, v in stored.items() if given.get(k) != v), 0, 0, 0, [], lat,
                      time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--raters", type=int, default=30)
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--per-rater", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # script entry point only, not at import
    with tempfile.TemporaryDirectory() as d:
        p = write_synthetic_study(d, n_prompts=a.prompts, clips_per_rater=a.per_rater)
        svc = MosService(load_study(p), f"{d}/db.sqlite")
        base = in_process(svc, a.raters, a.seed)
        with Server(svc, AppConfig(port=0)) as srv:
            web = run_load(srv.url, f"{d}/db.sqlite", LoadConfig(n_raters=a.raters, seed=a.seed), prefix="sim")
        svc.store.close()
    print(f"\n{a.raters} raters x ({a.per_rater} clips + 1 gold + 1 attention) x 2 scales, 2 CPU-bound cores\n")
    print("| path | raters | ratings submitted | stored | lost | duplicated | repeats refused | reconnects | "
          "submit p50 ms | submit p95 ms | p50 vs in-process | wall s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    b50 = base.percentile(50)
    for name, r in (("in-process MosService (baseline)", base), ("gradio_client over HTTP", web)):
        print(f"| {name} | {r.n_raters} | {r.submitted} | {r.stored} | {r.lost} | {r.duplicated + r.phantom} | "
              f"{r.repeats_refused}/{r.repeats} | {r.reconnects} | {1000 * r.percentile(50):.1f} | "
              f"{1000 * r.percentile(95):.1f} | {r.percentile(50) / b50:.1f}x | {r.wall_s:.1f} |")
    if web.errors:
        print("\nerrors:", *web.errors[:5], sep="\n  ")


if __name__ == "__main__":
    main()
