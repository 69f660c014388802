"""eval_gen.metrics and eval_gen.stats against independent numpy/scipy references and brute force."""

import warnings

import numpy as np
import pytest
import scipy.linalg

from eval_gen.metrics import (
    fad_inf,
    frechet_distance,
    frechet_distance_from_stats,
    gaussian_stats,
    kernel_audio_distance,
    median_pairwise_distance,
)
from eval_gen.stats import bootstrap_ci
from basekit.errors import UserError


def scipy_fd(x, y):
    """The textbook pytorch-fid computation: scipy sqrtm of the covariance product."""
    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean).real), covmean


def test_frechet_matches_scipy_sqrtm_on_well_conditioned_data():
    rng = np.random.default_rng(0)
    d = 16
    a = rng.standard_normal((d, d))
    x = rng.standard_normal((2000, d)) @ (np.eye(d) + 0.3 * a)
    y = rng.standard_normal((1500, d)) * 1.5 + 0.4
    ref, _ = scipy_fd(x, y)
    assert frechet_distance(x, y) == pytest.approx(ref, rel=1e-6)


def test_frechet_two_gaussians_closed_form():
    # Diagonal covariances: FD = |mu1-mu2|^2 + sum (s1 + s2 - 2 sqrt(s1 s2)) by hand.
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    s1, s2 = np.diag([1.0, 4.0, 9.0]), np.diag([4.0, 1.0, 1.0])
    expected = (1 + 0 + 4) + (1 + 4 - 4) + (4 + 1 - 4) + (9 + 1 - 6)
    assert frechet_distance_from_stats(mu1, s1, mu2, s2) == pytest.approx(expected, abs=1e-12)


def test_rank_deficient_stays_real_nonnegative_and_warns():
    rng = np.random.default_rng(1)
    d, n = 64, 20  # N < d: both covariances singular
    x = rng.standard_normal((n, d))
    y = rng.standard_normal((n, d)) + 0.1
    _, covmean = scipy_fd(x, y)
    assert np.iscomplexobj(covmean)  # the naive route goes complex here ...
    with pytest.warns(UserWarning, match="fewer|samples for 64 dimensions"):
        v = frechet_distance(x, y)
    assert isinstance(v, float) and np.isfinite(v) and v >= -1e-9  # ... ours does not
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-9)
        assert frechet_distance(x, x) >= -1e-9


def test_fad_of_a_set_against_itself_is_zero_and_grows_with_noise():
    rng = np.random.default_rng(2)
    ref = rng.standard_normal((3000, 8)) @ rng.standard_normal((8, 8))
    assert abs(frechet_distance(ref, ref)) < 1e-8
    noise = rng.standard_normal(ref.shape)
    vals = [frechet_distance(ref + s * noise, ref) for s in (0.0, 0.1, 0.3, 0.6, 1.0, 2.0)]
    assert all(b > a for a, b in zip(vals, vals[1:])), vals


def test_dimension_mismatch_and_bad_sets_are_user_errors():
    rng = np.random.default_rng(3)
    with pytest.raises(UserError, match="dimensions differ"):
        frechet_distance(rng.standard_normal((10, 4)), rng.standard_normal((10, 5)))
    with pytest.raises(UserError, match="dimensions differ"):
        kernel_audio_distance(rng.standard_normal((10, 4)), rng.standard_normal((10, 5)))
    with pytest.raises(UserError, match="empty"):
        frechet_distance(np.zeros((0, 4)), rng.standard_normal((10, 4)))
    with pytest.raises(UserError, match="NaN"):
        frechet_distance(np.full((5, 2), np.nan), rng.standard_normal((5, 2)))


def brute_kad(x, y, sigma):
    def k(a, b):
        return np.exp(-np.sum((a - b) ** 2) / (2 * sigma**2))

    n, m = len(x), len(y)
    kxx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    kyy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kxy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return kxx + kyy - 2 * kxy


