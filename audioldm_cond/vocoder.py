"""Log-mel spectrogram -> waveform for AudioLDM: the vocoders.

AudioLDM works on log-mel spectrograms: 16 kHz audio, STFT n_fft 1024 / hop 160 / Hann window, magnitude (not
power) through a 64-band Slaney mel filterbank up to 8 kHz, then ``log(clamp(mel, 1e-5))``
(``tclap.features.AudioLDMMelFrontEnd``). A generated mel goes back to a waveform through a vocoder:

- ``transformers.SpeechT5HifiGan`` (the vocoder in a diffusers AudioLDM directory, ``vocoder/``), or
- :class:`GriffinLimVocoder` when a model has none: a pseudo-inverse of the mel filterbank followed by fast
  Griffin-Lim phase reconstruction (Perraudin et al. 2013, momentum 0.99). No weights; quality is lower than a
  trained HiFi-GAN but it needs no training, which suits the tiny embedded models.

Both take ``[B, frames, n_mels]`` log-mels and return ``[B, frames * hop]`` float waveforms, as
``SpeechT5HifiGan.forward`` does, so the pipeline treats them alike.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from basekit.errors import UserError
from audioldm_cond.mel import AudioLDMMelConfig
from basekit.mel import periodic_hann, slaney_mel_filterbank

GRIFFIN_LIM_CONFIG = "griffinlim.json"


def mel_basis(cfg: AudioLDMMelConfig) -> torch.Tensor:
    """Slaney mel filterbank of the AudioLDM front end, ``[n_mels, n_fft // 2 + 1]`` float32."""
    fb = slaney_mel_filterbank(cfg.n_fft // 2 + 1, cfg.n_mels, cfg.f_min, cfg.f_max, cfg.sample_rate)
    return torch.from_numpy(np.ascontiguousarray(fb.T, dtype=np.float32))


@dataclass
class GriffinLimConfig:
    """Settings of :class:`GriffinLimVocoder` (saved as ``vocoder/griffinlim.json``)."""

    mel: AudioLDMMelConfig = field(default_factory=AudioLDMMelConfig)
    n_iter: int = 32
    momentum: float = 0.99
    power: float = 1.0  # >1 sharpens the magnitude before phase recovery (1 = as estimated)


class GriffinLimVocoder(nn.Module):
    """Log-mel ``[B, frames, n_mels]`` -> waveform ``[B, frames * hop]`` with fast Griffin-Lim.

    Deterministic: the initial phase is zero, so the same mel always gives the same audio. Exposes a
    ``config`` with ``sampling_rate``, ``model_in_dim`` and ``upsample_rates`` like ``SpeechT5HifiGan``.
    """

    def __init__(self, cfg: GriffinLimConfig | None = None):
        super().__init__()
        self.gl = cfg or GriffinLimConfig()
        m = self.gl.mel
        self.config = _VocoderConfig(sampling_rate=m.sample_rate, model_in_dim=m.n_mels, upsample_rates=[m.hop_length])
        self.register_buffer("window", torch.from_numpy(periodic_hann(m.n_fft)).float(), persistent=False)
        # pinv of the filterbank maps mel magnitudes back to linear-frequency magnitudes (least squares).
        self.register_buffer("inverse_basis", torch.linalg.pinv(mel_basis(m)), persistent=False)

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    def _stft(self, x: torch.Tensor) -> torch.Tensor:
        m = self.gl.mel
        return torch.stft(x, m.n_fft, m.hop_length, window=self.window, center=True, return_complex=True)

    def _istft(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        m = self.gl.mel
        return torch.istft(spec, m.n_fft, m.hop_length, window=self.window, center=True, length=length)

    @torch.no_grad()
    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        """``log_mel [B, frames, n_mels]`` (or ``[frames, n_mels]``) -> ``[B, frames * hop]`` (or ``[T]``)."""
        batched = log_mel.dim() == 3
        if not batched:
            log_mel = log_mel[None]
        m = self.gl.mel
        if log_mel.shape[-1] != m.n_mels:
            raise UserError(
                f"Griffin-Lim vocoder expects {m.n_mels} mel bins, got {log_mel.shape[-1]} "
                "(use the vocoder that matches the VAE's mel size)"
            )
        mel = torch.exp(log_mel.float()).transpose(1, 2)  # [B, n_mels, frames]
        mag = torch.clamp(torch.matmul(self.inverse_basis, mel), min=0.0) ** self.gl.power  # [B, freq, frames]
        frames = mag.shape[-1]
        # The front end keeps T // hop frames of a centred STFT that has T // hop + 1; repeat the last frame so
        # that the inverse STFT spans exactly frames * hop samples (the length a HiFi-GAN gives).
        mag = torch.cat([mag, mag[..., -1:]], dim=-1)
        length = frames * m.hop_length
        angles = torch.ones_like(mag, dtype=torch.complex64)
        prev = torch.zeros_like(angles)
        for _ in range(self.gl.n_iter):
            rebuilt = self._stft(self._istft(mag * angles, length))
            # Fast Griffin-Lim: extrapolate the phase estimate with momentum, then keep only the phase.
            accel = rebuilt - (self.gl.momentum / (1 + self.gl.momentum)) * prev
            angles = accel / accel.abs().clamp_min(1e-8)
            prev = rebuilt
        wave = self._istft(mag * angles, length)
        return wave if batched else wave[0]

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        (d / GRIFFIN_LIM_CONFIG).write_text(json.dumps(asdict(self.gl), indent=2))

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> "GriffinLimVocoder":
        path = Path(directory) / GRIFFIN_LIM_CONFIG
        try:
            raw = json.loads(path.read_text())
            cfg = GriffinLimConfig(mel=AudioLDMMelConfig(**raw.pop("mel")), **raw)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise UserError(f"cannot read Griffin-Lim vocoder config {path}: {exc} (re-save the model)") from None
        return cls(cfg)


@dataclass
class _VocoderConfig:
    """The three fields of ``SpeechT5HifiGanConfig`` that generation code reads."""

    sampling_rate: int
    model_in_dim: int
    upsample_rates: list[int]


def build_tiny_hifigan(mel: AudioLDMMelConfig | None = None, seed: int = 0, channels: int = 16):
    """A randomly initialised, small ``SpeechT5HifiGan`` for tests and benchmarks.

    Upsampling factors multiply to the hop length (160 = 4 * 4 * 5 * 2) so one mel frame gives ``hop``
    samples, as the real AudioLDM vocoder does.
    """
    from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig  # noqa: PLC0415 (heavy: keeps the import light)

    mel = mel or AudioLDMMelConfig()
    rates = _factor_hop(mel.hop_length)
    torch.manual_seed(seed)
    cfg = SpeechT5HifiGanConfig(
        model_in_dim=mel.n_mels,
        sampling_rate=mel.sample_rate,
        upsample_initial_channel=channels,
        upsample_rates=rates,
        upsample_kernel_sizes=[2 * r + r % 2 for r in rates],  # (k - r) even: exactly r samples per input
        resblock_kernel_sizes=[3],
        resblock_dilation_sizes=[[1, 3]],
        normalize_before=False,
    )
    return SpeechT5HifiGan(cfg).eval()


def _factor_hop(hop: int) -> list[int]:
    """Split ``hop`` into small upsampling factors (160 -> [5, 4, 4, 2])."""
    rates, rest = [], hop
    for f in (5, 4, 3, 2):
        while rest % f == 0 and rest > 1 and len(rates) < 4:
            rates.append(f)
            rest //= f
    if rest != 1:
        rates.append(rest)
    return rates
