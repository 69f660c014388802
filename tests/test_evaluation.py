"""Evaluation metrics against hand-worked cases and brute-force loops; the runner and CLI end to end."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from basekit.errors import UserError
from tclap.evaluation import metrics as M


def _unit(x):
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


# ---------------------------------------------------------------- T-Classify, hand-worked
def test_t_classify_hand_worked():
    # 2-D embeddings, angles chosen by hand.
    audio = _unit([[1, 0], [0, 1], [1, 1]])
    pos = _unit([[1, 0.1], [1, 0], [1, 1]])    # sims: 0.995, 0, 1
    neg = _unit([[0, 1], [0, 1], [1, 1]])      # sims: 0, 1, 1   -> right, wrong, tie(wrong)
    assert M.t_classify_t2a(audio, pos, neg) == pytest.approx(1 / 3)


def test_t_classify_a2t_hand_worked():
    text = _unit([[1, 0], [0, 1]])
    pos_audio = _unit([[1, 0], [1, 0]])   # sims 1, 0
    neg_audio = _unit([[0, 1], [1, 1]])   # sims 0, 0.707 -> right, wrong
    assert M.t_classify_a2t(text, pos_audio, neg_audio) == pytest.approx(0.5)


def test_audio_blind_uses_the_mean_audio():
    rng = np.random.default_rng(0)
    a, p, n = (_unit(rng.normal(size=(20, 8))) for _ in range(3))
    mean = a.mean(axis=0)
    want = np.mean([float(mean @ p[i]) > float(mean @ n[i]) for i in range(20)])
    assert M.t_classify_t2a_audio_blind(a, p, n) == pytest.approx(want)
    # A constant audio set is exactly the audio-blind case.
    const = np.repeat(a[:1], 20, axis=0)
    assert M.t_classify_t2a(const, p, n) == M.t_classify_t2a_audio_blind(const, p, n)


def test_t_classify_brute_force():
    rng = np.random.default_rng(1)
    a, p, n = (_unit(rng.normal(size=(50, 6))) for _ in range(3))
    right = 0
    for i in range(50):
        sp = sum(a[i][d] * p[i][d] for d in range(6))
        sn = sum(a[i][d] * n[i][d] for d in range(6))
        right += sp > sn
    assert M.t_classify_t2a(a, p, n) == pytest.approx(right / 50)


# ---------------------------------------------------------------- retrieval
def _brute_retrieval(text, audio, owner):
    """Independent reference: explicit sorting with a pessimistic tie rule, loops everywhere."""
    M_, N_ = len(text), len(audio)
    sims = [[float(np.dot(text[i], audio[j])) for j in range(N_)] for i in range(M_)]
    t2a_ranks = []
    for i in range(M_):
        true = sims[i][owner[i]]
        # sort others descending; the true item goes after every item with score >= its own
        better = [j for j in range(N_) if j != owner[i] and sims[i][j] >= true]
        t2a_ranks.append(len(better))
    out = {}
    for k in (1, 5, 10):
        out[f"r{k}_t2a"] = sum(r < k for r in t2a_ranks) / M_
    out["map10_t2a"] = sum((1 / (r + 1)) if r < 10 else 0 for r in t2a_ranks) / M_
    best, aps = [], []
    for j in range(N_):
        col = [sims[i][j] for i in range(M_)]
        own = [i for i in range(M_) if owner[i] == j]
        ranks = sorted(len([q for q in range(M_) if q != i and col[q] >= col[i]]) for i in own)
        best.append(ranks[0])
        # AP@10 over the clip's captions: the k-th relevant hit at rank r (1-based r+1) has precision k/(r+1)
        ap = 0.0
        for pos, r in enumerate(ranks, start=1):
            if r < 10:
                ap += pos / (r + 1)
        aps.append(ap / len(own))
    for k in (1, 5, 10):
        out[f"r{k}_a2t"] = sum(b < k for b in best) / N_
    out["map10_a2t"] = sum(aps) / N_
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_retrieval_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n_clips, per = 25, 3
    audio = _unit(rng.normal(size=(n_clips, 5)))
    owner = np.repeat(np.arange(n_clips), per)
    # captions near their clip so ranks spread over 0..N
    text = _unit(audio[owner] + rng.normal(scale=1.2, size=(n_clips * per, 5)))
    got = M.retrieval_metrics(text, audio, owner)
    want = _brute_retrieval(text, audio, owner)
    assert set(got) == set(want)
    for k in want:
        assert got[k] == pytest.approx(want[k], abs=1e-12), k


def test_retrieval_hand_worked():
    # 2 clips, captions 0,1 -> clip 0 and caption 2 -> clip 1.
    audio = _unit([[1, 0], [0, 1]])
    text = _unit([[1, 0.2], [0.2, 1], [0.1, 1]])
    got = M.retrieval_metrics(text, audio, [0, 0, 1])
    # T2A ranks: cap0 -> clip0 rank 0; cap1 -> clip0 rank 1; cap2 -> clip1 rank 0.
    assert got["r1_t2a"] == pytest.approx(2 / 3)
    assert got["r5_t2a"] == 1.0
    assert got["map10_t2a"] == pytest.approx((1 + 0.5 + 1) / 3)
    # A2T clip0 column: sims cap0 .981, cap1 .196, cap2 .0995 -> own ranks [0, 1] -> AP = (1/1 + 2/2)/2 = 1.
    # clip1 column: cap0 .196, cap1 .981, cap2 .995 -> own rank [0] -> AP 1.
    assert got["r1_a2t"] == 1.0
    assert got["map10_a2t"] == pytest.approx(1.0)
    # Swap: caption 1 scores above caption 0 for clip 0 by moving it; own ranks [1, 2] when a foreign caption wins.
    text2 = _unit([[1, 0.5], [1, 0.6], [1, 0.1]])  # cap2 (clip1) is the closest to clip0
    got2 = M.retrieval_metrics(text2, audio, [0, 0, 1])
    # clip0 column order: cap2 (.995), cap0 (.894), cap1 (.857) -> own ranks [1, 2] -> AP = (1/2 + 2/3)/2
    # clip1 column order: cap1 (.514), cap0 (.447), cap2 (.0995) -> own rank [2] -> AP = 1/3
    assert got2["r1_a2t"] == 0.0
    assert got2["map10_a2t"] == pytest.approx(((1 / 2 + 2 / 3) / 2 + 1 / 3) / 2)


def test_retrieval_ties_are_pessimistic():
    audio = np.ones((4, 3)) / np.sqrt(3)
    text = audio.copy()
    got = M.retrieval_metrics(text, audio, [0, 1, 2, 3])
    assert got["r1_t2a"] == 0.0 and got["r1_a2t"] == 0.0
    assert got["r5_t2a"] == 1.0  # rank 3 < 5


# ---------------------------------------------------------------- zero-shot
def test_zero_shot_brute_force():
    rng = np.random.default_rng(3)
    cls = _unit(rng.normal(size=(6, 4)))
    y = rng.integers(0, 6, size=40)
    audio = _unit(cls[y] + rng.normal(scale=0.8, size=(40, 4)))
    right = 0
    for i in range(40):
        scores = [float(np.dot(audio[i], cls[c])) for c in range(6)]
        right += all(scores[y[i]] > scores[c] for c in range(6) if c != y[i])
    assert M.zero_shot_top1(audio, cls, y) == pytest.approx(right / 40)


def test_zero_shot_tie_is_wrong():
    cls = _unit([[1, 0], [1, 0]])
    assert M.zero_shot_top1(_unit([[1, 0]]), cls, [0]) == 0.0


def test_prompt_template():
    assert M.format_prompt("A sound of {label}", "a beep") == "A sound of a beep"
    with pytest.raises(UserError, match="label"):
        M.format_prompt("A sound of", "x")


@pytest.mark.parametrize(
    "call",
    [
        lambda: M.t_classify_t2a(np.zeros((3, 2)), np.zeros((2, 2)), np.zeros((3, 2))),
        lambda: M.retrieval_metrics(np.zeros((2, 2)), np.zeros((3, 2)), [0, 1]),  # clip 2 has no caption
        lambda: M.zero_shot_top1(np.zeros((2, 2)), np.zeros((3, 2)), [0, 5]),
        lambda: M.t_classify_t2a(np.full((1, 2), np.nan), np.zeros((1, 2)), np.zeros((1, 2))),
    ],
)
def test_bad_shapes_are_user_errors(call):
    with pytest.raises(UserError):
        call()


# ---------------------------------------------------------------- runner + CLI on the tiny model
import json

import torch


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    from tclap.data.mixup import build_builtin_mixups

    return build_builtin_mixups(tmp_path_factory.mktemp("ev") / "mix", n=10, seconds=4.0, sr=16000, split="heldout", seed=1)


def test_runner_matches_direct_computation_and_caches(small_set, tmp_path):
    from tclap.data.manifest import read_manifest
    from tclap.evaluation.runner import EvalConfig, evaluate
    from tclap.models import load_clap

    bundle = load_clap("tiny")
    calls = {"audio": 0}
    real = bundle.embed_audio

    def counting(waves, **kw):
        calls["audio"] += len(waves)
        return real(waves, **kw)

    bundle.embed_audio = counting
    res = evaluate(bundle, str(small_set), tmp_path / "out", EvalConfig(batch_size=4), quiet=True)
    items = read_manifest(small_set)
    with_neg = [it for it in items if it.get("negative_captions")]
    n_distinct = len({it["audio"] for it in items}) + len({it["negative_audio"] for it in items if it.get("negative_audio")})
    assert calls["audio"] == n_distinct  # every distinct file embedded once
    # Independent T2A: embeddings straight from the bundle, decision by a plain loop.
    right = 0
    for it in with_neg:
        a = bundle.embed_audio_files([it["audio"]])[0]
        tp, tn = bundle.embed_text([it["captions"][0], it["negative_captions"][0]])
        right += float(a @ tp) > float(a @ tn)
    assert res["t_classify_t2a"] == pytest.approx(100 * right / len(with_neg), abs=1e-9)
    assert res["counts"]["skipped_no_negative_caption"] == len(items) - len(with_neg)
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    for key in ("t_classify_t2a", "t_classify_a2t", "t_classify_t2a_audio_blind", "r1_t2a", "r5_t2a", "r10_t2a",
                "r1_a2t", "r5_a2t", "r10_a2t", "map10_t2a", "map10_a2t"):
        assert 0.0 <= saved[key] <= 100.0
    assert "| T-Classify text-to-audio (%) |" in (tmp_path / "out" / "metrics.md").read_text()
    # Second run: everything comes from the cache.
    calls["audio"] = 0
    res2 = evaluate(bundle, str(small_set), tmp_path / "out", EvalConfig(batch_size=4), quiet=True)
    assert calls["audio"] == 0 and res2["r1_t2a"] == res["r1_t2a"]
    # A changed model gets a new cache namespace (no stale embeddings).
    with torch.no_grad():
        bundle.model.audio_projection.linear1.weight.mul_(1.5) if hasattr(bundle.model.audio_projection, "linear1") \
            else next(bundle.model.audio_projection.parameters()).mul_(1.5)
    evaluate(bundle, str(small_set), tmp_path / "out", EvalConfig(batch_size=4), quiet=True)
    assert calls["audio"] == n_distinct


def test_evaluate_cli_missing_audio_is_one_line(small_set, tmp_path, capsys):
    from tclap.cli import main
    from tclap.data.manifest import read_manifest, write_manifest

    items = read_manifest(small_set)
    write_manifest(tmp_path / "bad.jsonl", [dict(items[0], audio=str(tmp_path / "nope.wav"))] + items[1:])
    rc = main(["evaluate", "--model", "tiny", "--data", str(tmp_path / "bad.jsonl"), "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "nope.wav" in err
    rc = main(["evaluate", "--model", "tiny", "--data", str(small_set), "--out", str(tmp_path / "o"),
               "--prompt-template", "no field", "--quiet"])
    assert rc == 2 and "{label}" in capsys.readouterr().err
