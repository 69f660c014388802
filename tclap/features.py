"""Mel front ends in torch: batched, on any device, precomputed window and filterbank.

Two front ends live here:

* :class:`ClapMelFrontEnd` re-implements the ``truncation="rand_trunc"`` path of transformers'
  ``ClapFeatureExtractor`` (the one LAION-CLAP's unfused HTSAT models use): repeat-pad or crop the clip to
  ``max_length_s``, centred STFT with a periodic Hann window and reflect padding, power spectrum, Slaney
  mel filterbank with Slaney area normalisation (``librosa.filters.mel``), then ``10 * log10(max(x, 1e-10))``.
  Output ``[B, 1, frames, n_mels]`` in dB, equal to ``ClapFeatureExtractor(...).input_features``.
* :class:`AudioLDMMelFrontEnd` re-implements AudioLDM's ``TacotronSTFT`` mel: magnitude (not power) STFT,
  the same Slaney mel, ``log(clamp(x, 1e-5))``. Output ``[B, 1, frames, 64]``.

Both keep the Hann window and the mel matrix as non-persistent buffers (derived from the config, so they
never appear in a checkpoint's ``state_dict``) and move with ``.to(device)``.

Precision: the reference ``ClapFeatureExtractor`` computes its FFT in float64. A float32 FFT carries
rounding noise of about 1e-7 of a frame's peak, so bands 120+ dB below a pure tone come out a few hundredths
of a dB off. ``ClapMelFrontEnd`` therefore runs the STFT in float64 by default (the mel product and the log
run in float32, which keeps ~1e-6 relative precision at any magnitude); ``dtype=torch.float32`` is faster on
consumer GPUs and stays within 1e-3 dB on natural (noisy, broadband) audio.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal, Sequence

import numpy as np
import torch
from torch import nn

from tclap.errors import UserError

Padding = Literal["repeatpad", "repeat", "pad"]
_PADDINGS = ("repeatpad", "repeat", "pad")


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


def _as_batch(
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
    if padding not in _PADDINGS:
        raise UserError(f"unknown padding {padding!r}; use one of {', '.join(_PADDINGS)}")
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


class _StftMel(nn.Module):
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
        10 s) costs more in memory traffic and page faults than the FFTs themselves (measured ~3x slower
        than blocks, single-threaded). The power is squared in place on the spectrum's real view.
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


@dataclass
class ClapMelConfig:
    """Settings of :class:`ClapMelFrontEnd` (the defaults are LAION-CLAP's HTSAT front end)."""

    sample_rate: int = 48000
    n_fft: int = 1024
    hop_length: int = 480
    n_mels: int = 64
    f_min: float = 50.0
    f_max: float = 14000.0
    max_length_s: float = 10.0
    truncation: str = "rand_trunc"  # random crop in training (with a generator), centre crop in evaluation
    padding: str = "repeatpad"

    @property
    def frames(self) -> int:
        """Frames of a full-length clip: ``max_length_s * sample_rate / hop_length + 1``."""
        return int(round(self.max_length_s * self.sample_rate)) // self.hop_length + 1


class ClapMelFrontEnd(_StftMel):
    """Torch twin of ``ClapFeatureExtractor(truncation="rand_trunc")``: waves -> log-mel in dB.

    ``forward(waves [B, T], generator=None) -> [B, 1, frames, n_mels]`` with
    ``frames = 1 + max_length // hop_length`` (centred STFT), float32 on the module's device.
    """

    def __init__(
        self,
        sample_rate: int = 48000,
        n_fft: int = 1024,
        hop_length: int = 480,
        n_mels: int = 64,
        f_min: float = 50.0,
        f_max: float = 14000.0,
        max_length_s: float = 10.0,
        truncation: str = "rand_trunc",
        padding: Padding = "repeatpad",
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__(sample_rate, n_fft, hop_length, n_mels, f_min, f_max, dtype)
        if truncation != "rand_trunc":
            raise UserError(
                f"truncation {truncation!r} is not supported by ClapMelFrontEnd; it implements 'rand_trunc' "
                "(the unfused CLAP models). For fused checkpoints use transformers' ClapFeatureExtractor"
            )
        if padding not in _PADDINGS:
            raise UserError(f"unknown padding {padding!r}; use one of {', '.join(_PADDINGS)}")
        if max_length_s <= 0:
            raise UserError(f"max_length_s must be positive, got {max_length_s}")
        self.max_length_s = float(max_length_s)
        self.max_length = int(round(max_length_s * sample_rate))
        self.truncation = truncation
        self.padding = padding

    @property
    def config(self) -> ClapMelConfig:
        return ClapMelConfig(
            self.sample_rate, self.n_fft, self.hop_length, self.n_mels, self.f_min, self.f_max,
            self.max_length_s, self.truncation, self.padding,
        )

    def to_dict(self) -> dict:
        return asdict(self.config)

    @property
    def num_frames(self) -> int:
        """Frames per output: ``1 + max_length // hop_length``."""
        return 1 + self.max_length // self.hop_length

    @classmethod
    def from_feature_extractor(cls, fe, **overrides) -> "ClapMelFrontEnd":
        """Build a front end with the settings of a ``transformers.ClapFeatureExtractor``.

        ``fe.top_db`` is ignored on purpose: ``ClapFeatureExtractor`` stores it but never applies it.
        ``overrides`` replace single settings (e.g. ``truncation="rand_trunc"`` for an extractor saved with the
        ``fusion`` default whose model is unfused, or ``dtype``).
        """
        kwargs = dict(
            sample_rate=int(fe.sampling_rate),
            n_fft=int(fe.fft_window_size),
            hop_length=int(fe.hop_length),
            n_mels=int(fe.feature_size),
            f_min=float(fe.frequency_min),
            f_max=float(fe.frequency_max),
            max_length_s=float(fe.nb_max_samples) / float(fe.sampling_rate),
            truncation=str(fe.truncation),
            padding=str(fe.padding),
        )
        kwargs.update(overrides)
        if kwargs["truncation"] == "fusion":
            raise UserError(
                "the feature extractor uses truncation='fusion' (fused CLAP); ClapMelFrontEnd implements "
                "'rand_trunc' only: pass truncation='rand_trunc' if the model is unfused (enable_fusion=False)"
            )
        return cls(**kwargs)

    def prepare(
        self,
        waves: torch.Tensor | np.ndarray | Sequence[np.ndarray | torch.Tensor],
        generator: torch.Generator | None = None,
        lengths: torch.Tensor | Sequence[int] | None = None,
    ) -> torch.Tensor:
        """Pad/crop waves to ``max_length`` samples as ``ClapFeatureExtractor`` does: ``[B, T] -> [B, max_length]``."""
        x, lens = _as_batch(waves, lengths, self._device(), self.compute_dtype)
        return fit_length(x, lens, self.max_length, self.padding, generator)

    def forward(
        self,
        waves: torch.Tensor | np.ndarray | Sequence[np.ndarray | torch.Tensor],
        generator: torch.Generator | None = None,
        lengths: torch.Tensor | Sequence[int] | None = None,
    ) -> torch.Tensor:
        """Log-mel features in dB.

        Args:
            waves: ``[B, T]`` (or ``[T]``, or a list of ``[T_i]`` numpy/torch clips of any lengths) mono audio at
                ``sample_rate``.
            generator: draws the crop offsets of clips longer than ``max_length_s`` (training); None gives a
                centre crop (deterministic evaluation).
            lengths: ``[B]`` valid samples per row when ``waves`` is a zero-padded batch; None = all of ``T``.

        Returns:
            ``[B, 1, frames, n_mels]`` float32, ``frames = 1 + max_length // hop_length``.
        """
        x = self.prepare(waves, generator, lengths)
        mel = self._mel_spectrum(x, power=2.0)
        # power_to_db with reference 1.0 and amin 1e-10 (transformers' mel_floor and min_value); no top_db
        db = 10.0 * torch.log10(mel.clamp(min=1e-10))
        return db[:, None]


@dataclass
class AudioLDMMelConfig:
    """Settings of :class:`AudioLDMMelFrontEnd` (AudioLDM's 16 kHz, 64-band front end)."""

    sample_rate: int = 16000
    n_fft: int = 1024
    hop_length: int = 160
    n_mels: int = 64
    f_min: float = 0.0
    f_max: float = 8000.0


class AudioLDMMelFrontEnd(_StftMel):
    """AudioLDM's ``TacotronSTFT`` log-mel: magnitude STFT, Slaney mel, ``log(clamp(mel, 1e-5))``.

    ``forward(waves [B, T]) -> [B, 1, mel_frames(T), n_mels]``. The centred STFT yields ``1 + T // hop``
    frames; the last one (centred beyond the clip's end) is dropped, as AudioLDM's data pipeline does
    (10.24 s -> 1024 frames), so a vocoder with ``hop_length`` samples per frame gives back ``T`` samples.

    The STFT runs in float32 by default, as in AudioLDM (its VAE was trained on float32 features); bands
    far below a pure tone then differ from a float64 reference by up to ~1e-2 in log. ``dtype=torch.float64``
    matches a float64 reference to ~1e-6.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 1024,
        hop_length: int = 160,
        n_mels: int = 64,
        f_min: float = 0.0,
        f_max: float = 8000.0,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__(sample_rate, n_fft, hop_length, n_mels, f_min, f_max, dtype)

    @property
    def config(self) -> AudioLDMMelConfig:
        return AudioLDMMelConfig(self.sample_rate, self.n_fft, self.hop_length, self.n_mels, self.f_min, self.f_max)

    def to_dict(self) -> dict:
        return asdict(self.config)

    def mel_frames(self, num_samples: int) -> int:
        """Number of mel frames :meth:`forward` returns for ``num_samples`` samples: ``num_samples // hop``."""
        return int(num_samples) // self.hop_length

    def num_samples(self, frames: int) -> int:
        """Samples that ``frames`` mel frames span (the vocoder's output length): ``frames * hop``."""
        return int(frames) * self.hop_length

    def forward(self, waves: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Log-mel features.

        Args:
            waves: ``[B, T]`` (or ``[T]``) mono audio at ``sample_rate``.

        Returns:
            ``[B, 1, T // hop_length, n_mels]`` float32 natural-log magnitudes (floor ``log(1e-5)``).
        """
        x, _ = _as_batch(waves, None, self._device(), self.compute_dtype)
        frames = self.mel_frames(x.shape[1])
        if frames < 1:
            raise UserError(f"clip of {x.shape[1]} samples is shorter than one hop ({self.hop_length} samples)")
        mel = self._mel_spectrum(x, power=1.0)[:, :frames]
        return torch.log(mel.clamp(min=1e-5))[:, None]


__all__ = [
    "AudioLDMMelConfig",
    "AudioLDMMelFrontEnd",
    "ClapMelConfig",
    "ClapMelFrontEnd",
    "fit_length",
    "hz_to_mel_slaney",
    "mel_to_hz_slaney",
    "periodic_hann",
    "slaney_mel_filterbank",
]
