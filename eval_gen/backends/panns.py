"""PANNs CNN14 (Kong et al. 2020) written so that the public ``Cnn14_mAP=0.431.pth`` loads as is.

The checkpoint is ``{"model": state_dict, ...}`` with keys ``spectrogram_extractor.stft.conv_{real,imag}``
(the STFT as a frozen 1-D convolution, torchlibrosa), ``logmel_extractor.melW``, ``bn0``, ``conv_block1..6``,
``fc1`` and ``fc_audioset``. Settings of that checkpoint: 32 kHz, window 1024, hop 320, 64 mel bands
50–14000 Hz, 527 AudioSet classes. The embedding is the 2048-d ``relu(fc1(·))`` vector (what AudioLDM's
evaluation uses for its PANNs distances); the class logits ``fc_audioset(·)`` give the per-clip distribution
for KL (sigmoid: multi-label AudioSet tagging).
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from eval_gen.backends.base import EmbeddingBackend, check_state_dict, file_sha256, load_torch_state
from eval_gen.backends.mel import slaney_mel_matrix


class _STFT(nn.Module):
    """torchlibrosa's ``STFT``: DFT as two frozen conv1d kernels ``[n_fft//2+1, 1, n_fft]`` (Hann window)."""

    def __init__(self, n_fft: int, hop: int):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        n_bins = n_fft // 2 + 1
        win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)  # scipy 'hann', fftbins=True
        k = np.arange(n_fft)
        w = np.exp(-2j * np.pi * np.outer(k, k[:n_bins]) / n_fft) * win[:, None]  # [n_fft, n_bins]
        self.conv_real = nn.Conv1d(1, n_bins, n_fft, stride=hop, bias=False)
        self.conv_imag = nn.Conv1d(1, n_bins, n_fft, stride=hop, bias=False)
        self.conv_real.weight.data = torch.tensor(np.real(w).T[:, None, :], dtype=torch.float32)
        self.conv_imag.weight.data = torch.tensor(np.imag(w).T[:, None, :], dtype=torch.float32)
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, T] -> power spectrogram [B, 1, frames, n_fft//2+1]`` (centred, reflect padding)."""
        x = F.pad(x[:, None, :], (self.n_fft // 2, self.n_fft // 2), mode="reflect")
        real, imag = self.conv_real(x), self.conv_imag(x)  # [B, bins, frames]
        return (real**2 + imag**2).transpose(1, 2)[:, None]


class _Spectrogram(nn.Module):
    def __init__(self, n_fft: int, hop: int):
        super().__init__()
        self.stft = _STFT(n_fft, hop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stft(x)


class _LogMel(nn.Module):
    """``power [B, 1, frames, bins] -> 10·log10(max(power @ melW, 1e-10))`` (torchlibrosa, ref=1, top_db=None)."""

    def __init__(self, sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float):
        super().__init__()
        self.melW = nn.Parameter(torch.tensor(slaney_mel_matrix(sr, n_fft, n_mels, fmin, fmax), dtype=torch.float32),
                                 requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 10.0 * torch.log10(torch.clamp(torch.matmul(x, self.melW), min=1e-10))


class _ConvBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.bn2 = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor, pool: tuple[int, int]) -> torch.Tensor:
        x = F.relu_(self.bn1(self.conv1(x)))
        x = F.relu_(self.bn2(self.conv2(x)))
        return F.avg_pool2d(x, kernel_size=pool)


class Cnn14(nn.Module):
    """``forward(wave [B, T] at 32 kHz) -> (embedding [B, 2048], logits [B, classes])`` (eval mode: no dropout)."""

    def __init__(self, sample_rate: int = 32000, window_size: int = 1024, hop_size: int = 320, mel_bins: int = 64,
                 fmin: float = 50.0, fmax: float = 14000.0, classes_num: int = 527):
        super().__init__()
        self.spectrogram_extractor = _Spectrogram(window_size, hop_size)
        self.logmel_extractor = _LogMel(sample_rate, window_size, mel_bins, fmin, fmax)
        self.bn0 = nn.BatchNorm2d(mel_bins)
        chans = [1, 64, 128, 256, 512, 1024, 2048]
        for i in range(6):
            setattr(self, f"conv_block{i + 1}", _ConvBlock(chans[i], chans[i + 1]))
        self.fc1 = nn.Linear(2048, 2048, bias=True)
        self.fc_audioset = nn.Linear(2048, classes_num, bias=True)

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.logmel_extractor(self.spectrogram_extractor(wave))  # [B, 1, frames, mels]
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)  # batch norm over mel bands
        for i in range(6):
            x = getattr(self, f"conv_block{i + 1}")(x, (2, 2) if i < 5 else (1, 1))
        x = x.mean(dim=3)  # [B, C, time]
        x = x.max(dim=2).values + x.mean(dim=2)
        emb = F.relu_(self.fc1(x))
        return emb, self.fc_audioset(emb)


class PannsCnn14Backend(EmbeddingBackend):
    name = "panns-cnn14"
    dim = 2048
    activation = "sigmoid"
    default_pooling = "clip"

    def __init__(self, weights: str | os.PathLike | None = None, device: str = "cpu", batch_size: int = 8,
                 trust_pickle: bool = False, classes_num: int = 527, seed: int = 0, min_seconds: float = 1.0):
        self.sample_rate = 32000
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.min_seconds = float(min_seconds)
        torch.manual_seed(seed)  # only matters for weights=None (random-init test model)
        self.model = Cnn14(classes_num=classes_num).eval()
        self._key = "random-init"
        if weights is not None:
            ck = load_torch_state(weights, "PANNs CNN14", trust_pickle)
            sd = ck["model"] if isinstance(ck.get("model"), dict) else ck
            check_state_dict(sd, self.model, weights, "PANNs CNN14 (Cnn14_mAP=0.431.pth, 32 kHz)")
            self.model.load_state_dict({k: sd[k] for k in self.model.state_dict()})
            self._key = file_sha256(weights)
        self.n_classes = self.model.fc_audioset.out_features
        self.model.to(self.device)

    def _settings_key(self) -> str:
        return f"weights={self._key}|min_s={self.min_seconds}"

    @torch.no_grad()
    def _forward(self, waves: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        x = torch.from_numpy(np.stack(waves)).to(self.device)
        n_min = int(self.min_seconds * self.sample_rate)
        if x.shape[1] < n_min:  # five 2x poolings need >= 32 frames: zero-pad very short clips
            x = F.pad(x, (0, n_min - x.shape[1]))
        emb, logits = self.model(x)
        return emb.double().cpu().numpy(), logits.double().cpu().numpy()

    def _embed_batch(self, waves):
        return list(self._forward(waves)[0][:, None, :])

    def _logits_batch(self, waves):
        return self._forward(waves)[1]
