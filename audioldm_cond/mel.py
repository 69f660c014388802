"""AudioLDM's mel front end: ``TacotronSTFT``'s magnitude STFT, Slaney mel, ``log(clamp(x, 1e-5))``.

Output ``[B, 1, frames, 64]`` at 16 kHz with hop 160 (AudioLDM's data pipeline), built on ``basekit.mel.StftMel``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from basekit.errors import UserError
from basekit.mel import StftMel, as_batch


@dataclass
class AudioLDMMelConfig:
    """Settings of :class:`AudioLDMMelFrontEnd` (AudioLDM's 16 kHz, 64-band front end)."""

    sample_rate: int = 16000
    n_fft: int = 1024
    hop_length: int = 160
    n_mels: int = 64
    f_min: float = 0.0
    f_max: float = 8000.0


class AudioLDMMelFrontEnd(StftMel):
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
        x, _ = as_batch(waves, None, self._device(), self.compute_dtype)
        frames = self.mel_frames(x.shape[1])
        if frames < 1:
            raise UserError(f"clip of {x.shape[1]} samples is shorter than one hop ({self.hop_length} samples)")
        mel = self._mel_spectrum(x, power=1.0)[:, :frames]
        return torch.log(mel.clamp(min=1e-5))[:, None]


__all__ = ["AudioLDMMelConfig", "AudioLDMMelFrontEnd"]