def test_kad_matches_brute_force_double_loop_with_reference_median_bandwidth():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((23, 5)) + 0.5
    y = rng.standard_normal((31, 5))
    dists = [np.linalg.norm(y[i] - y[j]) for i in range(len(y)) for j in range(i + 1, len(y))]
    sigma = float(np.median(dists))
    assert median_pairwise_distance(y) == pytest.approx(sigma, rel=1e-12)
    assert kernel_audio_distance(x, y) == pytest.approx(brute_kad(x, y, sigma), rel=1e-9)
    assert kernel_audio_distance(x, y, bandwidth=0.7, scale=1000) == pytest.approx(
        1000 * brute_kad(x, y, 0.7), rel=1e-9)
    # block-wise summation gives the same result as one block
    from eval_gen import metrics

    assert metrics._kernel_sum(x, y, 0.3, block=4) == pytest.approx(metrics._kernel_sum(x, y, 0.3), rel=1e-12)


def test_kad_bandwidth_comes_from_the_reference_only():
    rng = np.random.default_rng(5)
    y = rng.standard_normal((40, 3))
    x1 = rng.standard_normal((40, 3)) * 5
    sigma = median_pairwise_distance(y)
    assert kernel_audio_distance(x1, y) == pytest.approx(kernel_audio_distance(x1, y, bandwidth=sigma), rel=1e-12)


def test_fad_inf_recovers_the_infinite_sample_distance():
    # gen ~ N(delta, I), reference stats exact N(0, I): FAD(N) ≈ |delta|^2 + c/N, so FAD∞ ≈ |delta|^2.
    rng = np.random.default_rng(6)
    d = 32
    delta = np.full(d, 0.25)
    x = rng.standard_normal((6000, d)) + delta
    from eval_gen.metrics import GaussianStats

    ref = GaussianStats(mu=np.zeros(d), cov=np.eye(d), n=10**9)
    r = fad_inf(x, ref, steps=20, min_n=300, seed=0)
    assert r.value == pytest.approx(float(delta @ delta), abs=0.1)
    assert r.slope > 0 and r.r2 > 0.9
    assert len(r.points) == 20 and r.points[0][0] == 300 and r.points[-1][0] == 6000
    # same seed -> same numbers
    assert fad_inf(x, ref, steps=20, min_n=300, seed=0) == r


def test_gaussian_stats_match_numpy_cov():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((50, 4))
    s = gaussian_stats(x)
    np.testing.assert_allclose(s.cov, np.cov(x, rowvar=False), rtol=1e-12)
    np.testing.assert_allclose(s.mu, x.mean(0), rtol=1e-12)


def test_bootstrap_ci_is_seeded_and_brackets_the_estimate():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((400, 3)) + 0.3
    y = rng.standard_normal((400, 3))
    a = bootstrap_ci(frechet_distance, x, y, n_boot=30, seed=1)
    b = bootstrap_ci(frechet_distance, x, y, n_boot=30, seed=1)
    assert a == b
    est = frechet_distance(x, y)
    assert a.low < est < a.high + a.std  # the FD is biased upward on resamples; the CI lies around it
    assert a.low < a.high
    with pytest.raises(UserError):
        bootstrap_ci(frechet_distance, x, y, n_boot=1)


def test_cholesky_fast_path_equals_the_eigh_route():
    # Independent route: S1^1/2 from numpy eigh, eigenvalues of S1^1/2 S2 S1^1/2.
    rng = np.random.default_rng(9)
    x, y = rng.standard_normal((300, 20)), rng.standard_normal((300, 20)) * 2
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    w, v = np.linalg.eigh(s1)
    h = (v * np.sqrt(w)) @ v.T
    tr = np.sqrt(np.linalg.eigvalsh(h @ s2 @ h)).sum()
    expected = ((x.mean(0) - y.mean(0)) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr
    assert frechet_distance_from_stats(x.mean(0), s1, y.mean(0), s2) == pytest.approx(expected, rel=1e-10)
