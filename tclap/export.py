"""``tclap export``'s library call: load a CLAP from any source and write it as a transformers directory.

The directory format and the writer are :func:`tclap.models.export.export_bundle`.
"""

from __future__ import annotations

import os
from pathlib import Path

from tclap.models import load_clap
from tclap.models.export import export_bundle


def export_model(model: str, out_dir: str | os.PathLike, tokenizer: str | None = None, config: str | None = None,
                 device: str = "cpu") -> Path:
    """Load ``model`` with :func:`tclap.models.load_clap` (any source) and export it to ``out_dir``."""
    bundle = load_clap(model, device=device, tokenizer=tokenizer, config=config)
    return export_bundle(bundle, out_dir, provenance={"exported_from": str(model)})
