"""L_c, L_t and L_train against hand-worked values and a naive per-sample reference (forward and gradient)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from basekit.errors import UserError
from tclap.losses import AudioNegativeLoss, ContrastiveLoss, TClapLoss, TemporalLoss


def _lse(xs):
    m = max(xs)
    return m + math.log(sum(math.exp(x - m) for x in xs))


def test_contrastive_2x2_by_hand():
    # unit vectors: a0 = (1, 0), a1 = (0, 1); t0 = (0.6, 0.8), t1 = (0.8, 0.6)
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    t = torch.tensor([[0.6, 0.8], [0.8, 0.6]])
    s_a, s_t = 2.0, 3.0
    # similarities sim[i][j] = a_i · t_j: [[0.6, 0.8], [0.8, 0.6]]
    sim = [[0.6, 0.8], [0.8, 0.6]]
    a2t = sum(-(s_a * sim[i][i]) + _lse([s_a * sim[i][j] for j in range(2)]) for i in range(2)) / 2
    t2a = sum(-(s_t * sim[j][j]) + _lse([s_t * sim[i][j] for i in range(2)]) for j in range(2)) / 2
    expected = (a2t + t2a) / 2
    # by hand: a2t = -1.2 + log(e^1.2 + e^1.6) = log(1 + e^0.4) = 0.913015...; t2a = log(1 + e^0.6) = 1.037475...
    assert a2t == pytest.approx(math.log(1 + math.exp(0.4)))
    assert t2a == pytest.approx(math.log(1 + math.exp(0.6)))
    out = ContrastiveLoss()(a, t, torch.tensor(math.log(s_a)), torch.tensor(math.log(s_t)))
    assert out["contrastive_loss"].item() == pytest.approx(expected, abs=1e-6)
    # one scale for both directions when logit_scale_t is None (LAION's ClipLoss)
    one = ContrastiveLoss()(a, t, torch.tensor(math.log(s_a)))["contrastive_loss"].item()
    assert one == pytest.approx(math.log(1 + math.exp(0.4)), abs=1e-6)


def test_audio_negative_2_samples_by_hand():
    # caption t_i should prefer its clip a_i over the order-swapped clip a_i⁻
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    a = torch.tensor([[0.6, 0.8], [0.0, 1.0]])  # a·t = 0.6, 1.0
    a_neg = torch.tensor([[0.8, 0.6], [1.0, 0.0]])  # a⁻·t = 0.8, 0.0
    s = 4.0
    l0 = -math.log(math.exp(s * 0.6) / (math.exp(s * 0.6) + math.exp(s * 0.8)))
    l1 = -math.log(math.exp(s * 1.0) / (math.exp(s * 1.0) + math.exp(s * 0.0)))
    out = AudioNegativeLoss()(a, t, a_neg, torch.tensor(math.log(s)))
    assert out["audio_negative_loss"].item() == pytest.approx((l0 + l1) / 2, abs=1e-6)
    # gradient of the mean w.r.t. a_0: d/da0 softplus(s(a0⁻·t0 - a0·t0)) / 2 = -s·σ(s(0.8 - 0.6))·t0 / 2
    a.requires_grad_(True)
    AudioNegativeLoss()(a, t, a_neg, torch.tensor(math.log(s)))["audio_negative_loss"].backward()
    sig = 1 / (1 + math.exp(-s * 0.2))
    torch.testing.assert_close(a.grad[0], torch.tensor([-s * sig / 2, 0.0]), rtol=0, atol=1e-6)
    with pytest.raises(UserError, match="audio negative"):
        AudioNegativeLoss()(a, t, a_neg[:1], torch.tensor(0.0))


def test_temporal_2_samples_by_hand():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    pos = torch.tensor([[0.6, 0.8], [0.0, 1.0]])  # a·t+ = 0.6, 1.0
    neg = torch.tensor([[0.8, 0.6], [1.0, 0.0]])  # a·t- = 0.8, 0.0
    s = 5.0
    l0 = -math.log(math.exp(s * 0.6) / (math.exp(s * 0.6) + math.exp(s * 0.8)))
    l1 = -math.log(math.exp(s * 1.0) / (math.exp(s * 1.0) + math.exp(s * 0.0)))
    mask = torch.tensor([True, True])
    out = TemporalLoss()(a, pos, neg, mask, torch.tensor(math.log(s)))
    assert out["temporal_loss"].item() == pytest.approx((l0 + l1) / 2, abs=1e-6)
    assert out["n_temporal"].item() == 2
    # only sample 0 has a negative: the mean is over samples with negatives
    out = TemporalLoss()(a, pos, neg, torch.tensor([True, False]), torch.tensor(math.log(s)))
    assert out["temporal_loss"].item() == pytest.approx(l0, abs=1e-6)
    assert out["n_temporal"].item() == 1
    # paper's plain dot products
    p0 = -math.log(math.exp(0.6) / (math.exp(0.6) + math.exp(0.8)))
    p1 = -math.log(math.exp(1.0) / (math.exp(1.0) + math.exp(0.0)))
    out = TemporalLoss(use_logit_scale=False)(a, pos, neg, mask)
    assert out["temporal_loss"].item() == pytest.approx((p0 + p1) / 2, abs=1e-6)


def _naive_tclap(a, t, n, mask, ls_a, ls_t, lam):
    """Per-sample loops, written from the paper's formulas (no cross_entropy, no softplus)."""
    b = a.shape[0]
    s_a, s_t = ls_a.exp(), ls_t.exp()
    a2t = []
    t2a = []
    for i in range(b):
        logits = torch.stack([s_a * torch.dot(a[i], t[j]) for j in range(b)])
        a2t.append(-(logits[i] - torch.logsumexp(logits, 0)))
        logits = torch.stack([s_t * torch.dot(t[i], a[j]) for j in range(b)])
        t2a.append(-(logits[i] - torch.logsumexp(logits, 0)))
    lc = (torch.stack(a2t).mean() + torch.stack(t2a).mean()) / 2
    terms = []
    for i in range(b):
        if mask[i]:
            ep = torch.exp(s_a * torch.dot(a[i], t[i]))
            en = torch.exp(s_a * torch.dot(a[i], n[i]))
            terms.append(-torch.log(ep / (ep + en)))
    lt = torch.stack(terms).mean() if terms else torch.zeros(())
    return lc + lam * lt, lc, lt


