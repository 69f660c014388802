"""Distances between two sets of embeddings: Fréchet (FAD), FAD∞ and the kernel audio distance (KAD).

Pure functions on numpy arrays; all arithmetic in float64. Shapes: an embedding set is ``[N, D]`` (N clips or
frames, D dimensions); Gaussian statistics are ``mu [D]`` and ``cov [D, D]``.

Pitfalls of the usual tools that these functions avoid on purpose:

* ``scipy.linalg.sqrtm(S1 @ S2)`` on a product of two covariances goes complex (and is slow) when the
  covariances are rank-deficient; we use the identity ``tr sqrt(S1 S2) = tr sqrt(S1^½ S2 S1^½)`` where the
  right-hand matrix is symmetric positive semi-definite, so two symmetric eigendecompositions suffice and the
  result is real by construction (round-off eigenvalues, negative or tiny, are set to 0).
* a set with fewer samples than dimensions gives a singular covariance; the distance is still defined but
  strongly biased, so we warn (one line) instead of silently returning a number that cannot be compared.
* dimension mismatches and empty or non-finite sets are user errors, never a ``-1`` score.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np

from basekit.errors import UserError

__all__ = [
    "GaussianStats",
    "gaussian_stats",
    "frechet_distance",
    "frechet_distance_from_stats",
    "FadInfResult",
    "fad_inf",
    "median_pairwise_distance",
    "kernel_audio_distance",
]


@dataclass(frozen=True)
class GaussianStats:
    """Mean ``mu [D]`` and covariance ``cov [D, D]`` of an embedding set of ``n`` samples."""

    mu: np.ndarray
    cov: np.ndarray
    n: int


def _as_set(x: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2:
        raise UserError(f"{name}: expected an embedding set shaped [N, D], got shape {a.shape}")
    if a.shape[0] == 0:
        raise UserError(f"{name}: the embedding set is empty (0 samples); give at least 2 clips")
    if not np.all(np.isfinite(a)):
        raise UserError(f"{name}: the embeddings hold NaN or infinite values (check the audio and the backend)")
    return a


def gaussian_stats(x: np.ndarray, name: str = "set", warn_rank: bool = True) -> GaussianStats:
    """Mean and unbiased covariance (``ddof=1``, as numpy/pytorch-fid) of ``x [N, D]``."""
    a = _as_set(x, name)
    n, d = a.shape
    if n < 2:
        raise UserError(f"{name}: a covariance needs at least 2 samples, got {n}; add clips")
    if warn_rank and n < d:
        warnings.warn(
            f"{name} has {n} samples for {d} dimensions: its covariance is rank-deficient and the Fréchet "
            "distance is biased; use more clips (or frame-level embeddings) or report FAD-inf",
            stacklevel=3,
        )
    mu = a.mean(axis=0)
    c = a - mu
    cov = (c.T @ c) / (n - 1)
    return GaussianStats(mu=mu, cov=cov, n=n)


def _clip_eigs(w: np.ndarray) -> np.ndarray:
    """Zero the eigenvalues that are round-off (below ``d · eps · max``), negatives included.

    A singular covariance has true zero eigenvalues that come out as ±1e-16·‖S‖; their square roots
    (~1e-8 each) would add up to a visible negative bias over many null directions, so they are set to 0,
    the same relative cut-off that ``numpy.linalg.pinv``/``matrix_rank`` use.
    """
    tol = max(float(w.max(initial=0.0)), 0.0) * len(w) * np.finfo(np.float64).eps
    return np.where(w > tol, w, 0.0)


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix via ``eigh`` (round-off eigenvalues set to 0)."""
    w, v = np.linalg.eigh((s + s.T) * 0.5)
    return (v * np.sqrt(_clip_eigs(w))) @ v.T


