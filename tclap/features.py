"""Mel front ends in torch: batched, on any device, precomputed window and filterbank.

The CLAP front end (AudioLDM's lives in ``audioldm_cond.mel``; both build on ``basekit.mel.StftMel``):

* :class:`ClapMelFrontEnd` re-implements the ``truncation="rand_trunc"`` path of transformers'
  ``ClapFeatureExtractor`` (the one LAION-CLAP's unfused HTSAT models use): repeat-pad or crop the clip to
  ``max_length_s``, centred STFT with a periodic Hann window and reflect padding, power spectrum, Slaney
  mel filterbank with Slaney area normalisation (``librosa.filters.mel``), then ``10 * log10(max(x, 1e-10))``.
  Output ``[B, 1, frames, n_mels]`` in dB, equal to ``ClapFeatureExtractor(...).input_features``.

It keeps the Hann window and the mel matrix as non-persistent buffers (derived from the config, so they
never appear in a checkpoint's ``state_dict``) and move with ``.to(device)``.

Precision: the reference ``ClapFeatureExtractor`` computes its FFT in float64. A float32 FFT carries
rounding noise of about 1e-7 of a frame's peak, so bands 120+ dB below a pure tone come out a few hundredths
of a dB off. ``ClapMelFrontEnd`` therefore runs the STFT in float64 by default (the mel product and the log
run in float32, which keeps ~1e-6 relative precision at any magnitude); ``dtype=torch.float32`` is faster on
consumer GPUs and stays within 1e-3 dB on natural (noisy, broadband) audio.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import torch

from basekit.errors import UserError
from basekit.mel import PADDINGS, Padding, StftMel, as_batch, fit_length


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


class ClapMelFrontEnd(StftMel):
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
        if padding not in PADDINGS:
            raise UserError(f"unknown padding {padding!r}; use one of {', '.join(PADDINGS)}")
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
        x, lens = as_batch(waves, lengths, self._device(), self.compute_dtype)
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


__all__ = ["ClapMelConfig", "ClapMelFrontEnd"]
