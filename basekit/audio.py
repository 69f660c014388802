"""Audio I/O: load, resample, normalise, pad/crop and save.

Every loader returns ``float32`` numpy arrays in ``[-1, 1]`` shaped ``[T]`` (mono) or ``[C, T]``
(``mono=False``). Resampling uses soxr (the SoX resampler, "HQ" quality). Bad input raises
:class:`basekit.errors.UserError` with one line naming the file and the fix.

Levels (:func:`set_level`, what ``audioldm-cond generate`` applies before writing):

- default policy: the level is turned **down** only when the peak would pass ``CEILING_DBFS`` (-1 dBFS) and
  never turned up, so no sample is written at full scale and quiet output stays quiet;
- ``normalize="peak"`` / ``"loudness"`` (opt-in): scale to the ceiling / to a target loudness (BS.1770, LUFS),
  the upward gain capped at ``max_gain_db`` and the peak never above the ceiling;
- silence is judged on the level **before** any gain: a peak below ``SILENCE_DBFS`` (-60 dBFS, i.e. 0.001 of
  full scale; 16-bit dither sits near -96 dBFS, quiet real recordings peak well above -60) is near-silent,
  and a near-silent clip is never turned up (its noise would otherwise pass for content).

:func:`save_audio` never clips silently: samples beyond full scale are a warning (or, with
``on_overload="error"``, a refusal) that names the file and the peak.
"""

from __future__ import annotations

import io
import math
import os
import warnings
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf
import soxr
from scipy import signal as sps

from basekit.atomic import atomic_path
from basekit.errors import UserError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
PadMode = Literal["repeatpad", "repeat", "pad", "center", "random"]
Normalize = Literal["none", "peak", "loudness"]
#: Peak (dBFS) that written audio never passes: the default policy turns louder clips down to it.
CEILING_DBFS = -1.0
#: A clip whose peak (before any gain) is below this many dBFS counts as silent / near-silent.
SILENCE_DBFS = -60.0
#: Default loudness target of ``normalize="loudness"`` (EBU R128).
TARGET_LUFS = -23.0
#: Default cap on the upward gain of ``normalize="peak"`` / ``"loudness"``.
MAX_GAIN_DB = 20.0
NORMALIZE_MODES = ("none", "peak", "loudness")
_PAD_MODES = ("repeatpad", "repeat", "pad", "center", "random")


def load_audio(
    path: str | os.PathLike,
    sr: int | None = None,
    mono: bool = True,
    min_seconds: float = 0.0,
) -> np.ndarray:
    """Load ``path`` (wav/flac/ogg/mp3, any rate, mono or stereo) as float32.

    Args:
        path: audio file.
        sr: target sample rate; ``None`` keeps the file's rate (see :func:`load_audio_with_sr`).
        mono: average channels to ``[T]``; otherwise return ``[C, T]``.
        min_seconds: refuse clips shorter than this (after loading).

    Returns:
        ``[T]`` or ``[C, T]`` float32 array.
    """
    wav, _ = load_audio_with_sr(path, sr=sr, mono=mono, min_seconds=min_seconds)
    return wav


def load_audio_with_sr(
    path: str | os.PathLike, sr: int | None = None, mono: bool = True, min_seconds: float = 0.0
) -> tuple[np.ndarray, int]:
    """Like :func:`load_audio` but also returns the sample rate of the returned array."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"audio file not found: {p} (check the path, or the manifest's 'audio' field)")
    if p.is_dir():
        raise UserError(f"expected an audio file but got a folder: {p} (name a .wav/.flac/.ogg/.mp3 file)")
    if p.stat().st_size == 0:
        raise UserError(f"audio file is empty (0 bytes): {p} (re-export or remove it)")
    try:
        data, file_sr = sf.read(str(p), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises LibsndfileError / RuntimeError / TypeError
        raise UserError(
            f"cannot decode audio file {p}: {str(exc).splitlines()[0]} "
            "(is it a valid wav/flac/ogg/mp3? re-encode it, e.g. with sox or ffmpeg)"
        ) from None
    if data.shape[0] == 0:
        raise UserError(f"audio file has no samples: {p} (re-export or remove it)")
    if not np.all(np.isfinite(data)):
        raise UserError(f"audio file holds NaN or infinite samples: {p} (re-export it)")
    wav = data.T  # [C, T]
    if mono:
        wav = wav.mean(axis=0)
    if sr is not None and sr != file_sr:
        wav = resample(wav, file_sr, sr)
        file_sr = sr
    n = wav.shape[-1]
    if min_seconds and n < min_seconds * file_sr:
        raise UserError(
            f"audio file too short: {p} is {n / file_sr:.3f} s, at least {min_seconds:g} s is needed "
            "(remove it or lower the minimum)"
        )
    return np.ascontiguousarray(wav, dtype=np.float32), int(file_sr)


def resample(wav: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample ``[T]`` or ``[C, T]`` from ``sr_in`` to ``sr_out`` with soxr (HQ)."""
    if sr_in == sr_out:
        return wav.astype(np.float32, copy=False)
    if sr_in <= 0 or sr_out <= 0:
        raise UserError(f"sample rates must be positive, got {sr_in} -> {sr_out}")
    x = np.asarray(wav, dtype=np.float32)
    if x.ndim == 1:
        return soxr.resample(x, sr_in, sr_out, quality="HQ").astype(np.float32)
    # soxr takes [T, C]
    return soxr.resample(x.T, sr_in, sr_out, quality="HQ").T.astype(np.float32).copy()


