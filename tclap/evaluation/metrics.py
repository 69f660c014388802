"""Evaluation metrics as pure functions on L2-normalised embeddings (numpy, float64 maths).

Similarity is the cosine similarity of projected, L2-normalised embeddings (the paper's convention), so
every function takes embeddings ``[N, D]`` and computes dot products. Every result is a fraction in
``[0, 1]``; the runner reports percentages.

Ties are never resolved in the model's favour: a T-Classify decision with equal similarities counts as
wrong (the paper's rule), and a retrieval rank counts every other candidate with an equal score as ranked
above the true one. This keeps a degenerate model (all embeddings equal) at 0% rather than at a lucky
number that depends on the sort's tie-breaking.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from basekit.errors import UserError


def _as2d(x, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2:
        raise UserError(f"{name} must be a 2-D [N, D] embedding array, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise UserError(f"{name} holds NaN or infinite values (check the model and its inputs)")
    return a


def _same_shape(*pairs: tuple[np.ndarray, str]) -> None:
    shape0, name0 = pairs[0][0].shape, pairs[0][1]
    for a, name in pairs[1:]:
        if a.shape != shape0:
            raise UserError(f"{name} has shape {a.shape} but {name0} has {shape0}; they must be paired row by row")


def _rowdot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("nd,nd->n", a, b)


def t_classify_t2a(audio: np.ndarray, pos_text: np.ndarray, neg_text: np.ndarray) -> float:
    """T-Classify text-to-audio: share of audios closer to their positive than to their negative caption.

    Args:
        audio: ``[N, D]`` audio embeddings.
        pos_text: ``[N, D]`` embeddings of each audio's positive (correct-order) caption.
        neg_text: ``[N, D]`` embeddings of each audio's negative (order-swapped) caption.

    Returns:
        fraction of rows with ``sim(a, t+) > sim(a, t-)`` (ties are wrong).
    """
    a, p, n = _as2d(audio, "audio"), _as2d(pos_text, "pos_text"), _as2d(neg_text, "neg_text")
    _same_shape((a, "audio"), (p, "pos_text"), (n, "neg_text"))
    if len(a) == 0:
        raise UserError("T-Classify needs at least one item with a negative caption")
    return float(np.mean(_rowdot(a, p) > _rowdot(a, n)))


def t_classify_a2t(text: np.ndarray, pos_audio: np.ndarray, neg_audio: np.ndarray) -> float:
    """T-Classify audio-to-text: share of captions closer to their audio than to the order-swapped audio.

    Args:
        text: ``[N, D]`` caption embeddings.
        pos_audio: ``[N, D]`` embeddings of the audio each caption describes.
        neg_audio: ``[N, D]`` embeddings of audio with the same events in the other order.

    Returns:
        fraction of rows with ``sim(a+, t) > sim(a-, t)`` (ties are wrong).
    """
    t, p, n = _as2d(text, "text"), _as2d(pos_audio, "pos_audio"), _as2d(neg_audio, "neg_audio")
    _same_shape((t, "text"), (p, "pos_audio"), (n, "neg_audio"))
    if len(t) == 0:
        raise UserError("T-Classify audio-to-text needs at least one item with a negative audio")
    return float(np.mean(_rowdot(p, t) > _rowdot(n, t)))


def t_classify_t2a_audio_blind(audio: np.ndarray, pos_text: np.ndarray, neg_text: np.ndarray) -> float:
    """The audio-blind control: :func:`t_classify_t2a` with every audio replaced by the set's mean audio.

    A model that scores far above 50% here tells positives from negatives by the text alone (e.g. an LLM's
    phrasing tics in the negatives), so its T2A number does not measure temporal understanding.

    Args:
        audio: ``[N, D]`` audio embeddings (only their mean is used).
        pos_text, neg_text: ``[N, D]`` caption embeddings as in :func:`t_classify_t2a`.
    """
    a = _as2d(audio, "audio")
    mean = np.broadcast_to(a.mean(axis=0, keepdims=True), a.shape)
    return t_classify_t2a(mean, pos_text, neg_text)


def _pessimistic_ranks(scores: np.ndarray, target: np.ndarray) -> np.ndarray:
    """0-based rank of ``target[i]`` in row ``i`` of ``scores [M, N]``; equal scores rank above the target."""
    true = scores[np.arange(len(scores)), target][:, None]
    return (scores >= true).sum(axis=1) - 1


def retrieval_metrics(
    text: np.ndarray, audio: np.ndarray, text_to_audio: Sequence[int], ks: Sequence[int] = (1, 5, 10)
) -> dict[str, float]:
    """Audio-text retrieval with several captions per clip, LAION-CLAP semantics.

    Text-to-audio ranks every audio for each caption (so each caption counts once). Audio-to-text ranks
    every caption for each audio and takes the best-ranked of the clip's own captions for R@k. mAP@10 as
    in LAION-CLAP's ``evaluate_clotho_audiocaps``: T2A ``mean(1 / (rank + 1))`` over captions with a
    0-based rank below 10 (0 otherwise); A2T, per clip, the clip's caption ranks sorted ascending, those
    below 10 kept, ``sum_j j / (rank_j + 1) / n_captions``, then averaged over clips. (LAION's code omits
    the sort its docstring describes; we follow the docstring, which is the standard AP@10.)

    Args:
        text: ``[M, D]`` caption embeddings.
        audio: ``[N, D]`` clip embeddings.
        text_to_audio: ``[M]`` index of the clip each caption belongs to; every clip needs >= 1 caption.
        ks: the cut-offs for R@k.

    Returns:
        ``{"r1_t2a", "r5_t2a", "r10_t2a", "map10_t2a", "r1_a2t", ..., "map10_a2t"}`` as fractions.
    """
    t, a = _as2d(text, "text"), _as2d(audio, "audio")
    owner = np.asarray(text_to_audio, dtype=np.int64)
    if owner.shape != (len(t),):
        raise UserError(f"text_to_audio must hold one clip index per caption ({len(t)}), got shape {owner.shape}")
    if len(a) == 0 or len(t) == 0:
        raise UserError("retrieval needs at least one clip and one caption")
    if owner.min() < 0 or owner.max() >= len(a):
        raise UserError(f"text_to_audio holds a clip index outside [0, {len(a)})")
    counts = np.bincount(owner, minlength=len(a))
    if np.any(counts == 0):
        raise UserError(f"{int(np.sum(counts == 0))} clips have no caption; every clip needs at least one")
    sims = t @ a.T  # [M, N]
    out: dict[str, float] = {}
    t2a = _pessimistic_ranks(sims, owner)
    for k in ks:
        out[f"r{k}_t2a"] = float(np.mean(t2a < k))
    out["map10_t2a"] = float(np.mean(np.where(t2a < 10, 1.0 / (t2a + 1), 0.0)))

    # A2T: each caption's rank among all captions for its clip's row of sims.T.
    sims_a = sims.T  # [N, M]
    best = np.empty(len(a), dtype=np.int64)
    ap = np.empty(len(a), dtype=np.float64)
    for i in range(len(a)):
        own = np.flatnonzero(owner == i)
        row = sims_a[i]
        # Pessimistic rank of each own caption among all M captions.
        ranks = np.sort(np.array([(row >= row[j]).sum() - 1 for j in own]))
        best[i] = ranks[0]
        kept = ranks[ranks < 10]
        ap[i] = np.sum(np.arange(1, len(kept) + 1) / (kept + 1)) / len(own)
    for k in ks:
        out[f"r{k}_a2t"] = float(np.mean(best < k))
    out["map10_a2t"] = float(np.mean(ap))
    return out


def zero_shot_top1(audio: np.ndarray, class_text: np.ndarray, labels: Sequence[int]) -> float:
    """Zero-shot classification top-1 accuracy.

    Args:
        audio: ``[N, D]`` clip embeddings.
        class_text: ``[C, D]`` embeddings of one prompt per class (e.g. "A sound of {label}").
        labels: ``[N]`` true class index of each clip.

    Returns:
        share of clips whose true class scores strictly above every other class (ties are wrong).
    """
    a, c = _as2d(audio, "audio"), _as2d(class_text, "class_text")
    y = np.asarray(labels, dtype=np.int64)
    if y.shape != (len(a),):
        raise UserError(f"labels must hold one class index per clip ({len(a)}), got shape {y.shape}")
    if len(a) == 0:
        raise UserError("zero-shot classification needs at least one labelled clip")
    if a.shape[1] != c.shape[1]:
        raise UserError(f"audio dim {a.shape[1]} differs from class_text dim {c.shape[1]}")
    if y.min() < 0 or y.max() >= len(c):
        raise UserError(f"a label index lies outside [0, {len(c)})")
    sims = a @ c.T
    return float(np.mean(_pessimistic_ranks(sims, y) == 0))


def format_prompt(template: str, label: str) -> str:
    """Fill a zero-shot prompt template; it must hold exactly one ``{label}`` field."""
    if template.count("{label}") != 1:
        raise UserError(f"prompt template {template!r} must contain '{{label}}' exactly once, e.g. 'A sound of {{label}}'")
    return template.replace("{label}", label)
