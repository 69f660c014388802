"""Streaming vs cached training data: peak memory and samples/s of `audioldm-cond train --stage ldm` (issue 23).

Each row is one `audioldm-cond train --stage ldm` run of the embedded recipe's tiny model (a subprocess, sampled
every 0.2 s for its memory): the shipped ``tiny-tclap`` VAE (mel VAE 8, 16, 32, 64; 8 latent channels) and CLAP
frozen, a fresh UNet of the recipe's size (16, 32 wide, 1 res block per level, 4 time-position channels, an 8x8
condition map), v-prediction, text conditioning, 4 s clips at 16 kHz. The batch is the recipe's (12, its
``ldm_batch``), not ``tclap train``'s 64.

* ``cached N``: a manifest of N mix-ups; mels, VAE posteriors and CLAP text embeddings of every clip computed once
  before the first step and held in memory (the in-memory path, today's for small sets); N = ITEMS and 4 x ITEMS,
  and 10 x ITEMS extrapolated linearly from those two (it would not fit comfortably);
* ``shards N``: the same mix-ups as WebDataset tars, streamed by ``--workers`` DataLoader workers that decode and
  compute the mels, with the frozen VAE and CLAP run on each batch in the training process; N = ITEMS and
  10 x ITEMS.

Columns: peak RSS of the training process; peak memory of it and its workers together (the sum of their PSS,
which counts the pages they share after fork once); the cache the cached path writes to disk; steady samples/s
(median over the steps after the warm-up, data loading and the per-batch VAE/CLAP of the streamed path included);
the share of step time spent waiting for the data workers (``data_wait_s`` over ``sec`` in the run's
``log.jsonl``; the cached path has no workers); the time from start to the first step (the cached path's feature
computation falls here). Ratios are against ``cached ITEMS`` in the same run. The cached path's peak includes
transients of its feature pass (chunks of 128 clips through the mel front end, then one concatenation), so its
growth is linear only from ITEMS >= 256 on: take small ``--items`` as a check that the script runs, not a figure. Goals (issue 23): streaming memory
flat from ITEMS to 10 x ITEMS; data wait < 5 % of step time with 2 workers. Each shards row first reads its tars once
(``bench_stream.warm_page_cache``), so that rows compare the loaders, not the disk.

The data are those of ``benchmarks/bench_stream.py`` (its ``build_data``: 10 x ITEMS are the ITEMS tars linked
under new names, 4 x ITEMS a manifest of linked audio files under new ids), so the two benchmarks can share one
folder (``--keep DIR``; an existing ``DIR/data`` of the same size is reused).

    python benchmarks/bench_ldm_stream.py                         # 5 000 / 20 000 / 50 000 items, 200 steps
    python benchmarks/bench_ldm_stream.py --items 64 --steps 4    # a small check
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

# The embedded recipe's ldm stage (conductor.recipes.audioldm.RecipeConfig: ldm_unet, ldm_lr, ema_decay,
# cfg_dropout, prediction_type) on the shipped model's VAE and CLAP.
MODEL_ARGS = ["--stage", "ldm", "--model", "tiny-tclap", "--clap", "tiny-tclap", "--cond-source", "text",
              "--unet-channels", "16,32", "--unet-layers", "1", "--unet-position-channels", "4", "--unet-cond-map", "8x8",
              "--prediction-type", "v_prediction", "--lr", "1e-3", "--ema-decay", "0.98", "--cfg-dropout", "0.1"]


def _bench_stream():
    """``benchmarks/bench_stream.py`` as a module (benchmarks/ is a folder of scripts, not a package)."""
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)
    return importlib.import_module("bench_stream")


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def _train_records(log: Path) -> list[dict]:
    """The step records of a run's ``log.jsonl`` (a line still being written is not one)."""
    if not log.exists():
        return []
    out = []
    for ln in log.read_text().splitlines():
        try:
            rec = json.loads(ln)
        except json.JSONDecodeError:
            continue
        if rec.get("kind") == "train":
            out.append(rec)
    return out


def run_train(args: list[str], out: Path, threads: int, bs) -> dict:
    """Run `audioldm-cond train` in a subprocess (``bs.run_sampled``); its peak memory, step records, setup time
    and disk cache."""
    cache, log = out / "cache", out / "log.jsonl"
    r = bs.run_sampled(["audioldm_cond.cli", "train", *args, "--out", str(out), "--cache-dir", str(cache)], threads,
                       lambda: bool(_train_records(log)))
    return {**r, "recs": _train_records(log), "cache": _dir_bytes(cache)}


def summarise(r: dict, warmup: int, samples_per_step: int) -> dict:
    """Median steady samples/s and the data-wait share over the steps after ``warmup``."""
    steady = [x for x in r["recs"] if x["step"] > warmup] or r["recs"]
    rate = statistics.median(samples_per_step / max(1e-9, x["sec"]) for x in steady)
    waits = [x.get("data_wait_s") for x in steady]
    wait = (sum(waits) / max(1e-9, sum(x["sec"] for x in steady))) if all(w is not None for w in waits) else None
    return {**r, "rate": rate, "wait": wait, "step_s": statistics.median(x["sec"] for x in steady)}


