"""eval_gen.kl against torch's kl_div (the AudioLDM formula) and hand-computed Bernoulli KL."""

import numpy as np
import pytest
import torch

from eval_gen.kl import kl_bernoulli, kl_softmax, pair_by_stem
from basekit.errors import UserError


def test_kl_softmax_equals_audioldm_eval_formula():
    rng = np.random.default_rng(0)
    gen, ref = rng.standard_normal((7, 11)) * 3, rng.standard_normal((7, 11)) * 3
    g, r = torch.tensor(gen), torch.tensor(ref)
    expected = torch.nn.functional.kl_div((g.softmax(1) + 1e-6).log(), r.softmax(1), reduction="sum") / len(g)
    assert kl_softmax(gen, ref) == pytest.approx(float(expected), rel=1e-9)


def test_kl_softmax_hand_case_and_identity():
    # p = softmax(ref) = [0.5, 0.5] (equal logits); q = softmax(gen) = [0.8, 0.2] (log-odds log 4).
    ref = np.array([[0.0, 0.0]])
    gen = np.array([[np.log(4.0), 0.0]])
    by_hand = 0.5 * np.log(0.5 / (0.8 + 1e-6)) + 0.5 * np.log(0.5 / (0.2 + 1e-6))
    assert kl_softmax(gen, ref) == pytest.approx(by_hand, rel=1e-9)
    x = np.random.default_rng(1).standard_normal((5, 9))
    assert abs(kl_softmax(x, x)) < 1e-5  # only the 1e-6 eps inside the log remains


def test_kl_bernoulli_hand_case_and_properties():
    p, q = 0.7, 0.2
    logit = lambda v: np.log(v / (1 - v))  # noqa: E731
    by_hand = p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))
    ref = np.array([[logit(p), logit(0.5)]])
    gen = np.array([[logit(q), logit(0.5)]])
    assert kl_bernoulli(gen, ref) == pytest.approx(by_hand, rel=1e-6)
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((6, 20)), rng.standard_normal((6, 20))
    assert kl_bernoulli(a, a) == pytest.approx(0.0, abs=1e-12)
    assert kl_bernoulli(a, b) > 0


def test_pair_by_stem_lists_what_is_missing():
    pairs = pair_by_stem(["g/b.wav", "g/a.wav"], ["r/a.flac", "r/b.wav"])
    assert pairs == [(1, 0), (0, 1)]
    with pytest.raises(UserError, match=r"1 generated clips have no reference.*c.*1 references have no generated.*d"):
        pair_by_stem(["a.wav", "c.wav"], ["a.wav", "d.wav"])


def test_shape_mismatch_is_user_error():
    with pytest.raises(UserError, match="equal shape"):
        kl_softmax(np.zeros((3, 4)), np.zeros((3, 5)))
