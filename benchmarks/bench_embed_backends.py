"""Embedding throughput per eval_gen backend (clips/s on 10 s clips at 16 kHz, CPU unless --device).

Random-init weights (throughput does not depend on the values). Each backend resamples its input itself,
so resampling is included. Baseline for the ratio column: the weight-free mel-stats backend.

    python benchmarks/bench_embed_backends.py [--quick] [--device cuda]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from eval_gen.backends import get_backend


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true", help="4 clips of 5 s instead of 16 of 10 s")
    p.add_argument("--device", default="cpu")
    a = p.parse_args(argv)
    n, seconds = (4, 5.0) if a.quick else (16, 10.0)
    rng = np.random.default_rng(0)
    clips = [(0.1 * rng.standard_normal(int(16000 * seconds))).astype(np.float32) for _ in range(n)]
    names = [("mel-stats", {}), ("vggish", {"device": a.device}), ("panns-cnn14", {"device": a.device}),
             ("clap", {"model": "tiny", "device": a.device})]
    rows = []
    for name, kw in names:
        try:
            b = get_backend(name, **kw)
        except Exception as exc:  # e.g. tclap.models not available
            rows.append((name, None, f"skipped: {str(exc).splitlines()[0][:60]}"))
            continue
        b.embed(clips[:1], 16000)  # warm-up
        t = time.perf_counter()
        b.embed(clips, 16000)
        dt = time.perf_counter() - t
        rows.append((name, n / dt, f"dim {b.dim}, {b.sample_rate} Hz"))
    base = rows[0][1]
    print(f"## Embedding throughput ({n} clips x {seconds:g} s, device {a.device})\n")
    print("| backend | clips/s | vs mel-stats | notes |")
    print("|---|---|---|---|")
    for name, cps, note in rows:
        if cps is None:
            print(f"| {name} | - | - | {note} |")
        else:
            print(f"| {name} | {cps:.2f} | {cps / base:.2f}x | {note} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
