"""Mel filter banks and framing shared by the backends (numpy, float64)."""

from __future__ import annotations

import functools

import numpy as np


def periodic_hann(n: int) -> np.ndarray:
    """Periodic Hann window of length ``n`` (as VGGish's ``mel_features.periodic_hann``)."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi / n * np.arange(n))


def frame(x: np.ndarray, window: int, hop: int) -> np.ndarray:
    """Non-padded framing of ``x [T, ...]`` into ``[1 + (T - window) // hop, window, ...]`` (0 frames if short)."""
    n = 1 + (x.shape[0] - window) // hop if x.shape[0] >= window else 0
    idx = np.arange(window)[None, :] + hop * np.arange(n)[:, None]
    return x[idx]


def hertz_to_mel_htk(f: np.ndarray | float) -> np.ndarray:
    return 1127.0 * np.log(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def vggish_mel_matrix(
    num_mel_bins: int = 64,
    num_spectrogram_bins: int = 257,
    sample_rate: int = 16000,
    lower_edge_hertz: float = 125.0,
    upper_edge_hertz: float = 7500.0,
) -> np.ndarray:
    """VGGish's HTK-mel matrix ``[num_spectrogram_bins, num_mel_bins]``.

    Triangles are linear in mel (not in Hz), unnormalised, and the DC bin is zeroed, exactly as in the
    reference ``mel_features.spectrogram_to_mel_matrix`` that produced the released weights.
    """
    nyquist = sample_rate / 2.0
    bins_mel = hertz_to_mel_htk(np.linspace(0.0, nyquist, num_spectrogram_bins))
    edges = np.linspace(hertz_to_mel_htk(lower_edge_hertz), hertz_to_mel_htk(upper_edge_hertz), num_mel_bins + 2)
    w = np.empty((num_spectrogram_bins, num_mel_bins))
    for i in range(num_mel_bins):
        lo, c, hi = edges[i : i + 3]
        w[:, i] = np.maximum(0.0, np.minimum((bins_mel - lo) / (c - lo), (hi - bins_mel) / (hi - c)))
    w[0, :] = 0.0
    return w


@functools.lru_cache(maxsize=16)
def slaney_mel_matrix(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """librosa's default mel matrix (Slaney scale, Slaney area norm) ``[n_fft // 2 + 1, n_mels]``."""
    from transformers.audio_utils import mel_filter_bank  # noqa: PLC0415 (transformers is heavy; loaded only when this path runs)

    return mel_filter_bank(
        num_frequency_bins=n_fft // 2 + 1,
        num_mel_filters=n_mels,
        min_frequency=fmin,
        max_frequency=fmax,
        sampling_rate=sr,
        norm="slaney",
        mel_scale="slaney",
    )


def log_mel_frames(
    wave: np.ndarray, sr: int, n_fft: int = 512, hop: int = 160, n_mels: int = 64, fmin: float = 0.0,
    fmax: float | None = None,
) -> np.ndarray:
    """Log-mel power frames ``[frames, n_mels]`` (Hann window, zero-padded centre framing, ``log(mel + 1e-6)``)."""
    x = np.asarray(wave, dtype=np.float64)
    x = np.pad(x, (n_fft // 2, n_fft // 2))
    fr = frame(x, n_fft, hop)
    spec = np.abs(np.fft.rfft(fr * periodic_hann(n_fft), n_fft)) ** 2
    mel = spec @ slaney_mel_matrix(sr, n_fft, n_mels, fmin, fmax or sr / 2.0)
    return np.log(mel + 1e-6)
