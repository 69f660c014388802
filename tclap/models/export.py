"""Export a CLAP bundle as a transformers directory (also this project's checkpoint format).

The directory holds:

* ``config.json`` + ``model.safetensors``: a ``transformers.ClapModel``; ``ClapTextModelWithProjection`` and
  ``ClapAudioModelWithProjection`` load the same files (their configs are nested in ``ClapConfig``), so the
  text tower drops into diffusers' ``AudioLDMPipeline`` as ``text_encoder``;
* ``processor_config.json`` + tokenizer files: a ``ClapProcessor`` (``ClapFeatureExtractor`` with our
  front-end settings + the tokenizer; transformers 5 keeps the extractor's settings inside
  ``processor_config.json``), loadable with ``ClapProcessor`` / ``ClapFeatureExtractor`` / ``AutoTokenizer``;
* ``tclap_config.json``: the resolved :class:`~tclap.models.configs.ClapArchConfig`, the front end and the
  provenance (source, versions, time, caller-supplied details such as training metadata).

Written atomically: everything goes to a temporary sibling directory that is renamed into place, so a
reader never sees a half-written export, and an interrupted export leaves the old one intact.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import shutil
import tempfile
from pathlib import Path

from basekit.atomic import replace_dir
from basekit.errors import UserError
from tclap.models.configs import FrontEndConfig
from tclap.models.frontends import TCLAP_CONFIG_FILE, make_feature_extractor
import tclap


def _frontend_config(bundle) -> FrontEndConfig:
    fe = bundle.frontend
    if hasattr(fe, "to_dict"):
        return FrontEndConfig(**fe.to_dict())
    if bundle.arch is not None:
        return bundle.arch.frontend
    raise UserError("the bundle's front end cannot describe its settings; build it with tclap.features.ClapMelFrontEnd")


def export_bundle(bundle, out_dir: str | os.PathLike, provenance: dict | None = None, overwrite: bool = True) -> Path:
    """Write ``bundle`` to ``out_dir`` (see the module docstring) and return the path.

    Args:
        bundle: a :class:`tclap.models.ClapBundle`.
        out_dir: target directory; replaced atomically if it already holds an export.
        provenance: extra JSON-serialisable details stored under ``"provenance"`` in ``tclap_config.json``.
        overwrite: replace an existing export (a non-empty directory that is *not* an export is never replaced).
    """
    import torch  # noqa: PLC0415 (torch is heavy; loaded only when this path runs)
    import transformers  # noqa: PLC0415 (transformers is heavy; loaded only when this path runs)
    from transformers import ClapProcessor  # noqa: PLC0415 (transformers is heavy; loaded only when this path runs)


    out = Path(out_dir).expanduser().resolve()
    if out.exists():
        if not out.is_dir():
            raise UserError(f"export target {out} is a file; pass a directory path")
        if any(out.iterdir()) and not (out / TCLAP_CONFIG_FILE).is_file():
            raise UserError(f"export target {out} is a non-empty directory that is not a tclap export; pick a new path")
        if not overwrite:
            raise UserError(f"export target {out} exists; remove it or allow overwriting")
    out.parent.mkdir(parents=True, exist_ok=True)
    fe_cfg = _frontend_config(bundle)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        bundle.model.save_pretrained(tmp, safe_serialization=True)
        ClapProcessor(feature_extractor=make_feature_extractor(fe_cfg), tokenizer=bundle.tokenizer).save_pretrained(tmp)
        meta = {
            "format": "tclap-clap-export/1",
            "config_name": bundle.config_name,
            "arch": dataclasses.asdict(bundle.arch) if bundle.arch is not None else None,
            "frontend": dataclasses.asdict(fe_cfg),
            "embed_dim": bundle.embed_dim,
            "sample_rate": bundle.sample_rate,
            "max_text_length": bundle.max_text_length,
            "logit_scale_a": float(bundle.model.logit_scale_a.detach().exp()),
            "logit_scale_t": float(bundle.model.logit_scale_t.detach().exp()),
            "provenance": {
                "source": str(bundle.source),
                "exported_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "tclap_version": tclap.__version__,
                "transformers_version": transformers.__version__,
                "torch_version": torch.__version__,
                **(provenance or {}),
            },
        }
        (tmp / TCLAP_CONFIG_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
