"""CLAP score and temporal-order accuracy of generated clips.

* **CLAP score**: cosine similarity of the (L2-normalised) audio and prompt embeddings, per clip, averaged.
* **Order accuracy (CLAP)**: for each generated clip whose prompt states an event order, correct when
  ``sim(audio, prompt) > sim(audio, reversed prompt)`` (ties count as wrong, as T-Classify in the paper).
  The reversed prompt is the same template with the events in the opposite order (built from the mention
  spans that :func:`tclap.data.captions.find_mentions` finds), or the ``negative_prompt`` given in the prompts
  file for free-form prompts.
* **Order accuracy (detector)**: on the built-in bank, correct when the detected onsets of the prompted
  events come in the prompted order (:func:`eval_gen.detector.order_matches`).

Prompts without an order (one event, simultaneous events, unknown words) are not scored; they are counted
under ``skipped`` with the reason, never silently dropped.
"""

from __future__ import annotations

from collections import Counter
from typing import Mapping, Sequence

import numpy as np

from basekit.errors import UserError


def _vocab(vocabulary: Mapping[str, str] | None) -> Mapping[str, str]:
    if vocabulary is not None:
        return vocabulary
    from tclap.synth import EVENT_PHRASES

    return EVENT_PHRASES


def prompt_order(text: str, vocabulary: Mapping[str, str] | None = None) -> list[str] | None:
    """The event labels in the order ``text`` states (``None`` or a single label when there is no order)."""
    from tclap.data.captions import parse_event_order

    return parse_event_order(text, _vocab(vocabulary))


def reverse_prompt(text: str, vocabulary: Mapping[str, str] | None = None) -> str | None:
    """``text`` with its events in the reversed order and the same template, or ``None`` if it has no order.

    Each event mention is replaced by the mention of the event that takes its place in the reversed order,
    so "a knock after a beep" becomes "a beep after a knock" (never "a knock before a beep", which only
    swaps the connector and keeps the meaning). The result is checked by parsing it back.
    """
    from tclap.data.captions import find_mentions, parse_event_order

    vocab = _vocab(vocabulary)
    order = parse_event_order(text, vocab)
    if not order or len(order) < 2 or len(set(order)) != len(order):
        return None
    mentions = find_mentions(text, vocab)
    if len(mentions) != len(order) or {m[2] for m in mentions} != set(order):
        return None
    swap = {order[i]: order[len(order) - 1 - i] for i in range(len(order))}
    # A mention that opened the sentence loses its capital when it moves; the new opener takes it.
    phrase = {lab: (text[s].lower() + text[s + 1 : e]) if s == 0 else text[s:e] for s, e, lab in mentions}
    out, last = [], 0
    for s, e, lab in mentions:
        new = phrase[swap[lab]]
        if s == 0 and text[:1].isupper():
            new = new[:1].upper() + new[1:]
        out += [text[last:s], new]
        last = e
    rev = "".join(out) + text[last:]
    return rev if parse_event_order(rev, vocab) == order[::-1] else None


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity ``[N]`` of ``a [N, D]`` and ``b [N, D]`` (re-normalised for safety)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise UserError(f"audio and text embeddings differ in shape: {a.shape} vs {b.shape}")
    na = np.linalg.norm(a, axis=1).clip(1e-12)
    nb = np.linalg.norm(b, axis=1).clip(1e-12)
    return (a * b).sum(1) / (na * nb)


def clap_score(audio_emb: np.ndarray, text_emb: np.ndarray) -> dict:
    """Mean text-audio cosine ``{"mean", "std", "n", "per_clip"}`` for paired ``[N, D]`` embeddings."""
    s = cosine_rows(audio_emb, text_emb)
    return {"mean": float(s.mean()), "std": float(s.std(ddof=1)) if len(s) > 1 else 0.0, "n": int(len(s)),
            "per_clip": [float(v) for v in s]}


