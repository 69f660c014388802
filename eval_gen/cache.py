"""On-disk embedding cache keyed by file content, backend and backend settings.

Layout: ``<root>/<sha256(backend.cache_key())[:16]>/<sha256(file bytes)>.npy`` holding the clip's
``[F, dim]`` float32 embedding matrix. Because the key is the *content* of the audio file (not its name or
modification time) and the backend key includes the weights' sha256 and every setting that changes the
output, an edited clip or a different model can never reuse a stale entry. Writes are atomic (temp file +
rename), so an interrupted scoring run resumes from whatever it had cached.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np

from eval_gen.backends.base import EmbeddingBackend, file_sha256


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/tclap/eval_gen`` (``~/.cache/tclap/eval_gen``); read at call time, never at import."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tclap" / "eval_gen"


class EmbeddingCache:
    """``get(path) -> [F, dim] | None`` and ``put(path, emb)`` for one backend configuration."""

    def __init__(self, root: str | os.PathLike, backend: EmbeddingBackend, kind: str = "embed"):
        """``kind="logits"`` stores a classifier's ``[1, n_classes]`` logits under their own key."""
        self.backend_key = backend.cache_key() + ("" if kind == "embed" else f"|{kind}")
        self.dim = backend.dim if kind == "embed" else int(backend.n_classes or 0)
        self.dir = Path(root) / hashlib.sha256(self.backend_key.encode()).hexdigest()[:16]
        self.hits = 0
        self.misses = 0

    def _path(self, content_hash: str) -> Path:
        return self.dir / f"{content_hash}.npy"

    def get(self, content_hash: str) -> np.ndarray | None:
        p = self._path(content_hash)
        if not p.is_file():
            self.misses += 1
            return None
        try:
            a = np.load(p, allow_pickle=False)
        except (OSError, ValueError):  # a damaged entry is recomputed, never trusted
            self.misses += 1
            return None
        if a.ndim != 2 or a.shape[1] != self.dim:
            self.misses += 1
            return None
        self.hits += 1
        return a

    def put(self, content_hash: str, emb: np.ndarray) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        if not (self.dir / "backend.txt").exists():
            (self.dir / "backend.txt").write_text(self.backend_key + "\n", encoding="utf-8")
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npy", dir=str(self.dir))
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, np.asarray(emb, dtype=np.float32), allow_pickle=False)
            os.replace(tmp, self._path(content_hash))
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise


__all__ = ["EmbeddingCache", "default_cache_dir", "file_sha256"]
