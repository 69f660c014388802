"""CLAP score and temporal-order accuracy of generated clips.

* **CLAP score**: cosine similarity of the (L2-normalised) audio and prompt embeddings, per clip, averaged.
* **Order accuracy (CLAP)**: for each generated clip whose prompt states an event order, correct when
  ``sim(audio, prompt) > sim(audio, reversed prompt)`` (ties count as wrong, as T-Classify in the paper).
  The reversed prompt is the same template with the events in the opposite order (built from the mention
  spans that :func:`tclap.data.captions.find_mentions` finds), or the ``negative_prompt`` given in the prompts
  file for free-form prompts.
* **Order accuracy (detector)**: on the built-in bank (or the bank a detector was trained on), correct when
  the detected onsets of the prompted events come in the prompted order (:func:`eval_gen.detector.order_matches`).
  Each clip's outcome is kept (``outcomes``; in ``scores.json``: ``order_detector.per_clip`` by clip name) so
  that two systems that generated the same prompts with the same seeds are compared pair by pair
  (:func:`eval_gen.stats.paired_order_claim`, McNemar's exact test).
* **Detector ceiling** (:func:`detector_ceiling`): the detector's own order accuracy on real held-out mix-ups,
  the most a generator can be credited with.

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
                            cache_dir: str | None = None, progress: bool = False, detector=None) -> dict:
    """Detected-onset order accuracy: ``{"accuracy", "n", "correct", "skipped", "outcomes"}``.

    ``outcomes [len(waves)]`` holds each clip's result (``True`` / ``False``; ``None`` for a clip whose prompt
    states no order of distinct events, counted in ``skipped``), so that two systems that generated the same
    prompts with the same seeds can be compared pair by pair (:func:`eval_gen.stats.paired_order_claim`).
    ``detector``: an :class:`eval_gen.detector.EventDetector` (default: the built-in bank's); prompts are
    parsed with its labels' phrases.
    """
    from tqdm.auto import tqdm

    from eval_gen.detector import get_detector, order_matches

    det = detector if detector is not None else get_detector(cache_dir=cache_dir)
    vocab = det.vocabulary()
    skipped: Counter = Counter()
    outcomes: list[bool | None] = []
    for w, p in tqdm(list(zip(waves, prompts)), desc="detector order", disable=None if progress else True, leave=False):
        order = prompt_order(p, vocab)
        if not order or len(order) < 2 or len(set(order)) != len(order):
            skipped["prompt states no order of distinct events the detector knows"] += 1
            outcomes.append(None)
            continue
        outcomes.append(bool(order_matches(det.detect_order(w, sr), order)))
    scored = [o for o in outcomes if o is not None]
    n, correct = len(scored), int(sum(scored))
    return {"accuracy": correct / n if n else None, "n": n, "correct": correct, "skipped": dict(skipped),
            "outcomes": outcomes}


def detector_ceiling(out_dir: str, n: int = 400, seconds: float = 4.0, seed: int = 0, split: str = "heldout",
                     cache_dir: str | None = None, detector=None, bank: str | Sequence[str] = "builtin",
                     min_events: int = 2, max_events: int = 3, progress: bool = False, level: float = 0.95) -> dict:
    """The detector's own order accuracy on real mix-ups of held-out clips (the order metric's ceiling).

    Builds ``n`` ordered mix-ups of ``bank``'s ``split`` (:func:`tclap.data.mixup.build_mixups`, no overlapping
    events, ``min_events``-``max_events`` events each, ``seconds`` long, seeded by ``seed``; resumable under
    ``out_dir``) and checks the detected order against the true one (manifest ``events`` by onset).
    ``detector``: an :class:`eval_gen.detector.EventDetector` (default: the built-in bank's). ``bank``: one bank, or
    several (a list, or ``"builtin+DIR"``) whose held-out recordings are mixed, each class from its own bank's
    hold-out (:class:`tclap.data.banks.UnionBank`), as a detector trained on their union needs.

    Returns ``{"order_accuracy", "correct", "n", "wilson": [low, high], "level", "exact_sequence_accuracy",
    "events_per_clip", "skipped", "missed": {label: count}, "failures": [first 20 {"id", "true", "detected"}],
    "settings"}``.
    """
    from tqdm.auto import tqdm

    from basekit.audio import load_audio_with_sr
    from tclap.data.banks import bank_label, bank_setting
    from tclap.data.manifest import read_manifest
    from tclap.data.mixup import MixupConfig, build_mixups

    from eval_gen.detector import get_detector, order_matches
    from eval_gen.stats import wilson_interval

    det = detector if detector is not None else get_detector(cache_dir=cache_dir)
    # One bank stays as written (so a resumed set's settings compare equal); several become the tuple of their parts.
    bank = bank_setting([str(b) for b in bank] if isinstance(bank, (list, tuple)) else str(bank))
    mcfg = MixupConfig(bank=bank, seconds=seconds, sr=16000, split=split, seed=seed, min_events=min_events,
                       max_events=max_events, overlap_prob=0.0)
    rep = build_mixups(mcfg, out_dir, n, quiet=True)
    if rep.failed or rep.manifest is None:
        raise UserError(f"held-out mix-ups under {out_dir} are incomplete: {rep.summary()}")
    items = read_manifest(rep.manifest)
    correct = exact = 0
    skipped: Counter = Counter()
    by_len: Counter = Counter()
    missed: Counter = Counter()
    failures = []
    for it in tqdm(items, desc="detector ceiling", disable=None if progress else True, leave=False):
        evs = sorted(it.get("events") or [], key=lambda e: e["onset"])
        labels = [e["label"] for e in evs]
        overlap = any(b["onset"] < a["offset"] for a, b in zip(evs, evs[1:]))
        if len(evs) < 2 or len(set(labels)) != len(labels) or overlap:
            skipped["no strict order of distinct events"] += 1
            continue
        wav, sr = load_audio_with_sr(it["audio"])
        got = det.detect_order(wav, sr)
        by_len[len(labels)] += 1
        ok = order_matches(got, labels)
        correct += ok
        exact += got == labels
        if not ok:
            missed.update(lab for lab in labels if lab not in got)
            if len(failures) < 20:
                failures.append({"id": it["id"], "true": labels, "detected": got})
    scored = sum(by_len.values())
    lo, hi = wilson_interval(correct, scored, level) if scored else (None, None)
    return {"order_accuracy": correct / scored if scored else None, "correct": correct, "n": scored,
            "wilson": [lo, hi], "level": level, "exact_sequence_accuracy": exact / scored if scored else None,
            "events_per_clip": dict(by_len), "skipped": dict(skipped), "missed": dict(missed), "failures": failures,
            "settings": {"bank": bank_label(bank), "split": split, "seconds": seconds, "seed": seed,
                         "events": [min_events, max_events]}}