def test_fast_path_matches_naive_loop_forward_and_gradient():
    g = torch.Generator().manual_seed(0)
    b, d = 7, 5
    a0 = torch.randn(b, d, generator=g, dtype=torch.float64)
    t0 = torch.randn(b, d, generator=g, dtype=torch.float64)
    n0 = torch.randn(b, d, generator=g, dtype=torch.float64)
    mask = torch.tensor([1, 0, 1, 1, 0, 0, 1], dtype=torch.bool)

    def run(fn):
        a, t, n = (x.clone().requires_grad_() for x in (a0, t0, n0))
        ls_a = torch.tensor(math.log(10.0), dtype=torch.float64, requires_grad=True)
        ls_t = torch.tensor(math.log(7.0), dtype=torch.float64, requires_grad=True)
        fa, ft, fn_ = (F.normalize(x, dim=-1) for x in (a, t, n))
        loss, lc, lt = fn(fa, ft, fn_, ls_a, ls_t)
        grads = torch.autograd.grad(loss, [a, t, n, ls_a, ls_t])
        return loss.detach(), lc.detach(), lt.detach(), grads

    def fast(fa, ft, fn_, ls_a, ls_t):
        out = TClapLoss(lambda_t=0.5)(fa, ft, ls_a, ls_t, fn_, mask)
        assert out["n_temporal"].item() == 4
        return out["loss"], out["contrastive_loss"], out["temporal_loss"]

    def naive(fa, ft, fn_, ls_a, ls_t):
        return _naive_tclap(fa, ft, fn_, mask, ls_a, ls_t, 0.5)

    lf, cf, tf, gf = run(fast)
    ln, cn, tn, gn = run(naive)
    assert torch.allclose(lf, ln, atol=1e-10) and torch.allclose(cf, cn, atol=1e-10) and torch.allclose(tf, tn, atol=1e-10)
    for x, y in zip(gf, gn):
        assert torch.allclose(x, y, atol=1e-10)
    # negative rows' gradient is zero where there is no negative
    assert torch.all(gf[2][~mask] == 0)


def test_no_negatives_gives_zero_with_defined_gradient():
    a = F.normalize(torch.randn(3, 4), dim=-1).requires_grad_()
    t = F.normalize(torch.randn(3, 4), dim=-1)
    ls = torch.tensor(2.0, requires_grad=True)
    out = TClapLoss()(a, t, ls, ls, torch.zeros(3, 4), torch.zeros(3, dtype=torch.bool))
    assert out["temporal_loss"].item() == 0.0 and out["n_temporal"].item() == 0
    assert out["loss"].item() == pytest.approx(out["contrastive_loss"].item())
    lt = TemporalLoss()(a, t, torch.zeros(3, 4), torch.zeros(3, dtype=torch.bool), ls)["temporal_loss"]
    ga, gs = torch.autograd.grad(lt, [a, ls])
    assert torch.all(ga == 0) and gs.item() == 0.0
    # TClapLoss without negatives at all equals L_c
    plain = TClapLoss()(a, t, ls, ls)
    assert plain["loss"].item() == pytest.approx(ContrastiveLoss()(a, t, ls, ls)["contrastive_loss"].item())


def test_bad_shapes_are_user_errors():
    a = torch.randn(3, 4)
    with pytest.raises(UserError, match="same B"):
        ContrastiveLoss()(a, torch.randn(2, 4), torch.tensor(1.0))
    with pytest.raises(UserError, match="has_negative"):
        TemporalLoss()(a, a, a, torch.ones(2, dtype=torch.bool), torch.tensor(1.0))
    with pytest.raises(UserError, match="lambda_t"):
        TClapLoss(lambda_t=-1)
