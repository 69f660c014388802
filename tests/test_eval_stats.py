"""Wilson intervals, the exact McNemar test and the paired order claim, against hand-worked numbers."""

import math

import pytest

from basekit.errors import UserError
from eval_gen.stats import mcnemar_exact, pair_outcomes, paired_order_claim, wilson_interval


def _pairs(both: int, only_a: int, only_b: int, neither: int) -> tuple[list[bool], list[bool]]:
    a = [True] * both + [True] * only_a + [False] * only_b + [False] * neither
    b = [True] * both + [False] * only_a + [True] * only_b + [False] * neither
    return a, b


def _two_sided_binomial(k: int, n: int) -> float:
    """Brute force: the probability of an outcome at most as likely as ``k`` under Binomial(n, 1/2)."""
    probs = [math.comb(n, i) / 2**n for i in range(n + 1)]
    return min(1.0, sum(p for p in probs if p <= probs[k] * (1 + 1e-12)))


def test_mcnemar_hand_worked_case():
    # 10 pairs won by A, 2 by B: p = 2 * (C(12,0) + C(12,1) + C(12,2)) / 2^12 = 2 * 79 / 4096.
    a, b = _pairs(both=7, only_a=10, only_b=2, neither=5)
    r = mcnemar_exact(a, b)
    assert (r.n_pairs, r.both, r.only_a, r.only_b, r.neither) == (24, 7, 10, 2, 5)
    assert r.p_value == pytest.approx(158 / 4096, rel=1e-12)
    # The concordant pairs do not change the test; swapping the systems does not change p.
    assert mcnemar_exact(*_pairs(0, 10, 2, 0)).p_value == pytest.approx(158 / 4096, rel=1e-12)
    assert mcnemar_exact(b, a).p_value == pytest.approx(r.p_value, rel=1e-12)
    # 5 to 0: p = 2 / 2^5; 3 to 3: p = 1; no discordant pair: p = 1.
    assert mcnemar_exact(*_pairs(1, 5, 0, 1)).p_value == pytest.approx(2 / 32, rel=1e-12)
    assert mcnemar_exact(*_pairs(4, 3, 3, 4)).p_value == pytest.approx(1.0)
    assert mcnemar_exact(*_pairs(4, 0, 0, 4)).p_value == 1.0


@pytest.mark.parametrize("only_a,only_b", [(30, 8), (41, 17), (9, 25), (60, 40)])
def test_mcnemar_matches_brute_force_binomial(only_a, only_b):
    r = mcnemar_exact(*_pairs(100, only_a, only_b, 50))
    assert r.p_value == pytest.approx(_two_sided_binomial(only_a, only_a + only_b), rel=1e-9)


def test_mcnemar_refuses_unpaired_lengths():
    with pytest.raises(UserError, match="pair them"):
        mcnemar_exact([True, False], [True])


def test_wilson_hand_worked_case():
    # 8 of 10 at 95%: centre (0.8 + z²/20) / (1 + z²/10), half-width z·sqrt(0.016 + z²/400) / (1 + z²/10).
    z = 1.959963984540054
    d = 1 + z * z / 10
    centre, half = (0.8 + z * z / 20) / d, z * math.sqrt(0.8 * 0.2 / 10 + z * z / 400) / d
    lo, hi = wilson_interval(8, 10)
    assert (lo, hi) == pytest.approx((centre - half, centre + half), abs=1e-12)
    assert (round(lo, 3), round(hi, 3)) == (0.490, 0.943)  # the textbook value
    assert wilson_interval(0, 20)[0] == 0.0 and wilson_interval(20, 20)[1] == 1.0
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
    with pytest.raises(UserError):
        wilson_interval(5, 4)


def test_pairing_is_by_key_and_unpaired_keys_are_counted():
    a = {(0, "p1"): True, (0, "p2"): False, (1, "p1"): True, (1, "p9"): True}
    b = {(0, "p1"): False, (0, "p2"): False, (1, "p1"): True, (2, "p1"): False}
    keys, xa, xb = pair_outcomes(a, b)
    assert keys == [(0, "p1"), (0, "p2"), (1, "p1")]
    assert xa == [True, False, True] and xb == [False, False, True]
    r = paired_order_claim(a, b, min_pairs=1)
    assert r["unpaired"] == {"only_in_a": 1, "only_in_b": 1} and r["n_pairs"] == 3


def _claim(both, only_a, only_b, neither, **kw):
    a, b = _pairs(both, only_a, only_b, neither)
    return paired_order_claim(dict(enumerate(a)), dict(enumerate(b)), **kw)


def test_order_claim_verdicts():
    r = _claim(150, 40, 10, 200)  # 400 pairs, A wins 40 of 50 discordant pairs
    assert r["verdict"] == "yes" and r["n_pairs"] == 400
    assert r["p_value"] == pytest.approx(_two_sided_binomial(40, 50), rel=1e-9) and r["p_value"] < 0.01
    assert r["a"]["correct"] == 190 and r["b"]["correct"] == 160
    assert r["a"]["wilson"] == pytest.approx(list(wilson_interval(190, 400)))
    assert r["b"]["wilson"] == pytest.approx(list(wilson_interval(160, 400)))

    few = _claim(150, 40, 10, 199)  # the same effect over 399 pairs is not enough
    assert few["verdict"] == "not shown" and "too few pairs" in few["reason"]

    backwards = _claim(150, 10, 40, 200)
    assert backwards["verdict"] == "not shown" and "wrong direction" in backwards["reason"]

    weak = _claim(150, 30, 20, 200)  # p ≈ 0.2
    assert weak["verdict"] == "not shown" and "not below 0.01" in weak["reason"]
    assert weak["p_value"] == pytest.approx(_two_sided_binomial(30, 50), rel=1e-9)
