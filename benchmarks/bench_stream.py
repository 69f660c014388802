"""Streaming vs in-memory training data: peak memory and samples/s of `tclap train --preset tiny` (issue 23).

Each row is one `tclap train --preset tiny --batch-size 64` run (a subprocess, sampled every 0.2 s for its memory):

* ``in-memory N``: a manifest of N mix-ups, every clip's features held in memory (today's path for small sets);
  N = ITEMS and 4 x ITEMS, and 10 x ITEMS extrapolated linearly from those two (it would not fit comfortably);
* ``shards N``: the same mix-ups as WebDataset tars (`tclap mixup --format webdataset`), streamed by
  ``--workers`` DataLoader workers, N = ITEMS and 10 x ITEMS;
* ``bank:builtin``: endless mix-ups made on the fly inside the workers.

Columns: peak RSS of the training process; peak memory of it and its workers together (the sum of their PSS,
which counts the pages they share after fork once); steady samples/s (median over the steps after the warm-up,
data loading included); the share of step time spent waiting for data; the time from start to the first step.
Ratios are against ``in-memory ITEMS`` in the same run. Goals (issue 23): streaming RSS flat within 10 % from
ITEMS to 10 x ITEMS to endless; from shards, data wait < 5 % of step time with 2 workers. Each shards row first
reads its tars once (:func:`warm_page_cache`), so that rows compare the loaders, not the disk.

The larger sets reuse the smaller set's audio (tars linked under new names, manifest lines pointing at linked
files with new ids): building 50 000 mix-ups takes far longer than the runs, and memory and reading cost do not
depend on whether two items hold the same sound.

    python benchmarks/bench_stream.py                        # 5 000 / 20 000 / 50 000 items, 200 steps
    python benchmarks/bench_stream.py --items 500 --steps 20 # a small check

``--paper`` instead runs the ``paper`` preset from shards at the real size: a randomly initialised HTSAT-tiny +
RoBERTa-base CLAP built from its config (``htsat-tiny-roberta``; the built-in tiny BPE tokenizer stands in for
RoBERTa's, which cannot be downloaded offline), 10 s mix-ups at 48 kHz written as shards on the machine that runs
it, and prints samples/s (data loading included), the data-wait share and, on a GPU, its utilisation:

    python benchmarks/bench_stream.py --paper --steps 5 --batch-size 16                      # this CPU
    python benchmarks/bench_stream.py --paper --steps 60 --batch-size 64 --workers 8 --mixed-precision bf16  # a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil


def _tree_memory(proc: psutil.Process) -> tuple[int, int]:
    """``(RSS of proc, PSS of proc and all its descendants)`` in bytes.

    PSS (proportional set size) counts a page shared by k processes as 1/k in each, so the sum over the training
    process and its forked workers is their real footprint (RSS would count the shared torch pages once per worker).
    """
    try:
        own = proc.memory_info().rss
        procs = [proc, *proc.children(recursive=True)]
        total = 0
        for p in procs:
            try:
                total += p.memory_full_info().pss
            except (psutil.AccessDenied, AttributeError):  # no smaps access: fall back to RSS
                total += p.memory_info().rss
    except psutil.NoSuchProcess:
        return 0, 0
    return own, total


def warm_page_cache(folder: Path) -> None:
    """Read every file under ``folder`` once, so that a streamed row starts from the page cache like the rows before it
    (a row that follows a large in-memory run would otherwise also time the disk re-reading evicted tars)."""
    for f in sorted(folder.rglob("*")):
        if f.is_file():
            with open(f, "rb") as fh:
                while fh.read(1 << 22):
                    pass


def run_sampled(cmd: list[str], threads: int, started) -> dict:
    """Run ``python -m <cmd>`` with ``threads`` torch threads, sampling its memory (and its workers') every 0.2 s.

    ``started()`` says whether the run has logged its first step (the end of its setup). Returns the peak RSS of
    the process (``peak_own``), the peak PSS of it and its workers (``peak_all``), ``setup_s`` and ``wall_s``.
    """
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    t0 = time.perf_counter()
    p = subprocess.Popen([sys.executable, "-m", *cmd], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    proc = psutil.Process(p.pid)
    peak_own = peak_all = 0
    first_step = None
    while p.poll() is None:
        own, tree = _tree_memory(proc)
        peak_own, peak_all = max(peak_own, own), max(peak_all, tree)
        if first_step is None and started():
            first_step = time.perf_counter() - t0
        time.sleep(0.2)
    err = p.stderr.read().decode()
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err[-3000:]}")
    return {"peak_own": peak_own, "peak_all": peak_all, "setup_s": first_step or float("nan"),
            "wall_s": time.perf_counter() - t0}


def run_train(args: list[str], out: Path, threads: int) -> dict:
    """Run `tclap train` in a subprocess; its peak RSS, steady samples/s, data-wait share and setup time."""
    log = out / "metrics.jsonl"
    r = run_sampled(["tclap.cli", "train", *args, "--out", str(out)], threads,
                    lambda: log.exists() and log.stat().st_size > 0)
    return {**r, "recs": [json.loads(ln) for ln in log.read_text().splitlines() if ln.strip()]}


def summarise(r: dict, warmup: int) -> dict:
    steady = [x for x in r["recs"] if x["step"] > warmup] or r["recs"]
    wait = sum(x["data_wait_s"] for x in steady) / max(1e-9, sum(x["step_s"] for x in steady))
    return {**r, "rate": statistics.median(x["samples_per_s"] for x in steady), "wait": wait}


def build_data(root: Path, items: int, per_tar: int, seconds: float, workers: int) -> dict[str, Path]:
    """Shards of ``items`` mix-ups, their 10x linked copy, and manifests of 1x and 4x the items."""
    from tclap.data.mixup import MixupConfig, build_mixups
    from tclap.data.shards import ShardInfo, TarReader, read_indexes, write_index

    base = root / "shards-1x"
    rep = build_mixups(MixupConfig(seconds=seconds, sr=16000, seed=0), base, items, workers=workers, quiet=True,
                       webdataset=True, items_per_shard=per_tar)
    assert rep.shard_items == items and not rep.failed, rep.summary()
    big = root / "shards-10x"
    big.mkdir()
    infos = read_indexes(base)
    linked: dict[str, ShardInfo] = {}
    for r in range(10):
        for name, info in infos.items():
            os.link(base / name, big / f"r{r}-{name}")
            linked[f"r{r}-{name}"] = info
    write_index(big / "index.json", linked)
    # a manifest holding the same items (audio as files), and one holding them 4 times under new ids
    audio = root / "audio"
    audio.mkdir()
    lines = []
    for tar in sorted(base.glob("*.tar")):
        for s in TarReader(str(tar)):
            meta = json.loads(s.members["json"])
            (audio / f"{s.key}.wav").write_bytes(s.members["wav"])
            item = {**meta, "audio": f"audio/{s.key}.wav"}
            if "neg.wav" in s.members:
                (audio / f"{s.key}.neg.wav").write_bytes(s.members["neg.wav"])
                item["negative_audio"] = f"audio/{s.key}.neg.wav"
            lines.append(item)
    out = {"shards-1x": base, "shards-10x": big}
    for k in (1, 4):
        m = root / f"manifest-{k}x.jsonl"
        rows = []
        for r in range(k):
            for it in lines:
                it2 = dict(it, id=f"{it['id']}-r{r}")
                if r:  # linked files: another path, the same bytes
                    for key in ("audio", "negative_audio"):
                        if key in it:
                            dst = root / it[key].replace("audio/", f"audio-r{r}/")
                            dst.parent.mkdir(exist_ok=True)
                            if not dst.exists():
                                os.link(root / it[key], dst)
                            it2[key] = str(dst.relative_to(root))
                rows.append(json.dumps(it2))
        m.write_text("\n".join(rows) + "\n")
        out[f"manifest-{k}x"] = m
    return out


def _gpu_utilisation() -> float | None:
    """The GPU's utilisation in percent now (nvidia-smi), or None without one."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=5)
        return float(out.stdout.split()[0]) if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None


def paper_run(args, root: Path) -> int:
    """The paper preset from shards at the real size (module docstring)."""
    from tclap.data.mixup import MixupConfig, build_mixups
    from tclap.models.export import export_bundle
    from tclap.models.factory import from_config
    from tclap.models.tokenizer import build_tiny_tokenizer

    t0 = time.perf_counter()
    init = export_bundle(from_config("htsat-tiny-roberta", tokenizer=build_tiny_tokenizer(model_max_length=77)),
                         root / "init")
    n = args.paper_items or max(4 * args.batch_size, 64)
    rep = build_mixups(MixupConfig(seconds=10.0, sr=48000, seed=0), root / "shards", n, workers=max(1, args.workers),
                       quiet=True, webdataset=True, items_per_shard=max(1, n // (4 * max(1, args.workers))))
    assert not rep.failed, rep.summary()
    t_data = time.perf_counter() - t0
    cmd = ["--preset", "paper", "--init", str(init), "--train", str(root / "shards"), "--batch-size", str(args.batch_size),
           "--steps", str(args.steps), "--checkpoint-every", str(args.steps), "--log-every", "1", "--workers",
           str(args.workers), "--unpaired", "positive", "--mixed-precision", args.mixed_precision, "--quiet", "--no-export",
           "--resampled"]
    util: list[float] = []
    stop = []

    def sample_gpu() -> None:
        while not stop:
            u = _gpu_utilisation()
            if u is None:
                return
            util.append(u)
            time.sleep(0.5)

    import threading

    th = threading.Thread(target=sample_gpu, daemon=True)
    th.start()
    r = summarise(run_train(cmd, root / "run", args.threads), min(args.warmup, max(0, args.steps - 2)))
    stop.append(1)
    gpu = f"{statistics.median(util):.0f}%" if util else "no GPU"
    print(f"\n`tclap train --preset paper` from shards, htsat-tiny-roberta (random init), 10 s clips at 48 kHz, "
          f"{args.steps} steps, batch {args.batch_size}, {args.workers} workers, --mixed-precision {args.mixed_precision}, "
          f"{args.threads} torch thread(s) ({n} mix-ups built as shards in {t_data:.0f} s)\n")
    print("| samples/s (data loading included) | data wait | peak RSS (MB) | with workers, PSS (MB) | GPU utilisation | setup s |")
    print("|---:|---:|---:|---:|---:|---:|")
    print(f"| {r['rate']:.1f} | {100 * r['wait']:.1f}% | {r['peak_own'] / 2**20:.0f} | {r['peak_all'] / 2**20:.0f} | {gpu} | "
          f"{r['setup_s']:.1f} |")
    print(f"\nlosses: " + ", ".join(f"{x['loss']:.3f}" for x in r["recs"]))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--items", type=int, default=5000, help="the small set (default 5000; 4x in memory, 10x as shards)")
    p.add_argument("--steps", type=int, default=200, help="optimizer steps per run (default 200)")
    p.add_argument("--warmup", type=int, default=5, help="first steps left out of samples/s (default 5)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers of the streamed runs (default 2)")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the training process (default 1)")
    p.add_argument("--seconds", type=float, default=4.0, help="mix-up length (the tiny model's 4 s)")
    p.add_argument("--keep", help="build the data in this folder and keep it (default: a temporary folder)")
    p.add_argument("--paper", action="store_true", help="run the paper preset at the real size instead (docstring)")
    p.add_argument("--paper-items", type=int, help="--paper: mix-ups in the shards (default 4 x batch, at least 64)")
    p.add_argument("--mixed-precision", default="no", choices=("no", "bf16", "fp16", "auto"), help="--paper only")
    args = p.parse_args(argv)
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_stream-"))
    root.mkdir(parents=True, exist_ok=True)
    if args.paper:
        try:
            return paper_run(args, root)
        finally:
            if not args.keep:
                shutil.rmtree(root, ignore_errors=True)
    try:
        t0 = time.perf_counter()
        per_tar = max(8, min(500, args.items // 10))
        data = build_data(root / "data", args.items, per_tar, args.seconds, workers=2)
        t_data = time.perf_counter() - t0
        common = ["--preset", "tiny", "--batch-size", str(args.batch_size), "--steps", str(args.steps), "--log-every", "1",
                  "--checkpoint-every", str(args.steps), "--quiet", "--no-export"]
        stream = ["--workers", str(args.workers)]
        runs = [
            (f"in-memory {args.items}", args.items, ["--train", str(data["manifest-1x"])]),
            (f"in-memory {4 * args.items}", 4 * args.items, ["--train", str(data["manifest-4x"])]),
            (f"shards {args.items}", args.items, ["--train", str(data["shards-1x"]), *stream]),
            (f"shards {10 * args.items}", 10 * args.items, ["--train", str(data["shards-10x"]), *stream]),
            ("bank:builtin (endless, on the fly)", None, ["--train", "bank:builtin", "--seconds", str(args.seconds), *stream]),
        ]
        results = []
        for name, n, extra in runs:
            if name.startswith("shards"):
                warm_page_cache(Path(extra[1]))
            r = summarise(run_train(common + extra, root / "runs" / name.split()[0].replace(":", "-") / str(n), args.threads),
                          args.warmup)
            results.append((name, n, r))
            print(f"  {name}: peak RSS {r['peak_own'] / 2**20:.0f} MB ({r['peak_all'] / 2**20:.0f} MB PSS with workers), "
                  f"{r['rate']:.1f} samples/s, data wait {100 * r['wait']:.1f}%", file=sys.stderr)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    base = results[0][2]
    m1, m4 = results[0][2]["peak_all"], results[1][2]["peak_all"]
    slope = (m4 - m1) / (3 * args.items)
    extrap = m1 + slope * 9 * args.items
    print(f"\n`tclap train --preset tiny --batch-size {args.batch_size}`, {args.steps} steps, {args.workers} workers for "
          f"streamed sources, {args.threads} torch thread(s); {os.cpu_count()} CPU(s); data built in {t_data:.0f} s\n")
    print("| source | items | peak RSS (MB) | with workers, PSS (MB) | memory vs in-memory | samples/s | vs in-memory | "
          "data wait | setup s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, n, r in results:
        print(f"| {name} | {n if n else 'endless'} | {r['peak_own'] / 2**20:.0f} | {r['peak_all'] / 2**20:.0f} | "
              f"{r['peak_all'] / base['peak_all']:.2f}x | {r['rate']:.1f} | {r['rate'] / base['rate']:.2f}x | "
              f"{100 * r['wait']:.1f}% | {r['setup_s']:.1f} |")
    print(f"| in-memory {10 * args.items} (extrapolated from the two above) | {10 * args.items} | - | {extrap / 2**20:.0f} | "
          f"{extrap / base['peak_all']:.2f}x | - | - | - | - |")
    streamed = [r["peak_all"] for name, _, r in results if not name.startswith("in-memory")]
    spread = max(streamed) / min(streamed) - 1
    shard_wait = max(r["wait"] for name, _, r in results if name.startswith("shards"))
    print(f"\nstreaming memory (with workers) spread across {args.items} / {10 * args.items} / endless: {100 * spread:.1f}% "
          f"(goal <= 10%: {'met' if spread <= 0.10 else 'NOT met'}); in memory grows {slope * 1000 / 2**20:.1f} MB per "
          f"1000 items. Data wait from shards: {100 * shard_wait:.1f}% of step time (goal < 5%: "
          f"{'met' if shard_wait < 0.05 else 'NOT met'}).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
