"""STFT + mel filterbank in torch, shared by every mel front end (CLAP's and AudioLDM's).

* :func:`slaney_mel_filterbank`, :func:`periodic_hann`: numpy float64, as ``librosa.filters.mel`` and
  ``scipy.signal.get_window("hann", n, fftbins=True)`` compute them.
* :func:`as_batch`: ``[B, T]`` / ``[T]`` / a list of ``[T_i]`` clips -> a padded ``[B, T_max]`` batch and lengths.
* :func:`fit_length`: repeat-pad / pad / crop every row to one length (``ClapFeatureExtractor``'s semantics).
* :class:`StftMel`: a module holding the Hann window and the mel matrix as non-persistent buffers (derived from
  the config, so they never appear in a checkpoint's ``state_dict``); subclasses add the log and the framing.

Front ends built on it: ``tclap.features.ClapMelFrontEnd`` and ``audioldm_cond.mel.AudioLDMMelFrontEnd``.
"""

from __future__ import annotations

import math
from typing import Literal, Sequence

import numpy as np
import torch
from torch import nn

from basekit.errors import UserError

Padding = Literal["repeatpad", "repeat", "pad"]
PADDINGS = ("repeatpad", "repeat", "pad")


# ----------------------------------------------------------------------------------------------------------
# Filterbank and window (numpy, float64: computed once per front end)
# ----------------------------------------------------------------------------------------------------------


def hz_to_mel_slaney(freq: np.ndarray | float) -> np.ndarray:
    """Slaney's mel scale (``librosa.hz_to_mel(htk=False)``): linear below 1 kHz, logarithmic above."""
    f = np.asarray(freq, dtype=np.float64)
    f_sp = 200.0 / 3.0
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, f / f_sp)


def mel_to_hz_slaney(mel: np.ndarray | float) -> np.ndarray:
    """Inverse of :func:`hz_to_mel_slaney`."""
    m = np.asarray(mel, dtype=np.float64)
    f_sp = 200.0 / 3.0
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def slaney_mel_filterbank(
    n_freqs: int, n_mels: int, f_min: float, f_max: float, sample_rate: int
) -> np.ndarray:
    """Triangular mel filters on the Slaney scale with Slaney area normalisation.

    Same maths as ``librosa.filters.mel(norm="slaney")`` and
    ``transformers.audio_utils.mel_filter_bank(norm="slaney", mel_scale="slaney")``.

    Returns:
        ``[n_freqs, n_mels]`` float64 matrix (spectrum ``[..., n_freqs] @ fb -> [..., n_mels]``).
    """
    if not 0 <= f_min < f_max <= sample_rate / 2:
        raise UserError(
            f"mel range {f_min}-{f_max} Hz does not fit sample rate {sample_rate} Hz "
            f"(need 0 <= f_min < f_max <= {sample_rate / 2:g})"
        )
    if n_mels < 1 or n_freqs < 2:
        raise UserError(f"need n_mels >= 1 and n_fft >= 2, got n_mels={n_mels}, n_freqs={n_freqs}")
    # filter edges: n_mels + 2 points equally spaced on the mel scale
    edges = mel_to_hz_slaney(np.linspace(hz_to_mel_slaney(f_min), hz_to_mel_slaney(f_max), n_mels + 2))
    fft_freqs = np.linspace(0.0, sample_rate / 2, n_freqs)
    widths = np.diff(edges)  # [n_mels + 1]
    ramps = edges[None, :] - fft_freqs[:, None]  # [n_freqs, n_mels + 2]
    rising = -ramps[:, :-2] / widths[:-1]
    falling = ramps[:, 2:] / widths[1:]
    fb = np.maximum(0.0, np.minimum(rising, falling))
    # Slaney normalisation: each triangle has unit area in Hz (constant energy per channel)
    fb *= (2.0 / (edges[2:] - edges[:-2]))[None, :]
    return fb


def periodic_hann(n: int) -> np.ndarray:
    """Periodic Hann window ``0.5 - 0.5 cos(2 pi k / n)``, k = 0..n-1 (``scipy.signal.get_window('hann')``)."""
    k = np.arange(n, dtype=np.float64)
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * k / n)


# ----------------------------------------------------------------------------------------------------------
# Shared input handling
# ----------------------------------------------------------------------------------------------------------


