"""CLAP / T-CLAP embeddings through :func:`tclap.models.load_clap` (any model tclap loads).

``model`` is whatever ``load_clap`` accepts: the shipped names ``tiny-tclap`` / ``tiny-baseline``, a
transformers ``ClapModel`` folder, a hub id, or a LAION-CLAP ``.pt`` checkpoint. Embeddings are the projected,
L2-normalised vectors of the bundle (one row per clip; the bundle centre-crops long clips deterministically).
This backend also embeds text, which the CLAP score and the temporal-order accuracy need.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from eval_gen.backends.base import EmbeddingBackend, path_sha256
from basekit.errors import UserError


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


class ClapBackend(EmbeddingBackend):
    name = "clap"
    default_pooling = "clip"

    def __init__(self, model: str = "tiny-tclap", device: str = "cpu", batch_size: int = 16, weights: str | None = None):
        try:
            from tclap.models import load_clap
        except ImportError as exc:  # the models package is optional at import time of eval_gen
            raise UserError(f"the CLAP backend needs tclap.models, which failed to import: {exc}") from None
        name = str(weights) if weights is not None else str(model)
        self.model_name = name
        self.bundle = load_clap(name, device=device)
        self.sample_rate = int(self.bundle.sample_rate)
        self.batch_size = batch_size
        cfg = getattr(getattr(self.bundle, "model", None), "config", None)
        dim = getattr(cfg, "projection_dim", None)
        if dim is None:  # fall back to one probe clip
            dim = self.bundle_embed_audio([np.zeros(self.sample_rate, dtype=np.float32)]).shape[1]
        self.dim = int(dim)
        p = Path(name)
        self._key = f"{name}|{path_sha256(p)}" if p.exists() else name

    def _settings_key(self) -> str:
        return f"model={self._key}"

    def bundle_embed_audio(self, waves: list[np.ndarray]) -> np.ndarray:
        return _to_numpy(self.bundle.embed_audio(list(waves)))

    def _embed_batch(self, waves):
        return list(self.bundle_embed_audio(waves)[:, None, :])

    def embed_text(self, texts: list[str]) -> np.ndarray:
        """``list[str] -> [N, dim]`` L2-normalised text embeddings."""
        out = [_to_numpy(self.bundle.embed_text(list(texts[s : s + 64]))) for s in range(0, len(texts), 64)]
        return np.concatenate(out) if out else np.zeros((0, self.dim))
