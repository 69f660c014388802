"""Embedding backends behind one registry: ``get_backend(name, **kwargs)``.

Names: ``mel-stats`` (weight-free, for tests and smoke runs), ``vggish`` (``weights=`` torchvggish file),
``panns-cnn14`` (``weights=`` Cnn14_mAP=0.431.pth; also a classifier for KL), ``clap`` / ``tclap``
(``model=`` anything :func:`tclap.models.load_clap` loads; ``tiny-tclap`` by default) and ``builtin-events``
(the frame-level detector for the built-in bank, a softmax classifier). Heavy modules load lazily.
"""

from __future__ import annotations

import importlib

from eval_gen.backends.base import EmbeddingBackend
from basekit.errors import UserError

_REGISTRY: dict[str, tuple[str, str, dict]] = {
    "mel-stats": ("eval_gen.backends.melstats", "MelStatsBackend", {}),
    "vggish": ("eval_gen.backends.vggish", "VGGishBackend", {}),
    "panns-cnn14": ("eval_gen.backends.panns", "PannsCnn14Backend", {}),
    "clap": ("eval_gen.backends.clap", "ClapBackend", {}),
    "tclap": ("eval_gen.backends.clap", "ClapBackend", {"model": "tiny-tclap"}),
    "builtin-events": ("eval_gen.detector", "DetectorBackend", {}),
}


def available_backends() -> list[str]:
    return sorted(_REGISTRY)


def get_backend(name: str, **kwargs) -> EmbeddingBackend:
    """Build the backend ``name`` with its keyword settings (e.g. ``weights=``, ``model=``, ``device=``)."""
    if name not in _REGISTRY:
        raise UserError(f"unknown backend {name!r}; choose one of {', '.join(available_backends())}")
    mod, cls, defaults = _REGISTRY[name]
    kw = {**defaults, **{k: v for k, v in kwargs.items() if v is not None}}
    try:
        backend = getattr(importlib.import_module(mod), cls)(**kw)
    except TypeError as exc:
        if "unexpected keyword" in str(exc):
            raise UserError(f"backend {name!r}: {exc}") from None
        raise
    # Reports and cache keys carry the name the user asked for: ``tclap`` is the CLAP backend with T-CLAP weights,
    # and its output says ``backend: tclap``, not the class's ``clap``.
    backend.name = name
    return backend


__all__ = ["EmbeddingBackend", "available_backends", "get_backend"]
