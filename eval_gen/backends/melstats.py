"""``mel-stats``: a weight-free embedding (log-mel mean and spread per half-second block).

Not a perceptual model: it exists so that the whole scoring pipeline runs and is tested without any weights
file. Each 0.5 s block gives one row ``[mean_over_time(logmel), std_over_time(logmel)]`` (``dim = 2·n_mels``).
"""

from __future__ import annotations

import numpy as np

from eval_gen.backends.base import EmbeddingBackend
from eval_gen.backends.mel import frame, log_mel_frames


class MelStatsBackend(EmbeddingBackend):
    name = "mel-stats"
    default_pooling = "frames"

    def __init__(self, sample_rate: int = 16000, n_mels: int = 32, block_s: float = 0.5, batch_size: int = 64):
        self.sample_rate = int(sample_rate)
        self.n_mels = int(n_mels)
        self.block_s = float(block_s)
        self.dim = 2 * self.n_mels
        self.batch_size = batch_size

    def _settings_key(self) -> str:
        return f"n_mels={self.n_mels}|block={self.block_s}|v1"

    def _embed_batch(self, waves):
        hop = self.sample_rate // 100  # 10 ms frames
        per_block = max(1, int(round(self.block_s * 100)))
        for w in waves:
            lm = log_mel_frames(w, self.sample_rate, n_fft=512 if self.sample_rate <= 24000 else 1024, hop=hop,
                                n_mels=self.n_mels)
            blocks = frame(lm, per_block, per_block)
            if len(blocks) == 0:  # clip shorter than one block: the whole clip is one block
                blocks = lm[None]
            yield np.concatenate([blocks.mean(axis=1), blocks.std(axis=1)], axis=1)
