"""Mix-up builder throughput: clips/s with 1 vs 2 worker processes (built-in bank), as a Markdown table.

    python benchmarks/bench_mixup.py            # 1000 clips of 10 s per setting
    python benchmarks/bench_mixup.py --quick    # 200 clips of 10 s (< 60 s on 2 cores)

Each setting writes a fresh set into a temporary folder (audio, negative audio, sidecars, manifest), so
the time includes rendering, mixing and writing. The baseline is 1 worker, in the same run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from tclap.data.mixup import MixupConfig, build_mixups


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--n", type=int, default=None)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--workers", default="1,2")
    args = p.parse_args(argv)
    n = args.n or (200 if args.quick else 1000)
    cfg = MixupConfig(seconds=args.seconds, sr=16000)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for w in [int(v) for v in args.workers.split(",")]:
            t0 = time.perf_counter()
            report = build_mixups(cfg, Path(tmp) / f"w{w}", n, workers=w, quiet=True)
            dt = time.perf_counter() - t0
            assert report.written == n and not report.failed
            rows.append((w, n, dt, n / dt))
    base = rows[0][3]
    print(f"| builder (built-in bank, {args.seconds:g} s clips, 16 kHz) | clips | seconds | clips/s | vs 1 worker |")
    print("|---|---:|---:|---:|---:|")
    for w, n_, dt, rate in rows:
        print(f"| tclap mixup --workers {w} | {n_} | {dt:.2f} | {rate:.1f} | {rate / base:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