def as_batch(
    waves: torch.Tensor | np.ndarray | Sequence[np.ndarray | torch.Tensor],
    lengths: torch.Tensor | Sequence[int] | None,
    device: torch.device,
    dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn ``[B, T]`` / ``[T]`` / a list of ``[T_i]`` clips into a padded ``[B, T_max]`` batch and lengths ``[B]``.

    A list may hold clips of different lengths (they are zero-padded here; ``lengths`` keeps the true
    lengths so that repeat-padding repeats only real samples).
    """
    if isinstance(waves, (list, tuple)):
        if len(waves) == 0:
            raise UserError("empty batch: pass at least one audio clip")
        clips = [torch.as_tensor(np.asarray(w) if not torch.is_tensor(w) else w) for w in waves]
        for i, c in enumerate(clips):
            if c.ndim != 1:
                raise UserError(f"clip {i} has shape {tuple(c.shape)}; pass mono clips shaped [T] (average channels)")
        if lengths is None:
            lengths = [int(c.shape[0]) for c in clips]
        t_max = max(int(c.shape[0]) for c in clips)
        x = torch.zeros(len(clips), t_max, dtype=dtype, device=device)
        for i, c in enumerate(clips):
            x[i, : c.shape[0]] = c.to(device=device, dtype=dtype)
    else:
        x = torch.as_tensor(waves) if not torch.is_tensor(waves) else waves
        if x.ndim == 1:
            x = x[None]
        if x.ndim != 2:
            raise UserError(
                f"audio batch has shape {tuple(x.shape)}; pass [B, T] mono waves (or [T], or a list of [T] clips)"
            )
        if not x.is_floating_point():
            raise UserError(f"audio batch has dtype {x.dtype}; pass float waves in [-1, 1]")
        # float32 input stays float32 here: the STFT casts once, after padding/cropping (less memory traffic)
        if x.dtype not in (torch.float32, torch.float64):
            x = x.to(torch.float32)
        x = x.to(device=device)
    b, t = x.shape
    if lengths is None:
        lens = torch.full((b,), t, dtype=torch.long, device=device)
    else:
        lens = torch.as_tensor(lengths, dtype=torch.long).to(device).reshape(-1)
        if lens.shape[0] != b:
            raise UserError(f"got {lens.shape[0]} lengths for a batch of {b} clips")
        if bool((lens > t).any()):
            raise UserError(f"a length in {lens.tolist()} exceeds the batch width {t} samples")
    if bool((lens <= 0).any()):
        bad = torch.nonzero(lens <= 0).flatten().tolist()
        raise UserError(f"clip(s) {bad} in the batch are empty (0 samples); remove them")
    # max/min propagate NaN and show inf: two cheap reductions instead of a full-size isfinite mask
    finite = torch.isfinite(x.amax(dim=1)) & torch.isfinite(x.amin(dim=1))
    if not bool(finite.all()):
        bad = torch.nonzero(~finite).flatten().tolist()
        raise UserError(f"clip(s) {bad} in the batch hold NaN or infinite samples; fix the audio")
    return x, lens


def fit_length(
    x: torch.Tensor,
    lengths: torch.Tensor,
    target: int,
    padding: Padding = "repeatpad",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Repeat-pad / pad short clips and crop long ones to exactly ``target`` samples, row by row.

    Semantics follow ``ClapFeatureExtractor._get_input_mel``: a clip of ``n < target`` samples becomes
    ``target // n`` whole copies then zeros (``repeatpad``), copies cut at ``target`` (``repeat``), or the clip
    then zeros (``pad``). A clip of ``n > target`` samples is cropped at an offset drawn uniformly from
    ``[0, n - target]`` with ``generator`` (training), or the centre offset ``(n - target) // 2`` when
    ``generator`` is None (deterministic evaluation).

    Args:
        x: ``[B, T]`` waves (row ``b`` valid up to ``lengths[b]``).
        lengths: ``[B]`` int64 valid lengths.
        target: output length in samples.
        padding: ``repeatpad`` | ``repeat`` | ``pad``.
        generator: torch generator for random crops, or None.

    Returns:
        ``[B, target]``.
    """
    if padding not in PADDINGS:
        raise UserError(f"unknown padding {padding!r}; use one of {', '.join(PADDINGS)}")
    b = x.shape[0]
    n = lengths.tolist()
    over = [max(0, k - target) for k in n]
    if generator is None:
        starts = [o // 2 for o in over]
    else:
        # one uniform draw per row (on the generator's own device, as torch requires), so the offsets of a
        # batch depend only on the seed and the batch, never on which rows happen to need a crop
        u = torch.rand(b, generator=generator, device=generator.device, dtype=torch.float64).tolist()
        starts = [min(int(ui * (o + 1)), o) for ui, o in zip(u, over)]
    if all(k == target for k in n) and x.shape[1] == target:
        return x  # the common case (clips already max_length long): nothing to copy
    out = x.new_zeros(b, target)
    # a per-row loop of slice copies: B is small and each copy is contiguous (a [B, target] gather index
    # would cost 8 bytes per output sample)
    for i, k in enumerate(n):
        row = x[i, :k]
        if k >= target:
            out[i] = row[starts[i] : starts[i] + target]
        elif padding == "pad":
            out[i, :k] = row
        else:
            reps = target // k if padding == "repeatpad" else -(-target // k)
            tiled = row.repeat(reps)
            m = min(tiled.shape[0], target)
            out[i, :m] = tiled[:m]
    return out


# ----------------------------------------------------------------------------------------------------------
# Front ends
# ----------------------------------------------------------------------------------------------------------


class StftMel(nn.Module):
    """STFT + mel filterbank shared by both front ends (window and filterbank as buffers)."""

    def __init__(
        self, sample_rate: int, n_fft: int, hop_length: int, n_mels: int, f_min: float, f_max: float,
        dtype: torch.dtype,
    ) -> None:
        super().__init__()
        if hop_length <= 0 or n_fft <= 0:
            raise UserError(f"n_fft and hop_length must be positive, got n_fft={n_fft}, hop_length={hop_length}")
        if dtype not in (torch.float32, torch.float64):
            raise UserError(f"front-end dtype must be torch.float32 or torch.float64, got {dtype}")
        self.sample_rate = int(sample_rate)
        self.n_fft = int(n_fft)
        self.hop_length = int(hop_length)
        self.n_mels = int(n_mels)
        self.f_min = float(f_min)
        self.f_max = float(f_max)
        self.compute_dtype = dtype
        self.cpu_block_frames = 1024  # frames per FFT block on CPU (cache-sized; see _mel_spectrum)
        fb = slaney_mel_filterbank(self.n_fft // 2 + 1, self.n_mels, self.f_min, self.f_max, self.sample_rate)
        if (fb.max(axis=0) == 0).any():
            raise UserError(
                f"{n_mels} mel bands between {f_min} and {f_max} Hz are too many for n_fft={n_fft}: "
                "some bands hold no FFT bin (use fewer mels or a larger n_fft)"
            )
        self._window_np = periodic_hann(self.n_fft)
        self._mel_fb_np = fb
        self.register_buffer("window", torch.from_numpy(self._window_np).to(dtype), persistent=False)
        # the mel product runs in float32: after the (float64) STFT the power values only need ~1e-7
        # relative precision, which float32 keeps at any magnitude
        self.register_buffer("mel_fb", torch.from_numpy(fb).to(torch.float32), persistent=False)

    def _apply(self, fn, recurse=True):
        # A parent's .to(device) must move the buffers, but its .half()/.to(dtype) must not degrade them:
        # rebuild them from the float64 originals on the new device in the front end's own dtypes.
        super()._apply(fn, recurse)
        dev = self.mel_fb.device
        self.window = torch.from_numpy(self._window_np).to(device=dev, dtype=self.compute_dtype)
        self.mel_fb = torch.from_numpy(self._mel_fb_np).to(device=dev, dtype=torch.float32)
        return self

    def _mel_spectrum(self, x: torch.Tensor, power: float) -> torch.Tensor:
        """``[B, T]`` -> ``[B, 1 + T // hop, n_mels]`` mel of the power (2.0) or magnitude (1.0) STFT, float32.

        Same frames as ``torch.stft(center=True, pad_mode="reflect")`` (and librosa / transformers): the clip
        is reflect-padded by ``n_fft // 2`` on both sides and cut into ``n_fft`` frames every ``hop`` samples.
        The frames are an ``unfold`` view (no copy); on CPU they are transformed in blocks of about
        ``cpu_block_frames`` frames (spanning the batch) so that the windowed frames, the complex spectrum
        and the power stay small: one [B, frames, n_freqs] complex128 array per batch (66 MB for 8 clips of
        10 s) costs more in memory traffic and page faults than the FFTs themselves. The power is squared in
        place on the spectrum's real view.
        """
        if x.shape[1] <= self.n_fft // 2:
            raise UserError(
                f"clips of {x.shape[1]} samples are too short for a centred STFT with n_fft={self.n_fft} "
                f"(need more than {self.n_fft // 2} samples)"
            )
        half = self.n_fft // 2
        padded = nn.functional.pad(x[:, None], (half, half), mode="reflect")[:, 0]  # [B, T + n_fft]
        frames = padded.unfold(-1, self.n_fft, self.hop_length)  # [B, n_frames, n_fft] view
        b, n_frames, _ = frames.shape
        out = torch.empty(b, n_frames, self.n_mels, device=x.device, dtype=torch.float32)
        if x.device.type == "cpu":
            # blocks span the whole batch: fewer, larger kernels keep intra-op threads busy
            step = max(1, self.cpu_block_frames // b)
            blocks = [(slice(None), slice(s, s + step)) for s in range(0, n_frames, step)]
        else:  # accelerators prefer one large batched FFT
            blocks = [(slice(None), slice(None))]
        for rows, cols in blocks:
            spec = torch.fft.rfft(frames[rows, cols].to(self.compute_dtype) * self.window, dim=-1)
            ri = torch.view_as_real(spec)  # [..., n_freqs, 2]: squared in place, no extra complex temp
            ri.square_()
            p = ri[..., 0] + ri[..., 1]
            if power == 1.0:
                p = p.sqrt_()
            # the mel product runs in float32 (see the module docstring on precision)
            out[rows, cols] = torch.matmul(p.to(torch.float32), self.mel_fb)  # (no out=: keeps autograd)
        return out

    def _device(self) -> torch.device:
        return self.mel_fb.device


__all__ = ["PADDINGS", "Padding", "StftMel", "as_batch", "fit_length", "hz_to_mel_slaney", "mel_to_hz_slaney",
           "periodic_hann", "slaney_mel_filterbank"]
