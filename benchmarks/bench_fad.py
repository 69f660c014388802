"""FAD speed: eval_gen.metrics.frechet_distance (symmetric eigendecompositions) vs the scipy ``sqrtm`` route.

Baseline: the pytorch-fid / frechet-audio-distance computation, ``scipy.linalg.sqrtm(S1 @ S2)`` with the
covariances and means computed the same way (statistics time is excluded from both; it is shown separately).
Also times KAD (unbiased RBF MMD², reference-median bandwidth). Prints Markdown tables.

    python benchmarks/bench_fad.py            # d = 128, 512, 2048 at N = 5000
    python benchmarks/bench_fad.py --quick    # d = 128, 512 at N = 1000
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import scipy.linalg

from eval_gen.metrics import frechet_distance_from_stats, gaussian_stats, kernel_audio_distance


def scipy_fd(mu1, s1, mu2, s2) -> float:
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def best_of(fn, repeats: int) -> tuple[float, float]:
    best, val = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        val = fn()
        best = min(best, time.perf_counter() - t)
    return best, val


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    p.add_argument("--repeats", type=int, default=2)
    a = p.parse_args(argv)
    dims, n = ((128, 512), 1000) if a.quick else ((128, 512, 2048), 5000)
    rng = np.random.default_rng(0)
    print(f"## FAD, N = {n} per set (best of {a.repeats})\n")
    print("| d | stats (s) | scipy sqrtm (s) | ours eigh (s) | speed-up | |ours - scipy| / scipy |")
    print("|---|---|---|---|---|---|")
    kad_rows = []
    for d in dims:
        mix = rng.standard_normal((d, d)) / np.sqrt(d)
        x = rng.standard_normal((n, d)) @ (np.eye(d) + mix)
        y = rng.standard_normal((n, d)) @ (np.eye(d) + 0.5 * mix) + 0.1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t_stats, (sx, sy) = best_of(lambda: (gaussian_stats(x), gaussian_stats(y)), 1)
        t_ref, v_ref = best_of(lambda: scipy_fd(sx.mu, sx.cov, sy.mu, sy.cov), a.repeats)
        t_ours, v_ours = best_of(lambda: frechet_distance_from_stats(sx.mu, sx.cov, sy.mu, sy.cov), a.repeats)
        rel = abs(v_ours - v_ref) / abs(v_ref)
        print(f"| {d} | {t_stats:.3f} | {t_ref:.3f} | {t_ours:.3f} | {t_ref / t_ours:.1f}x | {rel:.1e} |")
        t_kad, _ = best_of(lambda: kernel_audio_distance(x, y), 1)
        kad_rows.append((d, t_kad))
    print(f"\n## KAD (unbiased MMD², RBF, reference-median bandwidth), N = {n} per set\n")
    print("| d | KAD time (s) |")
    print("|---|---|")
    for d, t in kad_rows:
        print(f"| {d} | {t:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