def get_data(root: Path, items: int, seconds: float, bs) -> tuple[dict[str, Path], float]:
    """bench_stream's data under ``root/data`` (reused when a folder of this size is already there)."""
    data = root / "data"
    names = ("shards-1x", "shards-10x", "manifest-1x", "manifest-4x")
    paths = {k: data / (f"{k}.jsonl" if k.startswith("manifest") else k) for k in names}
    if all(p.exists() for p in paths.values()):
        have = sum(1 for ln in paths["manifest-1x"].read_text().splitlines() if ln.strip())
        if have != items:
            raise SystemExit(f"{data} holds {have} items, not --items {items}: choose another --keep folder")
        print(f"reusing the data in {data}", file=sys.stderr)
        return paths, 0.0
    if data.exists():
        raise SystemExit(f"{data} is incomplete (a build was interrupted?): remove it or choose another --keep folder")
    t0 = time.perf_counter()
    built = bs.build_data(data, items, max(8, min(500, items // 10)), seconds, workers=2)
    return built, time.perf_counter() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--items", type=int, default=5000, help="the small set (default 5000; 4x cached, 10x as shards)")
    p.add_argument("--steps", type=int, default=200, help="optimizer steps per run (default 200)")
    p.add_argument("--warmup", type=int, default=5, help="first steps left out of samples/s (default 5)")
    p.add_argument("--batch-size", type=int, default=12, help="global batch (default 12, the recipe's ldm_batch)")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers of the streamed runs (default 2)")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the training process (default 1)")
    p.add_argument("--seconds", type=float, default=4.0, help="clip length (the tiny model's 4 s)")
    p.add_argument("--keep", help="build the data (and runs) in this folder and keep them; reuses DIR/data of the "
                                  "same --items, also one bench_stream.py --keep built (default: a temporary folder)")
    args = p.parse_args(argv)
    bs = _bench_stream()
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_ldm_stream-"))
    root.mkdir(parents=True, exist_ok=True)
    warmup = min(args.warmup, max(0, args.steps - 2))
    n = args.items
    try:
        data, t_data = get_data(root, n, args.seconds, bs)
        runs_dir = root / "ldm-runs"
        shutil.rmtree(runs_dir, ignore_errors=True)  # fresh runs (and caches) every time
        common = [*MODEL_ARGS, "--seconds", str(args.seconds), "--batch-size", str(args.batch_size), "--steps",
                  str(args.steps), "--ckpt-every", "0", "--no-val-generate", "--quiet"]
        stream = ["--workers", str(args.workers)]
        runs = [
            (f"cached {n}", n, ["--train", str(data["manifest-1x"])]),
            (f"cached {4 * n}", 4 * n, ["--train", str(data["manifest-4x"])]),
            (f"shards {n}", n, ["--train", str(data["shards-1x"]), *stream]),
            (f"shards {10 * n}", 10 * n, ["--train", str(data["shards-10x"]), *stream]),
        ]
        results = []
        for name, items, extra in runs:
            if name.startswith("shards"):
                bs.warm_page_cache(Path(extra[1]))
            r = summarise(run_train(common + extra, runs_dir / name.replace(" ", "-"), args.threads, bs),
                          warmup, args.batch_size)
            results.append((name, items, r))
            wait = "-" if r["wait"] is None else f"{100 * r['wait']:.1f}%"
            print(f"  {name}: peak RSS {r['peak_own'] / 2**20:.0f} MB ({r['peak_all'] / 2**20:.0f} MB PSS with workers), "
                  f"{r['rate']:.1f} samples/s, data wait {wait}, setup {r['setup_s']:.0f} s, wall {r['wall_s']:.0f} s",
                  file=sys.stderr)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    base = results[0][2]
    m1, m4 = results[0][2]["peak_all"], results[1][2]["peak_all"]
    slope = (m4 - m1) / (3 * n)
    extrap = m1 + slope * 9 * n
    print(f"\n`audioldm-cond train --stage ldm` (the embedded recipe's tiny model: shipped tiny-tclap VAE + CLAP frozen, "
          f"fresh 16,32 UNet), batch {args.batch_size}, {args.steps} steps ({warmup} warm-up), {args.seconds:g} s clips, "
          f"{args.workers} workers for streamed sources, {args.threads} torch thread(s); {os.cpu_count()} CPU(s); "
          + (f"data built in {t_data:.0f} s\n" if t_data else "data reused\n"))
    print("| source | items | peak RSS (MB) | with workers, PSS (MB) | memory vs cached | disk cache (MB) | samples/s | "
          "vs cached | data wait | setup s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, items, r in results:
        wait = "-" if r["wait"] is None else f"{100 * r['wait']:.1f}%"
        print(f"| {name} | {items} | {r['peak_own'] / 2**20:.0f} | {r['peak_all'] / 2**20:.0f} | "
              f"{r['peak_all'] / base['peak_all']:.2f}x | {r['cache'] / 2**20:.0f} | {r['rate']:.1f} | "
              f"{r['rate'] / base['rate']:.2f}x | {wait} | {r['setup_s']:.1f} |")
    print(f"| cached {10 * n} (extrapolated from the two above) | {10 * n} | - | {extrap / 2**20:.0f} | "
          f"{extrap / base['peak_all']:.2f}x | - | - | - | - | - |")
    streamed = [r for name, _, r in results if name.startswith("shards")]
    spread = max(r["peak_all"] for r in streamed) / min(r["peak_all"] for r in streamed) - 1
    shard_wait = max(r["wait"] or 0.0 for r in streamed)
    print(f"\nstreaming memory (with workers) spread across {n} / {10 * n} items: {100 * spread:.1f}% (goal <= 10%: "
          f"{'met' if spread <= 0.10 else 'NOT met'}); cached memory grows {slope * 1000 / 2**20:.1f} MB per 1000 items. "
          f"Data wait from shards: {100 * shard_wait:.1f}% of step time (goal < 5%: "
          f"{'met' if shard_wait < 0.05 else 'NOT met'}).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
