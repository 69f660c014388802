"""Benchmark the torch mel front ends against their references on the same clips in the same run.

* ``ClapMelFrontEnd`` vs ``transformers.ClapFeatureExtractor(truncation="rand_trunc")`` on 10 s, 48 kHz
  clips (goal: >= 4x clips/s on CPU, max abs difference <= 1e-3 dB).
* ``AudioLDMMelFrontEnd`` vs a vectorised numpy float64 TacotronSTFT mel (reflect pad, periodic Hann,
  |rfft|, Slaney mel from ``transformers.audio_utils.mel_filter_bank``, log clamp 1e-5) on 10 s, 16 kHz clips.

Each timing is the median of ``--repeats`` runs over one batch of ``--batch`` clips (after one warm-up).
Torch runs single-threaded by default (``--threads 1``), like the numpy baselines: a per-core comparison
that also stays meaningful on a shared, oversubscribed machine.
Prints a Markdown table. ``--quick`` (8 clips, 2 repeats) finishes in well under a minute.

    python benchmarks/bench_frontend.py [--quick] [--batch 32] [--repeats 3] [--threads 1] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import numpy as np
import torch


def make_clips(n: int, sr: int, seconds: float, seed: int = 0) -> np.ndarray:
    """``[n, T]`` float32 clips: noise, tones, chirps and mixes with silent gaps (varied spectra)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    clips = []
    for i in range(n):
        kind = i % 4
        if kind == 0:
            x = 0.1 * rng.standard_normal(t.size)
        elif kind == 1:
            x = 0.5 * np.sin(2 * np.pi * rng.uniform(100, 4000) * t)
        elif kind == 2:
            f0, f1 = rng.uniform(100, 1000), rng.uniform(2000, 7000)
            x = 0.4 * np.sin(2 * np.pi * (f0 + (f1 - f0) * t / (2 * seconds)) * t)
        else:
            gate = (np.sin(2 * np.pi * 0.3 * t + rng.uniform(0, 6)) > 0).astype(float)
            x = gate * (0.2 * rng.standard_normal(t.size) + 0.3 * np.sin(2 * np.pi * 600 * t))
        clips.append(x.astype(np.float32))
    return np.stack(clips)


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    """Median seconds over ``repeats`` calls after one warm-up call; returns (seconds, last result)."""
    out = fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def numpy_audioldm_mel(batch: np.ndarray, sr=16000, n_fft=1024, hop=160, n_mels=64, fmax=8000.0) -> np.ndarray:
    """Vectorised numpy float64 reference of AudioLDM's log-mel: ``[B, T] -> [B, T // hop, n_mels]``."""
    from transformers.audio_utils import mel_filter_bank

    fb = mel_filter_bank(n_fft // 2 + 1, n_mels, 0.0, fmax, sr, norm="slaney", mel_scale="slaney")
    win = np.hanning(n_fft + 1)[:-1]
    out = []
    for x in batch.astype(np.float64):
        xp = np.pad(x, (n_fft // 2, n_fft // 2), mode="reflect")
        frames = np.lib.stride_tricks.sliding_window_view(xp, n_fft)[::hop]
        mag = np.abs(np.fft.rfft(frames * win, axis=1))
        out.append(np.log(np.maximum(mag @ fb, 1e-5))[: len(x) // hop])
    return np.stack(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="8 clips, 2 repeats")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument(
        "--threads", type=int, default=1,
        help="torch intra-op threads (default 1: the baseline is single-threaded numpy, so this is a per-core "
        "comparison; 0 keeps torch's default)",
    )
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    if args.quick:
        args.batch, args.repeats = 8, 2
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    device = torch.device(args.device)

    from transformers import ClapFeatureExtractor

    from audioldm_cond.mel import AudioLDMMelFrontEnd
    from tclap.features import ClapMelFrontEnd

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    rows = []

    # ---- CLAP: 48 kHz
    clips48 = make_clips(args.batch, 48000, args.seconds)
    fe = ClapFeatureExtractor(frequency_min=50, frequency_max=14000, truncation="rand_trunc", padding="repeatpad")
    clip_list = list(clips48)
    t_ref, ref = timed(lambda: fe(clip_list, sampling_rate=48000, return_tensors="np").input_features, args.repeats)
    x48 = torch.from_numpy(clips48).to(device)
    for label, dtype in (("float64 STFT (default)", torch.float64), ("float32 STFT", torch.float32)):
        front = ClapMelFrontEnd.from_feature_extractor(fe, dtype=dtype).to(device)

        def run_clap(front=front):
            with torch.inference_mode():
                y = front(x48)
            sync()
            return y

        t_ours, ours = timed(run_clap, args.repeats)
        diff = float(np.abs(ours.cpu().numpy() - ref).max())
        rows.append(("CLAP", f"ClapMelFrontEnd, {label}", "ClapFeatureExtractor (numpy)", args.batch / t_ours,
                     args.batch / t_ref, t_ref / t_ours, f"{diff:.2e} dB"))

    # ---- AudioLDM: 16 kHz
    clips16 = make_clips(args.batch, 16000, args.seconds, seed=1)
    t_np, ref16 = timed(lambda: numpy_audioldm_mel(clips16), args.repeats)
    x16 = torch.from_numpy(clips16).to(device)
    ldm = AudioLDMMelFrontEnd().to(device)

    def run_ldm():
        with torch.inference_mode():
            y = ldm(x16)
        sync()
        return y

    t_ldm, out16 = timed(run_ldm, args.repeats)
    diff16 = float(np.abs(out16[:, 0].cpu().numpy() - ref16).max())
    rows.append(("AudioLDM", "AudioLDMMelFrontEnd, float32", "numpy float64 reference", args.batch / t_ldm,
                 args.batch / t_np, t_np / t_ldm, f"{diff16:.2e} (log)"))

    print(f"\nFront-end throughput: {args.batch} clips x {args.seconds:g} s, median of {args.repeats}, "
          f"device {device}, torch threads {threads}\n")
    print("| front end | ours | baseline | ours clips/s | baseline clips/s | speed-up | max abs diff |")
    print("|---|---|---|---:|---:|---:|---:|")
    for name, ours_name, base_name, r_ours, r_base, ratio, diff in rows:
        print(f"| {name} | {ours_name} | {base_name} | {r_ours:.1f} | {r_base:.1f} | {ratio:.2f}x | {diff} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
