"""Phase 1 of a build: one recording's checks and conversion into a mono 16-bit clip (:func:`convert`).

:func:`condition` is the pure part (``[C, T]`` at any rate -> mono ``[T']`` at ``cfg.sr``, trimmed, cut, peak
-1 dBFS, or :class:`~tclap.bank.config.Rejected` with the reason); :func:`convert` adds the licence check, the
decode, the 16-bit write of ``work/<label>/<name>.wav`` and the journal record.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import soundfile as sf

from basekit.atomic import atomic_path
from basekit.audio import peak_dbfs, resample
from tclap.bank.config import BuildConfig, Rejected
from tclap.bank.sources import Candidate, clip_name
from tclap.bank.table import licence_known
from tclap.data.banks import trim_silence

FADE_SECONDS = 0.05
PEAK = 10 ** (-1 / 20)  # -1 dBFS: 16-bit files never clip
HIGH_RATE = 48000


def condition(x: np.ndarray, rate: int, cfg: BuildConfig) -> tuple[np.ndarray, list[str]]:
    """``[C, T]`` at ``rate`` -> mono float32 ``[T']`` at ``cfg.sr``, trimmed, cut, peak -1 dBFS; and notes.

    Raises :class:`Rejected` for a low rate, non-finite samples, silence, or too little sound.
    """
    notes: list[str] = []
    if rate < cfg.min_rate:
        raise Rejected("low_rate", f"{rate} Hz is below the minimum of {cfg.min_rate} Hz")
    if not np.all(np.isfinite(x)):
        raise Rejected("unreadable", "holds NaN or infinite samples")
    if x.shape[0] > 1:
        mono = x.mean(axis=0)
        # Out-of-phase channels (a "wide" effect) cancel in the mix: keep one channel rather than a residue.
        if np.mean(mono.astype(np.float64) ** 2) < 0.25 * np.mean(x.astype(np.float64) ** 2):
            mono = x[0]
            notes.append("stereo_cancel")
        else:
            notes.append("stereo")
    else:
        mono = x[0]
    level = peak_dbfs(mono)
    if level < cfg.silence_dbfs:
        shown = "no signal" if not np.any(mono) else f"peak {level:.1f} dBFS"
        raise Rejected("silent", f"{shown}, below {cfg.silence_dbfs:g} dBFS")
    if rate > HIGH_RATE:
        notes.append("high_rate")
    y = resample(mono, rate, cfg.sr) if rate != cfg.sr else mono.astype(np.float32)
    y = trim_silence(y, cfg.sr, cfg.trim_db)
    if len(y) < cfg.min_seconds * cfg.sr:
        raise Rejected("too_short", f"{len(y) / cfg.sr:.3f} s of sound after trimming silence (at least {cfg.min_seconds:g} s)")
    n_max = int(round(cfg.max_seconds * cfg.sr))
    if len(y) > n_max:
        y = y[:n_max].copy()
        fade = int(FADE_SECONDS * cfg.sr)
        y[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
        notes.append("cropped")
    y = (y * (PEAK / float(np.max(np.abs(y))))).astype(np.float32)
    return y, notes


def _pcm16(y: np.ndarray) -> np.ndarray:
    return np.clip(np.round(y * 32767.0), -32768, 32767).astype("<i2")


def convert(c: Candidate, work: Path, cfg: BuildConfig) -> dict:
    """Convert one candidate into ``work/<label>/<name>.wav``; its journal record (``status`` ok or rejected)."""
    rec = {"key": c.key, "label": c.label, "package": c.package, "path": c.path, "licence": c.licence,
           "attribution": c.attribution, "copyright": c.copyright, "name": clip_name(c)}
    try:
        if not licence_known(c.licence):
            raise Rejected("licence_unknown", "no licence is known for this file (add one to licences.txt or the table)")
        x, rate, subtype, notes = c.read()
        rec.update(orig_rate=rate, orig_channels=int(x.shape[0]), orig_subtype=subtype,
                   orig_seconds=round(x.shape[1] / rate, 4))
        y, more = condition(x, rate, cfg)
    except Rejected as r:
        return {**rec, "status": "rejected", "reason": r.reason, "detail": r.detail}
    if subtype not in ("PCM_16", "PCM_S8", "PCM_U8", "VORBIS", "OPUS", "MPEG_LAYER_III", "ULAW", "ALAW", "GSM610"):
        notes = notes + ["deep_bits"]
    pcm = _pcm16(y)
    out = work / c.label / rec["name"]
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out, suffix=".wav") as tmp:
        sf.write(str(tmp), pcm, cfg.sr, subtype="PCM_16")
    return {**rec, "status": "ok", "seconds": round(len(pcm) / cfg.sr, 4), "notes": notes + more,
            "sha1": hashlib.sha1(pcm.tobytes()).hexdigest()}