def _trace_sqrt_product(cov1: np.ndarray, cov2: np.ndarray) -> float:
    """``tr sqrt(S1 S2)`` for symmetric PSD ``S1, S2 [D, D]``, real by construction.

    Fast path: with the Cholesky factor ``S1 = L Lᵀ``, ``Lᵀ S2 L`` is symmetric PSD and similar to ``S2 S1``, so
    its eigenvalues (``eigvalsh``, no eigenvectors) are those of ``S1 S2``. When ``S1`` is singular (N ≤ D)
    the Cholesky fails and ``S1^½`` comes from ``eigh`` instead: ``S1^½ S2 S1^½`` has the same eigenvalues.
    """
    s1 = (cov1 + cov1.T) * 0.5
    try:
        low = np.linalg.cholesky(s1)
    except np.linalg.LinAlgError:
        low = _psd_sqrt(s1)
    m = low.T @ cov2 @ low
    ev = np.linalg.eigvalsh((m + m.T) * 0.5)
    return float(np.sqrt(_clip_eigs(ev)).sum())


def frechet_distance_from_stats(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """Fréchet distance between N(mu1, cov1) and N(mu2, cov2).

    ``||mu1 - mu2||² + tr(S1) + tr(S2) - 2 tr sqrt(S1^½ S2 S1^½)`` with both square roots from symmetric
    eigendecompositions. Real by construction; negative only by round-off (≥ -1e-9 · scale in practice).
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    cov1, cov2 = np.asarray(cov1, np.float64), np.asarray(cov2, np.float64)
    if mu1.shape != mu2.shape or cov1.shape != cov2.shape or cov1.shape != (mu1.shape[0], mu1.shape[0]):
        raise UserError(
            f"embedding dimensions differ: {mu1.shape[0]} vs {mu2.shape[0]} (score both sets with the same backend)"
        )
    tr_covmean = _trace_sqrt_product(cov1, cov2)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2.0 * tr_covmean)


StatsOrSet = Union[np.ndarray, GaussianStats]


def _stats(x: StatsOrSet, name: str) -> GaussianStats:
    return x if isinstance(x, GaussianStats) else gaussian_stats(x, name=name)


def frechet_distance(x: StatsOrSet, y: StatsOrSet) -> float:
    """Fréchet (audio) distance between two embedding sets ``x [N, D]``, ``y [M, D]`` (or their stats).

    Warns when a set has fewer samples than dimensions. Raises :class:`UserError` on a dimension mismatch.
    """
    sx, sy = _stats(x, "generated set"), _stats(y, "reference set")
    if sx.mu.shape != sy.mu.shape:
        raise UserError(
            f"embedding dimensions differ: generated {sx.mu.shape[0]} vs reference {sy.mu.shape[0]} "
            "(score both sets with the same backend and settings)"
        )
    return frechet_distance_from_stats(sx.mu, sx.cov, sy.mu, sy.cov)


@dataclass(frozen=True)
class FadInfResult:
    """FAD∞: the intercept of a linear fit of FAD against 1/N; ``points`` are ``(N, FAD)`` pairs."""

    value: float
    slope: float
    r2: float
    points: tuple[tuple[int, float], ...]


def fad_inf(
    x: np.ndarray,
    y: StatsOrSet,
    steps: int = 25,
    min_n: int | None = None,
    seed: int = 0,
) -> FadInfResult:
    """FAD extrapolated to an infinite evaluation set, as fadtk (Gui et al., ICASSP 2024) computes it.

    For ``steps`` sizes ``N_i`` evenly spaced in ``[min_n, len(x)]``, draw ``N_i`` rows of the evaluated set
    ``x [N, D]`` with replacement (seeded), compute FAD against the full reference statistics of ``y``,
    fit ``FAD = slope / N + intercept`` by least squares and return the intercept with the fit's R².
    ``min_n`` defaults to fadtk's 500, lowered to ``N // 2`` for small sets.
    """
    a = _as_set(x, "generated set")
    ref = _stats(y, "reference set")
    n = a.shape[0]
    if a.shape[1] != ref.mu.shape[0]:
        raise UserError(f"embedding dimensions differ: generated {a.shape[1]} vs reference {ref.mu.shape[0]}")
    if min_n is None:
        min_n = min(500, n // 2)
    min_n = max(int(min_n), 2)
    if n <= min_n or steps < 2:
        raise UserError(
            f"FAD-inf needs more than min_n={min_n} generated embeddings and at least 2 steps, got {n} and "
            f"{steps}; add clips or lower min_n"
        )
    rng = np.random.default_rng(seed)
    ns = [int(v) for v in np.linspace(min_n, n, steps)]
    pts = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small subsets are rank-deficient by design here
        for k in ns:
            idx = rng.choice(n, size=k, replace=True)
            s = gaussian_stats(a[idx], warn_rank=False)
            pts.append((k, frechet_distance_from_stats(s.mu, s.cov, ref.mu, ref.cov)))
    xs = 1.0 / np.asarray(ns, dtype=np.float64)
    ys = np.asarray([p[1] for p in pts])
    slope, intercept = np.polyfit(xs, ys, 1)
    ss_res = float(np.sum((ys - (slope * xs + intercept)) ** 2))
    ss_tot = float(np.sum((ys - ys.mean()) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
    return FadInfResult(value=float(intercept), slope=float(slope), r2=float(r2), points=tuple(pts))


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances ``[len(a), len(b)]`` (clipped at 0 against round-off)."""
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.clip(d, 0.0, None)


def median_pairwise_distance(y: np.ndarray, max_samples: int = 4000, seed: int = 0) -> float:
    """Median Euclidean distance over distinct pairs of rows of ``y [M, D]``.

    Sets larger than ``max_samples`` use a seeded subset of ``max_samples`` rows (the median of ~8M pairs
    is stable to well below 1%; the full matrix would need M² memory).
    """
    a = _as_set(y, "reference set")
    if a.shape[0] > max_samples:
        a = a[np.sort(np.random.default_rng(seed).choice(a.shape[0], size=max_samples, replace=False))]
    iu = np.triu_indices(a.shape[0], k=1)
    return float(np.median(np.sqrt(_sq_dists(a, a)[iu])))


def _kernel_sum(a: np.ndarray, b: np.ndarray | None, gamma: float, block: int = 2048) -> float:
    """``Σ_ij exp(-gamma ||a_i - b_j||²)`` in row blocks (bounded memory).

    ``b=None`` means ``b = a`` with the diagonal left out (the unbiased within-set sum).
    """
    same = b is None
    other = a if same else b
    tot = 0.0
    for s in range(0, a.shape[0], block):
        k = np.exp(-gamma * _sq_dists(a[s : s + block], other))
        if same:
            r = np.arange(k.shape[0])
            k[r, s + r] = 0.0
        tot += float(k.sum())
    return tot


def kernel_audio_distance(
    x: np.ndarray,
    y: np.ndarray,
    bandwidth: float | None = None,
    scale: float = 1.0,
) -> float:
    """Kernel audio distance: the unbiased MMD² between ``x [N, D]`` and ``y [M, D]`` with an RBF kernel.

    ``k(a, b) = exp(-||a - b||² / (2 σ²))``. The bandwidth ``σ`` defaults to the median pairwise distance
    of the *reference* set ``y`` (so it does not move with the system being scored, as in KAD, Chung et al.
    2025). Unbiased estimator (diagonal terms excluded)::

        1/(N(N-1)) Σ_{i≠j} k(x_i, x_j) + 1/(M(M-1)) Σ_{i≠j} k(y_i, y_j) - 2/(NM) Σ_{i,j} k(x_i, y_j)

    It can be slightly negative when the sets match. ``scale`` multiplies the result (kadtk reports ×1000).
    """
    a, b = _as_set(x, "generated set"), _as_set(y, "reference set")
    if a.shape[1] != b.shape[1]:
        raise UserError(f"embedding dimensions differ: generated {a.shape[1]} vs reference {b.shape[1]}")
    n, m = a.shape[0], b.shape[0]
    if n < 2 or m < 2:
        raise UserError(f"KAD needs at least 2 embeddings per set, got {n} generated and {m} reference")
    sigma = median_pairwise_distance(b) if bandwidth is None else float(bandwidth)
    if not sigma > 0:
        raise UserError("KAD bandwidth is 0: every reference embedding is identical (check the reference folder)")
    gamma = 1.0 / (2.0 * sigma * sigma)
    kxx = _kernel_sum(a, None, gamma) / (n * (n - 1))
    kyy = _kernel_sum(b, None, gamma) / (m * (m - 1))
    kxy = _kernel_sum(a, b, gamma) / (n * m)
    return float(scale * (kxx + kyy - 2.0 * kxy))

