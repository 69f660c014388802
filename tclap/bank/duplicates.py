"""Duplicate detection: the same recording reached twice (two packages ship one file, or one re-encodes or cuts another's).

Exact copies share the converted samples (the journal's ``sha1``). A copy in another codec or an excerpt is
found by :func:`match_score` on 4 kHz fingerprints, the band where lossy codecs keep the waveform; the later of two
matching recordings of a class is dropped, so that no part of a held-out recording is trained on.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Callable

import numpy as np

from basekit.audio import resample

FINGERPRINT_SR = 4000
#: normalised cross-correlation at or above which one clip counts as a copy or excerpt of another.
NEAR_DUPLICATE = 0.97


def match_score(a: np.ndarray, b: np.ndarray) -> float:
    """Largest normalised cross-correlation of the shorter clip against every position in the longer one.

    1.0 when one clip is a (scaled) excerpt of the other; a lossy re-encoding of the same recording stays close
    to 1 at low frequencies, where :func:`_fingerprint` looks. ``a``, ``b``: ``[T]`` float arrays.
    """
    from scipy.signal import fftconvolve  # noqa: PLC0415 (scipy is heavy; loaded only when this path runs)

    if len(a) > len(b):
        a, b = b, a
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    na = float(np.sqrt(np.sum(a * a)))
    if na == 0 or len(a) == 0:
        return 0.0
    c = fftconvolve(b, a[::-1], mode="valid")
    csum = np.concatenate([[0.0], np.cumsum(b * b)])
    win = np.sqrt(np.maximum(csum[len(a):] - csum[: len(b) - len(a) + 1], 0.0))  # energy of each window of b
    ok = win > 1e-9 * na
    return float(np.max(np.abs(c[ok]) / (na * win[ok]))) if ok.any() else 0.0


def _fingerprint(y: np.ndarray, sr: int) -> np.ndarray:
    """The clip at 4 kHz: the band where lossy codecs keep the waveform."""
    return resample(y, sr, FINGERPRINT_SR) if sr != FINGERPRINT_SR else y


def split_duplicates(records: list[dict], sr: int, audio: Callable[[dict], np.ndarray] | None = None
                     ) -> tuple[dict[str, list[dict]], list[dict]]:
    """Journal records -> (usable records per label, in key order; the records left out, in the order found).

    Left out are the records already rejected at conversion, then exact duplicates (same ``sha1``), and with
    ``audio`` (record -> ``[T]`` clip at ``sr``) the copies and excerpts of an earlier recording of the same class
    (:func:`match_score` at least ``NEAR_DUPLICATE``), each with ``reason`` ``duplicate`` and a detail line.
    """
    rejected: list[dict] = []
    by_label: dict[str, list[dict]] = defaultdict(list)
    seen_audio: dict[str, str] = {}
    for r in sorted(records, key=lambda r: r["key"]):
        if r["status"] != "ok":
            rejected.append(r)
            continue
        if r["sha1"] in seen_audio:
            rejected.append({**r, "status": "rejected", "reason": "duplicate", "detail": f"same audio as {seen_audio[r['sha1']]}"})
            continue
        seen_audio[r["sha1"]] = f"{r['package']} {r['path']}"
        by_label[r["label"]].append(r)
    if audio is not None:
        for label in sorted(by_label):
            kept: list[tuple[dict, np.ndarray]] = []
            for r in by_label[label]:
                fp = _fingerprint(audio(r), sr)
                hit = next(((k, sc) for k, kfp in kept if (sc := match_score(fp, kfp)) >= NEAR_DUPLICATE), None)
                if hit is None:
                    kept.append((r, fp))
                else:
                    rejected.append({**r, "status": "rejected", "reason": "duplicate",
                                     "detail": f"copy or excerpt of {hit[0]['package']} {hit[0]['path']} (match {hit[1]:.3f})"})
            by_label[label] = [k for k, _ in kept]
    return by_label, rejected