def peak_normalize(wav: np.ndarray, peak: float = 0.95) -> np.ndarray:
    """Scale so that max |x| == ``peak``; silent input is returned unchanged."""
    m = float(np.max(np.abs(wav))) if wav.size else 0.0
    if m == 0.0:
        return wav.astype(np.float32, copy=True)
    return (wav * (peak / m)).astype(np.float32)


def _k_weighting(sr: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """ITU-R BS.1770-4 K-weighting (shelf + high-pass) biquads for any sample rate.

    Coefficients come from the analogue prototypes via the bilinear transform (the 48 kHz values of the
    standard are reproduced to ~1e-6).
    """
    # Stage 1: high shelf, f0 = 1681.97 Hz, gain 3.99984 dB, Q = 0.70717
    f0, gain_db, q = 1681.974450955533, 3.999843853973347, 0.7071752369554196
    k = np.tan(np.pi * f0 / sr)
    vh = 10 ** (gain_db / 20)
    vb = vh**0.4996667741545416
    a0 = 1 + k / q + k * k
    b1 = np.array([(vh + vb * k / q + k * k) / a0, 2 * (k * k - vh) / a0, (vh - vb * k / q + k * k) / a0])
    a1 = np.array([1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0])
    # Stage 2: RLB high-pass, f0 = 38.14 Hz, Q = 0.50033
    f0, q = 38.13547087602444, 0.5003270373238773
    k = np.tan(np.pi * f0 / sr)
    a0 = 1 + k / q + k * k
    b2 = np.array([1.0, -2.0, 1.0])
    a2 = np.array([1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0])
    return [(b1, a1), (b2, a2)]


def loudness_lufs(wav: np.ndarray, sr: int) -> float:
    """Integrated loudness (BS.1770, gated) of ``[T]`` or ``[C, T]`` audio in LUFS.

    Returns ``-inf`` for digital silence. Clips shorter than one 400 ms block are measured as one block.
    """
    x = np.atleast_2d(np.asarray(wav, dtype=np.float64))
    if x.shape[-1] == 0:
        raise UserError("cannot measure the loudness of an empty clip (0 samples)")
    for b, a in _k_weighting(sr):
        x = sps.lfilter(b, a, x, axis=-1)
    block = int(round(0.4 * sr))
    step = int(round(0.1 * sr))
    n = x.shape[-1]
    if n <= block:
        starts = [0]
        block = n
    else:
        starts = range(0, n - block + 1, step)
    z = np.array([np.mean(x[:, s : s + block] ** 2, axis=-1).sum() for s in starts])
    with np.errstate(divide="ignore"):
        lk = -0.691 + 10 * np.log10(z)
    keep = lk > -70.0
    if not np.any(keep):
        return float("-inf")
    rel = -0.691 + 10 * np.log10(np.mean(z[keep])) - 10.0
    keep &= lk > rel
    return float(-0.691 + 10 * np.log10(np.mean(z[keep])))


def loudness_normalize(wav: np.ndarray, sr: int, target_lufs: float = -23.0, peak_limit: float = 0.999) -> np.ndarray:
    """Scale to ``target_lufs`` integrated loudness; the gain is reduced if the peak would pass ``peak_limit``."""
    lufs = loudness_lufs(wav, sr)
    if not np.isfinite(lufs):
        return wav.astype(np.float32, copy=True)
    gain = 10 ** ((target_lufs - lufs) / 20)
    peak = float(np.max(np.abs(wav))) * gain
    if peak > peak_limit:
        gain *= peak_limit / peak
    return (wav * gain).astype(np.float32)


def pad_or_crop(
    wav: np.ndarray,
    length: int,
    mode: PadMode = "repeatpad",
    generator: np.random.Generator | None = None,
) -> np.ndarray:
    """Bring the last axis of ``wav`` to exactly ``length`` samples.

    Modes for clips that are too short: ``repeatpad`` (tile whole copies, then zero-pad, as LAION-CLAP and
    transformers' ``ClapFeatureExtractor``), ``repeat`` (tile and cut), ``pad`` (zero-pad at the end).
    Clips that are too long are cropped: centre crop for the deterministic modes, a random crop drawn from
    ``generator`` for ``random`` (training only; ``generator`` is required so that runs are reproducible).
    ``center`` centre-crops long clips and zero-pads short ones on both sides.
    """
    n = wav.shape[-1]
    if mode not in _PAD_MODES:
        # checked up front: a long clip would otherwise be centre-cropped under a misspelt mode
        raise ValueError(f"unknown pad mode {mode!r}; use repeatpad, repeat, pad, center or random")
    if length <= 0:
        raise UserError(f"target length must be positive, got {length} samples")
    if n == 0:
        raise UserError("cannot pad an empty clip (0 samples)")
    if n > length:
        if mode == "random":
            if generator is None:
                raise ValueError("pad_or_crop(mode='random') needs an explicit numpy Generator")
            start = int(generator.integers(0, n - length + 1))
        else:
            start = (n - length) // 2
        return wav[..., start : start + length].copy()
    if n == length:
        return wav.copy()
    missing = length - n
    widths = [(0, 0)] * (wav.ndim - 1)
    if mode in ("repeatpad", "random"):
        reps = length // n
        tiled = np.concatenate([wav] * reps, axis=-1)
        return np.pad(tiled, widths + [(0, length - tiled.shape[-1])])
    if mode == "repeat":
        reps = -(-length // n)
        return np.concatenate([wav] * reps, axis=-1)[..., :length].copy()
    if mode == "pad":
        return np.pad(wav, widths + [(0, missing)])
    if mode == "center":
        left = missing // 2
        return np.pad(wav, widths + [(left, missing - left)])
    raise ValueError(f"unknown pad mode {mode!r}; use repeatpad, repeat, pad, center or random")


def peak_dbfs(wav: np.ndarray) -> float:
    """Peak level of ``[T]`` or ``[C, T]`` audio in dBFS (``20 log10 max|x|``; 0 dBFS = full scale, ``-inf`` for
    digital silence)."""
    x = np.asarray(wav)
    m = float(np.max(np.abs(x))) if x.size else 0.0
    return 20.0 * math.log10(m) if m > 0 else float("-inf")


def _db(v: float) -> float | None:
    """A level for JSON records: rounded to 0.01 dB, ``None`` for ``-inf`` (JSON has no infinity)."""
    return round(float(v), 2) if math.isfinite(v) else None


def set_level(
    wav: np.ndarray,
    sr: int,
    normalize: Normalize | None = None,
    ceiling_dbfs: float = CEILING_DBFS,
    target_lufs: float = TARGET_LUFS,
    max_gain_db: float = MAX_GAIN_DB,
    silence_dbfs: float = SILENCE_DBFS,
) -> tuple[np.ndarray, dict]:
    """Apply the level policy of the module docstring to ``[T]`` or ``[C, T]`` audio.

    Args:
        wav: float audio (any level; model output may pass full scale).
        sr: its sample rate (for the loudness measurement).
        normalize: ``None`` / ``"none"``: only turn down, to ``ceiling_dbfs``; ``"peak"``: scale the peak to
            ``ceiling_dbfs``; ``"loudness"``: scale to ``target_lufs``, then down if the peak would pass the
            ceiling. Upward gain is capped at ``max_gain_db``; a near-silent clip gets no upward gain.
        ceiling_dbfs: the highest peak written (must be < 0).
        target_lufs: loudness target of ``"loudness"``.
        max_gain_db: cap on upward gain (>= 0).
        silence_dbfs: peaks below this (measured before any gain) count as near-silent.

    Returns:
        ``(scaled float32 audio of the same shape, record)``; the record (JSON-able; levels rounded to 0.01 dB,
        ``None`` for ``-inf``) holds ``policy``, ``peak_dbfs_before``, ``lufs_before``, ``gain_db``,
        ``peak_dbfs_after``, ``lufs_after``, ``would_clip`` (the peak passed full scale before the gain),
        ``silent`` (peak before < ``silence_dbfs``) and ``silence_dbfs``.
    """
    mode = "none" if normalize is None else str(normalize)
    if mode not in NORMALIZE_MODES:
        raise UserError(f"normalize={normalize!r} is unknown; use none, peak or loudness")
    if not ceiling_dbfs < 0 or not math.isfinite(ceiling_dbfs):
        raise UserError(f"ceiling_dbfs={ceiling_dbfs:g} must be below 0 dBFS (full scale), e.g. -1")
    if not max_gain_db >= 0 or not math.isfinite(max_gain_db):
        raise UserError(f"max_gain_db={max_gain_db:g} must be a finite number >= 0, e.g. 20")
    x = np.asarray(wav, dtype=np.float32)
    if x.size == 0:
        raise UserError("cannot set the level of an empty clip (0 samples)")
    if not np.all(np.isfinite(x)):
        raise UserError("the audio holds NaN or infinite samples (check the model output)")
    peak = peak_dbfs(x)
    lufs = loudness_lufs(x, sr)
    silent = not peak >= silence_dbfs
    gain = 0.0
    if math.isfinite(peak):
        if mode == "peak":
            gain = ceiling_dbfs - peak
        elif mode == "loudness" and math.isfinite(lufs):
            gain = target_lufs - lufs
        if silent or gain > max_gain_db:
            gain = min(gain, 0.0 if silent else max_gain_db)
        gain = min(gain, ceiling_dbfs - peak)  # every policy: the peak never passes the ceiling
    y = (x * np.float32(10.0 ** (gain / 20.0))).astype(np.float32) if gain != 0.0 else x.copy()
    record = {
        "policy": mode,
        "peak_dbfs_before": _db(peak),
        "lufs_before": _db(lufs),
        "gain_db": round(gain, 2),
        "peak_dbfs_after": _db(peak_dbfs(y)),
        "lufs_after": _db(lufs + gain) if math.isfinite(lufs) else None,
        "would_clip": bool(peak > 0.0),
        "silent": bool(silent),
        "silence_dbfs": float(silence_dbfs),
    }
    return y, record


def _storable(wav: np.ndarray, what: object, on_overload: str) -> np.ndarray:
    """``[T]`` or ``[C, T]`` float audio -> float32 ``[T]`` / ``[T, C]`` that a PCM writer can store.

    Samples beyond full scale (|x| > 1) are clipped with a warning naming ``what`` and the peak (``"warn"``), or
    refused (``"error"``): never silently. Empty, badly shaped or non-finite audio is a :class:`UserError`.
    """
    x = np.asarray(wav, dtype=np.float32)
    if x.ndim not in (1, 2) or x.shape[-1] == 0:
        raise UserError(f"cannot write {what}: audio must be a non-empty [T] or [C, T] array, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise UserError(f"cannot write {what}: the audio holds NaN or infinite samples (check the model output)")
    if on_overload not in ("warn", "error"):
        raise ValueError(f"on_overload={on_overload!r}: use 'warn' or 'error'")
    over = int(np.count_nonzero(np.abs(x) > 1.0))
    if over:
        msg = (f"{what}: {over} sample(s) beyond full scale (peak {peak_dbfs(x):+.1f} dBFS); turn the level down "
               "before saving (basekit.audio.set_level)")
        if on_overload == "error":
            raise UserError(f"cannot write {msg}")
        warnings.warn(f"clipped {msg}", stacklevel=3)
        x = np.clip(x, -1.0, 1.0)
    return x.T if x.ndim == 2 else x


def encode_wav(wav: np.ndarray, sr: int, what: str = "audio", on_overload: Literal["warn", "error"] = "warn") -> bytes:
    """``[T]`` or ``[C, T]`` float audio -> 16-bit PCM WAV bytes in memory (shard members, served clips), with the
    same checks as :func:`save_audio` (``what`` names the audio in a warning or error)."""
    buf = io.BytesIO()
    sf.write(buf, _storable(wav, what, on_overload), int(sr), format="WAV", subtype="PCM_16")
    return buf.getvalue()


def save_audio(
    path: str | os.PathLike, wav: np.ndarray, sr: int, subtype: str = "PCM_16",
    on_overload: Literal["warn", "error"] = "warn",
) -> Path:
    """Write ``[T]`` or ``[C, T]`` audio atomically (temp file in the same folder, then rename).

    The format follows the extension (``.wav``, ``.flac``, ``.ogg``). Audio is written as given: set its level
    first (:func:`set_level`). Samples beyond full scale (|x| > 1) cannot be stored; they are clipped with a
    warning naming the file and the peak (``on_overload="warn"``), or refused (``"error"``): never silently.
    """
    p = Path(path)
    fmt = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}.get(p.suffix.lower())
    if fmt is None:
        raise UserError(f"cannot write {p}: use a .wav, .flac or .ogg file name")
    data = _storable(wav, p, on_overload)
    p.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "OGG":
        subtype = "VORBIS"
    with atomic_path(p, suffix=p.suffix) as tmp:
        sf.write(str(tmp), data, sr, format=fmt, subtype=subtype)
    return p


def list_audio_files(folder: str | os.PathLike) -> list[Path]:
    """Audio files (by extension) directly under ``folder``, sorted by name.

    Hidden files are skipped: ``.name.XXXX.wav`` is the temp file of an interrupted :func:`save_audio`.
    """
    f = Path(folder)
    if not f.is_dir():
        raise UserError(f"not a folder: {f}")
    return sorted(
        p for p in f.iterdir() if p.suffix.lower() in AUDIO_EXTENSIONS and not p.name.startswith(".") and p.is_file()
    )
