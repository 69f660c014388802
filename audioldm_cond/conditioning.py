"""Conditioning encoders: a CLAP / T-CLAP embedding as AudioLDM's condition.

AudioLDM conditions its UNet on one CLAP vector per clip (FiLM-style, through the UNet's
``class_embed_type="simple_projection"`` + ``class_embeddings_concat=True``; there is no cross-attention text).
CLAP puts audio and text in one space, so AudioLDM *trains* on the CLAP **audio** embedding of the training clip
and *generates* from the CLAP **text** embedding of the prompt (AudioLDM paper, Sec. 3.2). Swapping LAION-CLAP for
T-CLAP is what the T-CLAP paper evaluates (its Table 4: AudioLDM_L vs AudioLDM_T).

Contract (other modules code against it):

- ``ClapConditioner(clap, source="text"|"audio"|"mix", cfg_dropout=0.1, audio_prob=0.5, adapter_dim=None)``;
  ``clap`` is a ``tclap.models.ClapBundle`` or anything ``tclap.models.load_clap`` loads (``tiny-tclap``,
  ``tiny-baseline``, an exported directory, a hub id, a LAION ``.pt``), so swapping the encoder is one argument.
- ``encode_text(prompts) -> [B, D]``: the projected text embedding, L2-normalised, computed exactly as diffusers'
  ``AudioLDMPipeline`` does (tokenise padded to ``model_max_length`` with truncation, ``text_embeds``, then
  ``F.normalize``), so a UNet trained here also runs in diffusers' pipeline. Over-long prompts are truncated with
  a warning naming the prompt.
- ``encode_audio(waves [B, T], sr=None) -> [B, D]``: the CLAP audio embedding (resampled to the CLAP rate if
  ``sr`` differs), L2-normalised.
- ``unconditional(batch) -> [B, D]``: the embedding of the empty prompt ``""``, which is what classifier-free
  guidance uses as the null condition (as ``AudioLDMPipeline`` does).
- ``training_condition(waves, captions, generator) -> [B, D]``: the training condition for ``source``, with
  classifier-free-guidance dropout (each row replaced by ``unconditional`` with probability ``cfg_dropout``).
  Dropout happens ONLY here: the original AudioLDM code also drops at inference, which we do not.
- ``D`` is ``output_dim``: the CLAP projection size, or ``adapter_dim`` when a learned linear adapter is asked for
  (then the adapter's parameters are the conditioner's only trainable parameters; the CLAP stays frozen).
  ``check_fits(unet)`` raises a one-line :class:`UserError` when ``D`` differs from the UNet's
  ``projection_class_embeddings_input_dim``.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from basekit.errors import UserError

logger = logging.getLogger(__name__)

Source = Literal["text", "audio", "mix"]
SOURCES = ("text", "audio", "mix")


class TransformersClap:
    """A ``ClapBundle``-compatible wrapper of a transformers CLAP and its tokenizer (and feature extractor).

    Used for encoders that ``tclap.models`` does not wrap itself: the text-only ``ClapTextModelWithProjection``
    inside a diffusers AudioLDM directory (``text_encoder/`` + ``tokenizer/``), or a plain ``ClapModel``
    built in code. ``embed_audio`` needs a full ``ClapModel`` and a ``ClapFeatureExtractor``.
    """

    def __init__(self, model: nn.Module, tokenizer, feature_extractor=None, name: str = "transformers-clap"):
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.feature_extractor = feature_extractor
        self.name = name

    @property
    def sample_rate(self) -> int:
        return int(getattr(self.feature_extractor, "sampling_rate", 48000))

    @property
    def has_audio(self) -> bool:
        return self.feature_extractor is not None and hasattr(self.model, "get_audio_features")

    @torch.no_grad()
    def embed_text(self, texts: Sequence[str]) -> torch.Tensor:
        """``[N, D]`` L2-normalised projected text embeddings."""
        return clap_text_embeds(self.model, self.tokenizer, list(texts))

    @torch.no_grad()
    def embed_audio(self, waves) -> torch.Tensor:
        """``waves``: list of ``[T]`` arrays or ``[B, T]`` at :attr:`sample_rate` -> ``[N, D]`` normalised."""
        if not self.has_audio:
            raise UserError(
                f"CLAP encoder '{self.name}' has no audio branch (a text-only encoder); use conditioning source "
                "'text' or load a full CLAP model"
            )
        fe = self.feature_extractor
        limit = int(fe.nb_max_samples)
        batch = []
        for w in waves:
            w = np.asarray(w.detach().cpu() if isinstance(w, torch.Tensor) else w, dtype=np.float32)
            if len(w) > limit:  # centre crop: evaluation must be deterministic (no random truncation)
                start = (len(w) - limit) // 2
                w = w[start : start + limit]
            batch.append(w)
        feats = fe(batch, sampling_rate=fe.sampling_rate, return_tensors="pt")
        device = next(self.model.parameters()).device
        kwargs = {"input_features": feats["input_features"].to(device)}
        if "is_longer" in feats:
            kwargs["is_longer"] = feats["is_longer"].to(device)
        out = self.model.get_audio_features(**kwargs)
        emb = out.pooler_output if hasattr(out, "pooler_output") else out
        return F.normalize(emb.float(), dim=-1)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, tokenizer_dir: str | os.PathLike | None = None):
        """Load a ``ClapModel`` (or, failing that, a ``ClapTextModelWithProjection``) directory."""
        from transformers import (  # noqa: PLC0415 (heavy: keeps the import light)
            AutoTokenizer,
            ClapFeatureExtractor,
            ClapModel,
            ClapTextModelWithProjection,
        )

        d = Path(directory)
        cfg = _read_json(d / "config.json")
        try:
            if cfg.get("model_type") == "clap":
                model = ClapModel.from_pretrained(d)
                fe = ClapFeatureExtractor.from_pretrained(d) if (d / "preprocessor_config.json").exists() else None
            else:
                model, fe = ClapTextModelWithProjection.from_pretrained(d), None
            tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir or d)
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot load CLAP encoder from {d}: {str(exc).splitlines()[0]} (re-export it)") from None
        return cls(model, tokenizer, fe, name=str(d))


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"missing {path.name} in {path.parent} (is it a transformers model directory?)") from None
    except ValueError as exc:
        raise UserError(f"cannot parse {path}: {exc} (re-save the model)") from None


def tokenizer_max_length(tokenizer, model: nn.Module) -> int:
    """The token budget: the tokenizer's ``model_max_length``, capped by the text model's position table."""
    cfg = getattr(model.config, "text_config", model.config)
    # RoBERTa position ids start after padding_idx, so two positions are unusable.
    cap = int(getattr(cfg, "max_position_embeddings", 514)) - 2
    n = int(getattr(tokenizer, "model_max_length", cap) or cap)
    return min(n, cap)


def clap_text_embeds(
    model: nn.Module, tokenizer, prompts: list[str], warn: bool = True, max_len: int | None = None
) -> torch.Tensor:
    """Projected, L2-normalised CLAP text embeddings ``[N, D]``, the maths of diffusers' ``AudioLDMPipeline``.

    Works for a ``ClapModel`` and a ``ClapTextModelWithProjection`` alike (both hold ``text_model`` and
    ``text_projection``). Prompts longer than the token budget are truncated with a warning.
    """
    max_len = max_len or tokenizer_max_length(tokenizer, model)
    enc = tokenizer(prompts, padding="max_length", max_length=max_len, truncation=True, return_tensors="pt")
    if warn:
        full = tokenizer(prompts, padding=False, truncation=False)["input_ids"]
        for p, ids in zip(prompts, full):
            if len(ids) > max_len:
                logger.warning(
                    "prompt truncated to CLAP's %d tokens (%d given): %r; shorten it to keep its end",
                    max_len,
                    len(ids),
                    p,
                )
    device = next(model.parameters()).device
    out = model.text_model(input_ids=enc["input_ids"].to(device), attention_mask=enc["attention_mask"].to(device))
    emb = model.text_projection(out.pooler_output)
    return F.normalize(emb.float(), dim=-1)


def clap_projection_dim(model: nn.Module) -> int:
    """Projection size ``D`` of a ``ClapModel`` or ``ClapTextModelWithProjection``."""
    cfg = model.config
    dim = getattr(cfg, "projection_dim", None)
    if dim is None and hasattr(cfg, "text_config"):
        dim = cfg.text_config.projection_dim
    return int(dim)


TEXT_TOWER_PREFIXES = ("text_model.", "text_projection.")


def trained_text_tower_matches(model_dir: str | os.PathLike, clap_model: nn.Module) -> bool | None:
    """Whether ``clap_model``'s text tower holds the weights of the encoder an AudioLDM was trained with.

    The trained encoder is the one saved in ``model_dir`` (``clap/model.safetensors``, the full CLAP, or diffusers'
    ``text_encoder/model.safetensors``); the text tower is every ``text_model.*`` / ``text_projection.*`` tensor,
    named alike in ``ClapModel`` and ``ClapTextModelWithProjection``. Compared exactly (same names, shapes and
    values), read tensor by tensor from the file.

    Returns:
        True / False, or None when the model folder holds no safetensors encoder to compare with.
    """
    root = Path(model_dir)
    f = next((root / sub / "model.safetensors" for sub in ("clap", "text_encoder")
              if (root / sub / "model.safetensors").is_file()), None)
    if f is None:
        return None
    from safetensors import safe_open  # noqa: PLC0415

    mine = {k: v for k, v in clap_model.state_dict().items() if k.startswith(TEXT_TOWER_PREFIXES)}
    with safe_open(str(f), "pt") as h:
        keys = [k for k in h.keys() if k.startswith(TEXT_TOWER_PREFIXES)]
        if set(keys) != set(mine):
            return False
        for k in keys:
            saved, used = h.get_tensor(k), mine[k].detach().cpu()
            if saved.shape != used.shape or not torch.equal(saved.to(used.dtype), used):
                return False
    return True


def load_clap_encoder(name_or_path: str, device: str | torch.device = "cpu"):
    """Any encoder ``tclap.models.load_clap`` loads; directories also load without ``tclap.models``.

    A directory holding a ``ClapTextModelWithProjection`` (``model_type == "clap_text_model"``) is wrapped as a
    text-only :class:`TransformersClap`.
    """
    p = Path(os.path.expanduser(str(name_or_path)))
    if p.is_dir() and (p / "config.json").exists():
        if _read_json(p / "config.json").get("model_type") != "clap":
            return TransformersClap.from_pretrained(p)
    try:
        from tclap.models import load_clap  # noqa: PLC0415 - lazy: keeps import light, tclap.models is heavy
    except ImportError:
        if p.is_dir():
            return TransformersClap.from_pretrained(p)
        raise UserError(
            f"cannot load CLAP encoder '{name_or_path}': tclap.models is not available; pass a transformers "
            "ClapModel directory instead"
        ) from None
    return load_clap(str(name_or_path), device=device)


class ClapConditioner(nn.Module):
    """CLAP / T-CLAP embedding as the AudioLDM condition (see the module docstring for the contract).

    The CLAP model is frozen and held outside the module's parameters, so ``state_dict()`` holds only the
    optional adapter. ``to(device)`` moves both.
    """

    def __init__(
        self,
        clap,
        source: Source = "text",
        cfg_dropout: float = 0.1,
        audio_prob: float = 0.5,
        adapter_dim: int | None = None,
        device: str | torch.device = "cpu",
    ):
        super().__init__()
        if source not in SOURCES:
            raise UserError(f"conditioning source '{source}' is unknown; use one of {', '.join(SOURCES)}")
        if not 0.0 <= cfg_dropout < 1.0:
            raise UserError(f"cfg_dropout={cfg_dropout} must be in [0, 1) (0.1 is AudioLDM's value)")
        if not 0.0 <= audio_prob <= 1.0:
            raise UserError(f"audio_prob={audio_prob} must be in [0, 1]")
        self.clap_name = str(clap) if isinstance(clap, (str, os.PathLike)) else getattr(clap, "name", type(clap).__name__)
        # Held in __dict__ (not as a submodule): frozen, never saved with the conditioner's adapter weights.
        self.__dict__["clap"] = load_clap_encoder(str(clap), device) if isinstance(clap, (str, os.PathLike)) else clap
        self.clap.model.eval().requires_grad_(False)
        self.source = source
        self.cfg_dropout = float(cfg_dropout)
        self.audio_prob = float(audio_prob)
        self.clap_dim = clap_projection_dim(self.clap.model)
        self.adapter = nn.Linear(self.clap_dim, int(adapter_dim)) if adapter_dim else None
        self._null: torch.Tensor | None = None  # cached CLAP embedding of "" (before the adapter)
        if source in ("audio", "mix") and not self.has_audio:
            raise UserError(
                f"conditioning source '{source}' needs a CLAP with an audio branch, but '{self.clap_name}' is "
                "text-only; use source 'text' or a full CLAP model"
            )

    # ----------------------------------------------------------------------------------------- properties
    @property
    def output_dim(self) -> int:
        return self.adapter.out_features if self.adapter is not None else self.clap_dim

    @property
    def adapter_dim(self) -> int | None:
        return self.adapter.out_features if self.adapter is not None else None

    @property
    def device(self) -> torch.device:
        return next(self.clap.model.parameters()).device

    @property
    def max_text_length(self) -> int:
        """Token budget of the prompt (longer prompts are truncated with a warning)."""
        n = tokenizer_max_length(self.clap.tokenizer, self.clap.model)
        cap = getattr(self.clap, "max_text_length", None)
        return min(n, int(cap)) if cap else n

    @property
    def sample_rate(self) -> int:
        return int(self.clap.sample_rate)

    @property
    def has_audio(self) -> bool:
        flag = getattr(self.clap, "has_audio", None)
        if flag is not None:
            return bool(flag)
        return hasattr(self.clap.model, "get_audio_features")

    def to(self, *args, **kwargs):
        super().to(*args, **kwargs)
        device = torch._C._nn._parse_to(*args, **kwargs)[0]
        if device is not None:
            self.clap.model.to(device)
            self._null = None
        return self

    # ------------------------------------------------------------------------------------------ encoders
    def _adapt(self, emb: torch.Tensor) -> torch.Tensor:
        emb = emb.to(self.device)
        if self.adapter is None:
            return emb
        return self.adapter(emb.to(self.adapter.weight.dtype))

    def raw_text(self, prompts: Sequence[str], warn: bool = True) -> torch.Tensor:
        """CLAP text embeddings ``[B, clap_dim]`` (no adapter), as diffusers' ``AudioLDMPipeline`` computes them."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        with torch.no_grad():
            if hasattr(self.clap, "tokenizer") and hasattr(self.clap.model, "text_projection"):
                return clap_text_embeds(
                    self.clap.model, self.clap.tokenizer, prompts, warn=warn, max_len=self.max_text_length
                )
            return torch.as_tensor(np.asarray(self.clap.embed_text(prompts)), dtype=torch.float32)

    def raw_audio(self, waves, sr: int | None = None) -> torch.Tensor:
        """CLAP audio embeddings ``[B, clap_dim]`` (no adapter) of ``waves`` (``[B, T]`` or list of ``[T]``)."""
        if not self.has_audio:
            raise UserError(f"CLAP encoder '{self.clap_name}' has no audio branch; it cannot embed audio")
        if sr is not None and int(sr) != self.sample_rate:
            from basekit.audio import resample  # noqa: PLC0415 (scipy, soundfile: only when resampling)

            waves = [resample(_to_numpy(w), int(sr), self.sample_rate) for w in waves]
        elif isinstance(waves, torch.Tensor):
            waves = waves.detach().float().cpu()
        with torch.no_grad():
            emb = self.clap.embed_audio(waves)
        emb = emb if isinstance(emb, torch.Tensor) else torch.as_tensor(np.asarray(emb))
        return F.normalize(emb.float(), dim=-1).to(self.device)

    def encode_text(self, prompts: Sequence[str]) -> torch.Tensor:
        """``prompts`` (N strings) -> ``[N, D]`` condition vectors."""
        return self._adapt(self.raw_text(prompts))

    def encode_audio(self, waves, sr: int | None = None) -> torch.Tensor:
        """``waves [B, T]`` at ``sr`` (default: the CLAP rate) -> ``[B, D]`` condition vectors."""
        return self._adapt(self.raw_audio(waves, sr))

    def unconditional(self, batch: int) -> torch.Tensor:
        """``[batch, D]``: the empty prompt's embedding, classifier-free guidance's null condition."""
        if self._null is None:
            self._null = self.raw_text([""], warn=False)
        return self._adapt(self._null.expand(int(batch), -1))

    def training_condition(
        self,
        waves: torch.Tensor | None,
        captions: Sequence[str] | None,
        generator: torch.Generator | None = None,
        sr: int | None = None,
    ) -> torch.Tensor:
        """The training condition ``[B, D]`` with classifier-free-guidance dropout.

        Args:
            waves: ``[B, T]`` training clips at ``sr`` (default: the CLAP rate); needed for ``audio``/``mix``.
            captions: B captions; needed for ``text``/``mix``.
            generator: drives the per-row source choice (``mix``) and the dropout, for exact resume.
        """
        b = len(waves) if waves is not None else len(captions or [])
        if b == 0:
            raise UserError("training batch is empty (check the manifest and the batch size)")
        dev = self.device
        if self.source == "text" or (self.source == "mix" and waves is None):
            _need(captions, "captions", self.source)
            raw = self.raw_text(list(captions))
        elif self.source == "audio":
            _need(waves, "waves", self.source)
            raw = self.raw_audio(waves, sr)
        else:
            _need(captions, "captions", "mix")
            use_audio = torch.rand(b, generator=generator) < self.audio_prob  # [B] bool, on CPU like the generator
            raw = torch.empty(b, self.clap_dim, device=dev)
            idx_a = use_audio.nonzero().flatten().tolist()
            idx_t = (~use_audio).nonzero().flatten().tolist()
            if idx_a:
                raw[idx_a] = self.raw_audio([waves[i] for i in idx_a], sr)
            if idx_t:
                raw[idx_t] = self.raw_text([captions[i] for i in idx_t])
        if self.cfg_dropout > 0:
            drop = (torch.rand(b, generator=generator) < self.cfg_dropout).to(dev)
            if self._null is None:
                self._null = self.raw_text([""], warn=False)
            raw = torch.where(drop[:, None], self._null.to(dev).expand(b, -1), raw.to(dev))
        return self._adapt(raw)

    def check_fits(self, unet) -> None:
        """Raise a one-line :class:`UserError` when ``output_dim`` differs from the UNet's condition size."""
        want = getattr(unet.config, "projection_class_embeddings_input_dim", None)
        if want is None:
            raise UserError(
                "the UNet has no projection_class_embeddings_input_dim; AudioLDM UNets need "
                "class_embed_type='simple_projection'"
            )
        if int(want) != self.output_dim:
            raise UserError(
                f"conditioning encoder '{self.clap_name}' gives {self.output_dim}-d embeddings but the UNet expects "
                f"{int(want)}-d (projection_class_embeddings_input_dim); use an encoder with {int(want)}-d "
                f"projections, or learn a linear adapter (adapter_dim={int(want)}, --adapter)"
            )

    def text_encoder_with_projection(self):
        """A ``ClapTextModelWithProjection`` with this CLAP's text tower, for diffusers' ``AudioLDMPipeline``."""
        from transformers import ClapTextModelWithProjection  # noqa: PLC0415 (heavy: keeps the import light)

        m = self.clap.model
        if isinstance(m, ClapTextModelWithProjection):
            return m
        cfg = m.config.text_config
        cfg.projection_dim = m.config.projection_dim
        cfg.projection_hidden_act = getattr(m.config, "projection_hidden_act", cfg.projection_hidden_act)
        out = ClapTextModelWithProjection(cfg)
        state = {k: v for k, v in m.state_dict().items() if k.startswith(("text_model.", "text_projection."))}
        missing, unexpected = out.load_state_dict(state, strict=False)
        if unexpected or [k for k in missing if "position_ids" not in k]:
            raise RuntimeError(f"text tower copy mismatch: missing={missing} unexpected={unexpected}")
        return out.to(self.device).eval().requires_grad_(False)


def _need(value, what: str, source: str) -> None:
    if value is None:
        raise UserError(f"conditioning source '{source}' needs {what} in each training batch")


def _to_numpy(w) -> np.ndarray:
    if isinstance(w, torch.Tensor):
        return w.detach().float().cpu().numpy()
    return np.asarray(w, dtype=np.float32)
