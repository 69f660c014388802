"""VGGish (Hershey et al. 2017) written to load the standard torchvggish state dict.

The weights file is the one torchvggish publishes (``vggish-10086976.pth``): keys ``features.{0,3,6,8,11,13}``
(conv) and ``embeddings.{0,2,4}`` (fully connected). The PCA post-processor parameters (``pca_eigen_vectors
[128, 128]``, ``pca_means [128]``) come from ``vggish_pca_params-970ea276.pth`` (``pca_weights=``) or from
``pproc.*`` keys in the weights file. Without them, or with ``postprocess=False`` (the default, as
Kilgour et al.'s FAD and fadtk use), the embedding is the raw 128-d output of the last ReLU layer.

Front end (``vggish_input.waveform_to_examples``): 16 kHz, 25 ms periodic-Hann window, 10 ms hop, 512-point
|FFT|, 64 HTK mel bands 125–7500 Hz, ``log(mel + 0.01)``, non-overlapping 0.96 s examples of 96 frames.
A clip shorter than 0.96 s is zero-padded to one example (so no clip is dropped).
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn

from eval_gen.backends.base import EmbeddingBackend, check_state_dict, file_sha256, load_torch_state
from eval_gen.backends.mel import frame, periodic_hann, vggish_mel_matrix
from basekit.errors import UserError

EXAMPLE_FRAMES = 96
QUANT_MIN, QUANT_MAX = -2.0, 2.0


def _make_features() -> nn.Sequential:
    layers: list[nn.Module] = []
    c = 1
    for v in [64, "M", 128, "M", 256, 256, "M", 512, 512, "M"]:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(c, int(v), kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            c = int(v)
    return nn.Sequential(*layers)


class VGGish(nn.Module):
    """``forward(x [B, 1, 96, 64]) -> [B, 128]`` (raw embeddings; :meth:`postprocess` applies PCA + quantise)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = _make_features()
        self.embeddings = nn.Sequential(
            nn.Linear(512 * 4 * 6, 4096), nn.ReLU(True), nn.Linear(4096, 4096), nn.ReLU(True),
            nn.Linear(4096, 128), nn.ReLU(True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # [B, 512, 6, 4]
        # The released weights were converted from TensorFlow (NHWC): flatten in [B, H, W, C] order.
        x = x.permute(0, 2, 3, 1).contiguous().flatten(1)
        return self.embeddings(x)


def postprocess(emb: torch.Tensor, eigvec: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """VGGish PCA whitening + 8-bit quantisation, ``[B, 128] -> [B, 128]`` with values in 0..255."""
    pca = (eigvec @ (emb.T - means.reshape(-1, 1))).T
    clipped = pca.clamp(QUANT_MIN, QUANT_MAX)
    return torch.round((clipped - QUANT_MIN) * (255.0 / (QUANT_MAX - QUANT_MIN)))


def waveform_to_examples(wave: np.ndarray) -> np.ndarray:
    """16 kHz ``[T]`` -> log-mel examples ``[n, 96, 64]`` (float32), as torchvggish's front end."""
    x = np.asarray(wave, dtype=np.float64)
    frames = frame(x, 400, 160)
    if len(frames) == 0:
        frames = frame(np.pad(x, (0, 400 - len(x))), 400, 160)
    spec = np.abs(np.fft.rfft(frames * periodic_hann(400), 512))
    lm = np.log(spec @ vggish_mel_matrix() + 0.01)
    ex = frame(lm, EXAMPLE_FRAMES, EXAMPLE_FRAMES)
    if len(ex) == 0:  # shorter than 0.96 s: pad with the log of silence so the clip still counts
        pad = np.full((EXAMPLE_FRAMES - len(lm), lm.shape[1]), np.log(0.01))
        ex = np.concatenate([lm, pad])[None]
    return ex.astype(np.float32)


class VGGishBackend(EmbeddingBackend):
    name = "vggish"
    sample_rate = 16000
    dim = 128
    default_pooling = "frames"

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        pca_weights: str | os.PathLike | None = None,
        postprocess: bool = False,
        device: str = "cpu",
        batch_size: int = 16,
        trust_pickle: bool = False,
        seed: int = 0,
    ):
        self.device = torch.device(device)
        self.batch_size = batch_size
        torch.manual_seed(seed)  # only matters for weights=None (random-init test model)
        self.model = VGGish().eval()
        self._key = "random-init" if weights is None else ""
        self.pca: tuple[torch.Tensor, torch.Tensor] | None = None
        if weights is not None:
            sd = load_torch_state(weights, "VGGish", trust_pickle)
            sd = sd.get("state_dict", sd)
            check_state_dict(sd, self.model, weights, "VGGish (torchvggish vggish-10086976.pth)")
            self.model.load_state_dict({k: sd[k] for k in self.model.state_dict()})
            self._key = file_sha256(weights)
            if "pproc.pca_eigen_vectors" in sd:
                self.pca = (torch.as_tensor(sd["pproc.pca_eigen_vectors"]).float(),
                            torch.as_tensor(sd["pproc.pca_means"]).float().reshape(-1))
        if pca_weights is not None:
            p = load_torch_state(pca_weights, "VGGish PCA", trust_pickle)
            if "pca_eigen_vectors" not in p or "pca_means" not in p:
                raise UserError(f"{pca_weights} is not a VGGish PCA file (expected keys pca_eigen_vectors, pca_means)")
            self.pca = (torch.as_tensor(np.asarray(p["pca_eigen_vectors"])).float(),
                        torch.as_tensor(np.asarray(p["pca_means"])).float().reshape(-1))
            self._key += "|pca=" + file_sha256(pca_weights)
        if postprocess and self.pca is None:
            raise UserError("VGGish postprocess=True needs the PCA parameters: pass pca_weights=vggish_pca_params.pth")
        self.postprocess = bool(postprocess)
        self.model.to(self.device)

    def _settings_key(self) -> str:
        return f"weights={self._key}|post={self.postprocess}"

    @torch.no_grad()
    def _embed_batch(self, waves):
        ex = [waveform_to_examples(w) for w in waves]
        counts = [len(e) for e in ex]
        x = torch.from_numpy(np.concatenate(ex))[:, None].to(self.device)  # [sum n, 1, 96, 64]
        emb = torch.cat([self.model(x[s : s + 64]) for s in range(0, len(x), 64)])
        if self.postprocess:
            emb = postprocess(emb, self.pca[0].to(emb), self.pca[1].to(emb))
        out = emb.double().cpu().numpy()
        return np.split(out, np.cumsum(counts)[:-1])
