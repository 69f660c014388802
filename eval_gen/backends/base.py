"""The embedding-backend interface and helpers shared by every backend.

A backend turns a list of mono waveforms (any sample rate; the backend resamples to its own
``sample_rate`` with :func:`basekit.audio.resample`) into per-clip embedding matrices ``[F_i, dim]``: one row
per frame for frame-level models (VGGish: 0.96 s examples) and one row per clip otherwise. Backends are
deterministic (eval mode, no random crops) and batch clips of equal length together.
"""

from __future__ import annotations

import hashlib
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Iterable, Literal, Sequence

import numpy as np

from basekit.audio import resample
from basekit.errors import UserError

Activation = Literal["sigmoid", "softmax"]


class EmbeddingBackend(ABC):
    """Base class. Subclasses set ``name``, ``sample_rate``, ``dim`` and implement :meth:`_embed_batch`."""

    name: str = "backend"
    sample_rate: int = 16000
    dim: int = 0
    #: "frames" for models that give several rows per clip (the FAD literature pools frames), else "clip".
    default_pooling: Literal["frames", "clip"] = "clip"
    #: number of classes when the backend is also a classifier (used for KL), else None.
    n_classes: int | None = None
    activation: Activation | None = None
    batch_size: int = 16

    # ---- public API -------------------------------------------------------------------------------
    def embed(self, waves: Sequence[np.ndarray], sr: int) -> list[np.ndarray]:
        """Embed ``waves`` (list of ``[T_i]`` float arrays at ``sr``) -> list of ``[F_i, dim]`` float32."""
        prepared = self.prepare(waves, sr)
        out: list[np.ndarray | None] = [None] * len(prepared)
        for idx in _batches_by_length(prepared, self.batch_size):
            embs = self._embed_batch([prepared[i] for i in idx])
            for i, e in zip(idx, embs):
                out[i] = np.asarray(e, dtype=np.float32).reshape(-1, self.dim)
        return out  # type: ignore[return-value]

    def logits(self, waves: Sequence[np.ndarray], sr: int) -> np.ndarray:
        """Class logits ``[N, n_classes]`` (only for classifier backends)."""
        if self.n_classes is None:
            raise UserError(
                f"backend {self.name!r} is not a classifier, so it cannot give class probabilities for KL; "
                "pass --classifier panns-cnn14 --classifier-weights FILE (or builtin-events)"
            )
        prepared = self.prepare(waves, sr)
        out = np.zeros((len(prepared), self.n_classes), dtype=np.float64)
        for idx in _batches_by_length(prepared, self.batch_size):
            out[idx] = self._logits_batch([prepared[i] for i in idx])
        return out

    def cache_key(self) -> str:
        """A string that changes whenever the embeddings could change (name, settings, weights content)."""
        return f"{self.name}|sr={self.sample_rate}|dim={self.dim}|{self._settings_key()}"

    # ---- helpers for subclasses ------------------------------------------------------------------
    def prepare(self, waves: Sequence[np.ndarray], sr: int) -> list[np.ndarray]:
        """Validate and resample each clip to ``self.sample_rate`` (float32 ``[T]``)."""
        out = []
        for i, w in enumerate(waves):
            a = np.asarray(w, dtype=np.float32)
            if a.ndim == 2 and min(a.shape) <= 8:  # [C, T] or [T, C]: average channels
                a = a.mean(axis=0 if a.shape[0] <= 8 else 1)
            if a.ndim != 1 or a.size == 0:
                raise UserError(f"clip {i}: expected a mono waveform [T] with samples, got shape {np.shape(w)}")
            if not np.all(np.isfinite(a)):
                raise UserError(f"clip {i}: waveform holds NaN or infinite samples")
            out.append(resample(a, int(sr), self.sample_rate) if int(sr) != self.sample_rate else a)
        return out

    @abstractmethod
    def _embed_batch(self, waves: list[np.ndarray]) -> Iterable[np.ndarray]:
        """Embed equal-length waves at ``self.sample_rate`` -> one ``[F, dim]`` array per clip."""

    def _logits_batch(self, waves: list[np.ndarray]) -> np.ndarray:  # pragma: no cover - classifiers override
        raise NotImplementedError

    def _settings_key(self) -> str:
        return ""


def _batches_by_length(waves: Sequence[np.ndarray], batch_size: int) -> list[list[int]]:
    """Index groups of equal-length clips, at most ``batch_size`` each (no padding changes any result)."""
    groups: dict[int, list[int]] = {}
    for i, w in enumerate(waves):
        groups.setdefault(int(w.shape[-1]), []).append(i)
    out = []
    for idx in groups.values():
        out.extend(idx[s : s + batch_size] for s in range(0, len(idx), batch_size))
    return out


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha256 of a file's content (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def path_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file, or of every file under a folder (relative names + contents, sorted)."""
    p = Path(path)
    if p.is_file():
        return file_sha256(p)
    h = hashlib.sha256()
    for f in sorted(q for q in p.rglob("*") if q.is_file()):
        h.update(str(f.relative_to(p)).encode())
        h.update(file_sha256(f).encode())
    return h.hexdigest()


def load_torch_state(path: str | os.PathLike, expected: str, trust_pickle: bool = False) -> dict:
    """Load a ``torch.save`` file as a dict, with one-line errors for missing or undecodable files.

    ``weights_only=True`` is tried first (no code runs while unpickling); checkpoints that store other Python
    objects need ``trust_pickle=True``.
    """
    import torch  # noqa: PLC0415 (torch is heavy; loaded only when this path runs)

    p = Path(path)
    if not p.is_file():
        raise UserError(f"{expected} weights file not found: {p} (give the path to the downloaded file)")
    try:
        obj = torch.load(str(p), map_location="cpu", weights_only=not trust_pickle)
    except Exception as exc:  # pickle / zip / weights_only errors
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = "" if trust_pickle else " (if you trust the file, pass trust_pickle=True / --backend-arg trust_pickle=1)"
        raise UserError(f"cannot load {expected} weights from {p}: {first[:200]}{hint}") from None
    if not isinstance(obj, dict):
        raise UserError(f"{p} is not a {expected} state dict (found a {type(obj).__name__})")
    return obj


def check_state_dict(sd: dict, module, path: str | os.PathLike, expected: str) -> None:
    """Raise a one-line :class:`UserError` unless ``sd`` has exactly the keys and shapes of ``module``."""
    want = module.state_dict()
    missing = [k for k in want if k not in sd]
    if missing:
        found = ", ".join(list(sd)[:3]) or "no keys"
        raise UserError(
            f"{path} is not a {expected} weights file: {len(missing)} expected keys are missing "
            f"(e.g. {missing[0]}; the file has {found}, ...)"
        )
    for k, v in want.items():
        got = tuple(getattr(sd[k], "shape", ()))
        if got != tuple(v.shape):
            raise UserError(
                f"{path} does not match the {expected} architecture: {k} has shape {got}, expected {tuple(v.shape)}"
            )
