"""The trainer: batch mixing, schedule, few-step runs, resume equivalence, 2 processes, bad input."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from tclap.errors import UserError
from tclap.train.config import TrainConfig, parse_mix_ratio, preset
from tclap.train.sampler import POSITIVE, TEMPORAL, MixedBatchSampler


# ---------------------------------------------------------------- sampler (pure)
def test_mix_ratio_is_temporal_share():
    assert parse_mix_ratio("1:4") == pytest.approx(0.2)
    assert parse_mix_ratio("4:1") == pytest.approx(0.8)
    with pytest.raises(UserError, match="mix-ratio"):
        parse_mix_ratio("1-4")


def test_batches_hold_the_ratio_and_are_deterministic():
    s = MixedBatchSampler(n_positive=37, n_temporal=11, batch_size=10, temporal_fraction=0.2, seed=3)
    for step in range(20):
        b = s.batch(step)
        counts = collections.Counter(it.pool for it in b)
        assert counts[TEMPORAL] == 2 and counts[POSITIVE] == 8
    s2 = MixedBatchSampler(37, 11, 10, 0.2, seed=3)
    assert [s2.batch(k) for k in (7, 3, 19)] == [s.batch(k) for k in (7, 3, 19)]  # any order, same batches
    assert s.batch(0) != MixedBatchSampler(37, 11, 10, 0.2, seed=4).batch(0)


def test_each_epoch_visits_every_item_once():
    # 12 temporal items, 3 per step -> steps 0..3 are one epoch, 4..7 the next.
    s = MixedBatchSampler(n_positive=0, n_temporal=12, batch_size=3, temporal_fraction=0.5, seed=0)
    for epoch in range(3):
        seen = [it.index for k in range(4 * epoch, 4 * epoch + 4) for it in s.batch(k)]
        assert sorted(seen) == list(range(12))


def test_shards_cover_the_global_batch():
    s = MixedBatchSampler(5, 5, 8, 0.5, seed=1)
    g = s.batch(2)
    assert MixedBatchSampler.shard(g, 0, 2) + MixedBatchSampler.shard(g, 1, 2) == g
    with pytest.raises(UserError, match="divisible"):
        MixedBatchSampler.shard(g, 0, 3)


def test_presets():
    p = preset("paper")
    assert (p.data.batch_size, p.optim.lr, p.steps, p.optim.warmup_steps, p.loss.lambda_t) == (512, 1e-4, 30000, 10000, 0.5)
    assert p.data.temporal_fraction == pytest.approx(0.2)
    assert TrainConfig.from_dict(p.to_dict()) == p
    with pytest.raises(UserError):
        preset("huge")


def test_lr_schedule():
    from tclap.train.trainer import lr_at

    cfg = preset("paper")
    cfg.steps, cfg.optim.warmup_steps = 100, 10
    assert lr_at(0, cfg) == pytest.approx(1e-5)
    assert lr_at(9, cfg) == pytest.approx(1e-4)
    assert lr_at(50, cfg) == pytest.approx(1e-4)
    cfg.optim.schedule, cfg.optim.min_lr_ratio = "cosine", 0.0
    # half-way through the cosine part: 0.5 * (1 + cos(pi/2)) = 0.5
    assert lr_at(55, cfg) == pytest.approx(0.5e-4)