def order_pairs(prompts: Sequence[str], negatives: Sequence[str | None] | None = None,
                vocabulary: Mapping[str, str] | None = None) -> tuple[list[int], list[str], Counter]:
    """Indices of prompts that have an order, their reversed prompts, and the skip reasons of the others."""
    idx, rev, skipped = [], [], Counter()
    for i, p in enumerate(prompts):
        neg = negatives[i] if negatives is not None else None
        if neg:
            idx.append(i)
            rev.append(neg)
            continue
        r = reverse_prompt(p, vocabulary)
        if r is None:
            skipped["prompt states no event order"] += 1
        else:
            idx.append(i)
            rev.append(r)
    return idx, rev, skipped


def order_accuracy_clap(audio_emb: np.ndarray, text_emb: np.ndarray, reversed_text_emb: np.ndarray) -> dict:
    """Share of clips with ``cos(audio, prompt) > cos(audio, reversed prompt)`` (ties wrong).

    All three inputs are ``[N, D]`` row-aligned; returns ``{"accuracy", "n", "correct", "margin_mean"}``.
    """
    pos = cosine_rows(audio_emb, text_emb)
    neg = cosine_rows(audio_emb, reversed_text_emb)
    correct = pos > neg
    n = int(len(correct))
    return {"accuracy": float(correct.mean()) if n else None, "n": n, "correct": int(correct.sum()),
            "margin_mean": float((pos - neg).mean()) if n else None}


def order_accuracy_detector(waves: Sequence[np.ndarray], sr: int, prompts: Sequence[str],
                            cache_dir: str | None = None, progress: bool = False) -> dict:
    """Detected-onset order accuracy on the built-in bank: ``{"accuracy", "n", "correct", "skipped"}``."""
    from tqdm.auto import tqdm

    from eval_gen.detector import get_detector, order_matches

    det = get_detector(cache_dir=cache_dir)
    skipped: Counter = Counter()
    correct = n = 0
    for w, p in tqdm(list(zip(waves, prompts)), desc="detector order", disable=None if progress else True, leave=False):
        order = prompt_order(p)
        if not order or len(order) < 2 or len(set(order)) != len(order):
            skipped["prompt states no order of distinct built-in events"] += 1
            continue
        n += 1
        correct += order_matches(det.detect_order(w, sr), order)
    return {"accuracy": correct / n if n else None, "n": n, "correct": correct, "skipped": dict(skipped)}


def detector_ceiling(out_dir: str, n: int = 40, seconds: float = 5.0, seed: int = 0, split: str = "heldout",
                     cache_dir: str | None = None, sequential_only: bool = True) -> dict:
    """The detector's own order accuracy on real mix-ups of held-out instances (the metric's ceiling).

    Builds ``n`` mix-ups with :func:`tclap.data.mixup.build_builtin_mixups` and scores the true event order
    (manifest ``events`` sorted by onset). With ``sequential_only`` only mixes whose events do not overlap
    in time are scored (overlapping ones have no order); the others are counted in ``skipped``.
    """
    from basekit.audio import load_audio_with_sr
    from tclap.data.manifest import read_manifest
    from tclap.data.mixup import build_builtin_mixups

    from eval_gen.detector import get_detector, order_matches

    det = get_detector(cache_dir=cache_dir)
    items = read_manifest(build_builtin_mixups(out_dir, n, seconds, split=split, seed=seed))
    correct = exact = scored = 0
    skipped: Counter = Counter()
    by_len: Counter = Counter()
    for it in items:
        evs = sorted(it.get("events") or [], key=lambda e: e["onset"])
        labels = [e["label"] for e in evs]
        overlap = any(b["onset"] < a["offset"] for a, b in zip(evs, evs[1:]))
        if len(evs) < 2 or len(set(labels)) != len(labels) or (sequential_only and overlap):
            skipped["no strict order of distinct events"] += 1
            continue
        wav, sr = load_audio_with_sr(it["audio"])
        got = det.detect_order(wav, sr)
        scored += 1
        by_len[len(labels)] += 1
        correct += order_matches(got, labels)
        exact += got == labels
    return {"order_accuracy": correct / scored if scored else None,
            "exact_sequence_accuracy": exact / scored if scored else None,
            "n": scored, "events_per_clip": dict(by_len), "skipped": dict(skipped)}
