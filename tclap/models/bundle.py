"""``ClapBundle``: a transformers ``ClapModel`` with its tokenizer and mel front end, for training and evaluation.

The bundle has two faces:

* **evaluation** (``embed_text``, ``embed_audio``, ``embed_audio_files``): batched, ``torch.no_grad``, eval mode,
  deterministic (the front end centre-crops long clips, never a random crop), numpy-free torch output
  ``[N, D]`` of projected, L2-normalised embeddings on the CPU;
* **training** (``tokenize``, ``features``, ``text_embeds``, ``audio_embeds``, ``logit_scale_a/t``): the
  differentiable pieces the trainer composes, on the bundle's device.

Logit scales: ``ClapModel`` keeps two learned log-temperatures. ``ClapModel.forward`` computes
``logits_per_text = t @ a.T * exp(logit_scale_t)`` (text -> audio, rows are captions) and
``logits_per_audio = a @ t.T * exp(logit_scale_a)`` (audio -> text, rows are clips). :mod:`tclap.losses`
uses them the same way.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from basekit.errors import UserError
from basekit.audio import load_audio
from tclap.models.export import export_bundle


def _pooled(out) -> torch.Tensor:
    """The projected+normalised features of ``get_text_features`` / ``get_audio_features``, whatever they return.

    transformers 5.x returns a ``BaseModelOutputWithPooling`` whose ``pooler_output`` holds the projected,
    normalised features; 4.x returned the (unnormalised) projected tensor itself. This is the one place
    that knows; the result is always re-normalised (a no-op on 5.x).
    """
    if torch.is_tensor(out):
        feats = out
    elif hasattr(out, "pooler_output"):
        feats = out.pooler_output
    else:  # a tuple from return_dict=False
        feats = out[1]
    return F.normalize(feats, dim=-1)


class ClapBundle:
    """A CLAP model with its preprocessing.

    Attributes:
        model: ``transformers.ClapModel``.
        tokenizer: a RoBERTa(-style) tokenizer.
        frontend: :class:`tclap.features.ClapMelFrontEnd` (waves ``[B, T]`` -> ``[B, 1, frames, n_mels]``).
        sample_rate: the rate waves must have (Hz).
        config_name: the named architecture (``tiny``, ``htsat-tiny-roberta``, ...) or ``"custom"``.
        arch: the resolved :class:`tclap.models.configs.ClapArchConfig` when known, else None.
        source: where the weights came from (a name, directory, checkpoint path or hub id).
        max_text_length: longest token sequence fed to the text tower.
    """

    def __init__(self, model, tokenizer, frontend, config_name: str = "custom", source: str = "",
                 arch=None, max_text_length: int | None = None, device: str | torch.device = "cpu"):
        self.model = model
        self.tokenizer = tokenizer
        self.frontend = frontend
        self.config_name = config_name
        self.arch = arch
        self.source = source
        max_pos = int(model.config.text_config.max_position_embeddings) - 2  # RoBERTa offsets positions by 2
        self.max_text_length = min(max_text_length or max_pos, max_pos)
        self.to(device)

    # ------------------------------------------------------------------ housekeeping
    @property
    def sample_rate(self) -> int:
        return int(self.frontend.sample_rate)

    @property
    def embed_dim(self) -> int:
        return int(self.model.config.projection_dim)

    def to(self, device: str | torch.device) -> "ClapBundle":
        self.device = torch.device(device)
        self.model.to(self.device)
        self.frontend.to(self.device)
        return self

    @contextlib.contextmanager
    def _eval_mode(self) -> Iterator[None]:
        """Eval mode + no_grad for the duration, then restore the caller's train/eval state."""
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                yield
        finally:
            self.model.train(was_training)

    # ------------------------------------------------------------------ differentiable pieces (training)
    @property
    def logit_scale_a(self) -> torch.nn.Parameter:
        """log-temperature of audio -> text logits (rows = clips): ``a @ t.T * exp(logit_scale_a)``."""
        return self.model.logit_scale_a

    @property
    def logit_scale_t(self) -> torch.nn.Parameter:
        """log-temperature of text -> audio logits (rows = captions): ``t @ a.T * exp(logit_scale_t)``."""
        return self.model.logit_scale_t

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Tokenize captions: ``{"input_ids": [B, L], "attention_mask": [B, L]}`` on the bundle's device.

        Pads to the longest caption of the batch and truncates at ``max_text_length`` tokens.
        """
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise UserError(f"caption {i} is {type(t).__name__}, not a string; pass a list of captions")
        if not texts:
            raise UserError("no captions to tokenize: pass at least one caption")
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_text_length,
                             return_tensors="pt")
        return {"input_ids": enc["input_ids"].to(self.device), "attention_mask": enc["attention_mask"].to(self.device)}

    def features(self, waves, generator: torch.Generator | None = None, lengths=None) -> torch.Tensor:
        """Log-mel input features ``[B, 1, frames, n_mels]`` from waves ``[B, T]`` (or a list of ``[T_i]``).

        With ``generator`` clips longer than the model's window are randomly cropped (training); without
        it they are centre-cropped (evaluation).
        """
        return self.frontend(waves, generator=generator, lengths=lengths)

    def text_embeds(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, L]`` token ids -> ``[B, D]`` projected, L2-normalised text embeddings (keeps the graph)."""
        return _pooled(self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask))

    def audio_embeds(self, input_features: torch.Tensor) -> torch.Tensor:
        """``[B, 1, frames, n_mels]`` features -> ``[B, D]`` projected, L2-normalised audio embeddings."""
        if input_features.ndim != 4 or input_features.shape[1] != 1:
            raise UserError(
                f"audio features have shape {tuple(input_features.shape)}; expected [B, 1, frames, n_mels]"
            )
        kwargs = {}
        if self.model.config.audio_config.enable_fusion:  # fused models want the is_longer flag
            kwargs["is_longer"] = torch.zeros(input_features.shape[0], 1, dtype=torch.bool, device=input_features.device)
        return _pooled(self.model.get_audio_features(input_features=input_features, **kwargs))

    # ------------------------------------------------------------------ evaluation
    def embed_text(self, texts: Sequence[str], batch_size: int = 256, progress: bool = False) -> torch.Tensor:
        """Embed captions in batches: ``list[str]`` (N) -> ``[N, D]`` float32 on the CPU, deterministic."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts:
            return torch.zeros(0, self.embed_dim)
        out = []
        with self._eval_mode():
            for s in _batches(len(texts), batch_size, progress, "embed text"):
                enc = self.tokenize(texts[s])
                out.append(self.text_embeds(enc["input_ids"], enc["attention_mask"]).float().cpu())
        return torch.cat(out)

    def embed_audio(self, waves, batch_size: int = 64, progress: bool = False) -> torch.Tensor:
        """Embed clips at :attr:`sample_rate`: a list of ``[T_i]`` arrays or a ``[B, T]`` batch -> ``[N, D]``.

        Clips of any length: each is repeat-padded or centre-cropped to the model's window by the front
        end (deterministic), so a clip gets the same embedding alone or in any batch.
        """
        if torch.is_tensor(waves) or isinstance(waves, np.ndarray):
            w = torch.as_tensor(waves)
            if w.ndim == 1:
                w = w[None]
            if w.ndim != 2:
                raise UserError(f"audio batch has shape {tuple(w.shape)}; pass [B, T] mono waves or a list of [T]")
            clips = list(w)
        else:
            clips = list(waves)
        if not clips:
            return torch.zeros(0, self.embed_dim)
        out = []
        with self._eval_mode():
            for s in _batches(len(clips), batch_size, progress, "embed audio"):
                feats = self.features(clips[s])
                out.append(self.audio_embeds(feats).float().cpu())
        return torch.cat(out)

    def embed_audio_files(self, paths: Sequence[str | os.PathLike], batch_size: int = 64,
                          progress: bool = False) -> torch.Tensor:
        """Load audio files (resampled to :attr:`sample_rate`, mono) and embed them: ``[N, D]``."""

        paths = [Path(p) for p in paths]
        out = []
        # Load one batch at a time so a long list never holds all waveforms in memory.
        for s in _batches(len(paths), batch_size, progress, "embed files"):
            clips = [load_audio(p, sr=self.sample_rate) for p in paths[s]]
            out.append(self.embed_audio(clips, batch_size=batch_size))
        return torch.cat(out) if out else torch.zeros(0, self.embed_dim)

    # ------------------------------------------------------------------ export
    def save_pretrained(self, out_dir: str | os.PathLike, provenance: dict | None = None) -> Path:
        """Write an exported directory (see :func:`tclap.models.export.export_bundle`); also the checkpoint format."""

        return export_bundle(self, out_dir, provenance=provenance)


def _batches(n: int, batch_size: int, progress: bool, desc: str) -> Iterator[slice]:
    if batch_size < 1:
        raise UserError(f"batch_size must be >= 1, got {batch_size}")
    starts = range(0, n, batch_size)
    if progress:
        from tqdm.auto import tqdm  # noqa: PLC0415

        starts = tqdm(starts, desc=desc, unit="batch")
    for s in starts:
        yield slice(s, min(s + batch_size, n))
