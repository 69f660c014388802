"""The audio a rater hears: each clip measured once (duration, BS.1770 loudness) and served at a common loudness.

Level biases ratings (louder often sounds better), so ITU-T P.808 asks for clips at one loudness. At start-up
the service measures every clip with :func:`basekit.audio.loudness_lufs` and chooses its gain with
:func:`basekit.audio.set_level` (``normalize="loudness"``): the study's target (default -23 LUFS), lowered where
the peak would pass the ceiling (default -1 dBFS, so nothing clips) or where the upward gain would pass its cap
(near-silent clips are never turned up). The gain and the loudness as served go into the ``clips`` table and the
export. With ``loudness: off`` a clip keeps its level, only turned down past the ceiling.

MUSHRA's low anchor is made here from the reference (``process = "lowpass:HZ"``): a 4th-order Butterworth
low-pass run forwards and backwards (zero phase, 8th-order slope; BS.1534 names a 3.5 kHz low-pass of the
reference as the low anchor); it is then measured and levelled like every other clip.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np

from basekit.audio import encode_wav, load_audio_with_sr, loudness_lufs, set_level


def file_sig(path: str | Path) -> str:
    """Size and modification time: a clip whose file changed is measured again."""
    st = Path(path).stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


def lowpass(wav: np.ndarray, sr: int, hz: int) -> np.ndarray:
    """``[T]`` or ``[C, T]`` float32 audio low-passed at ``hz`` (zero phase: forward and backward 4th order)."""
    from scipy import signal as sps  # noqa: PLC0415 (scipy is heavy; loaded only when this path runs)

    sos = sps.butter(4, hz, btype="lowpass", fs=sr, output="sos")
    return sps.sosfiltfilt(sos, wav, axis=-1).astype(np.float32)


def _source(path: str, process: str | None) -> tuple[np.ndarray, int]:
    wav, sr = load_audio_with_sr(path, mono=False)  # [C, T]
    if process:
        kind, _, arg = process.partition(":")
        if kind != "lowpass":
            raise ValueError(f"unknown clip process {process!r}")
        wav = lowpass(wav, sr, int(arg))
    return wav, sr


def measure(path: str | Path, process: str | None, target_lufs: float | None, ceiling_dbfs: float = -1.0,
            max_gain_db: float = 20.0) -> dict:
    """Duration, loudness and the serving gain of one clip.

    Returns ``{"file_sig", "duration_s", "loudness_lufs" (None for silence), "gain_db", "served_lufs"}``;
    ``target_lufs=None`` means no loudness normalisation (the level is only turned down past the ceiling).
    """
    wav, sr = _source(str(path), process)
    kwargs = {"ceiling_dbfs": ceiling_dbfs, "max_gain_db": max_gain_db}
    if target_lufs is None:
        _, rec = set_level(wav, sr, normalize="none", **kwargs)
    else:
        _, rec = set_level(wav, sr, normalize="loudness", target_lufs=target_lufs, **kwargs)
    lufs = loudness_lufs(wav, sr)
    return {"file_sig": file_sig(path), "duration_s": wav.shape[-1] / sr,
            "loudness_lufs": lufs if math.isfinite(lufs) else None, "gain_db": float(rec["gain_db"]),
            "served_lufs": lufs + rec["gain_db"] if math.isfinite(lufs) else None}


@functools.lru_cache(maxsize=256)
def wav_bytes(path: str, process: str | None, gain_db: float, sig: str) -> bytes:
    """The clip as served: ``process``, then ``gain_db``, as 16-bit PCM WAV bytes (``sig`` keys the cache to the
    file's state). Re-encoded rather than sent as is, so the bytes carry no original name, tag or container hint."""
    wav, sr = _source(path, process)
    return encode_wav(wav * np.float32(10.0 ** (gain_db / 20.0)), sr, what=f"clip {path}")
