"""``load_clap``: one factory for every CLAP model source.

``load_clap(name_or_path, device="cpu", tokenizer=None, config=None) -> ClapBundle`` resolves, in order:

1. a named config (``tiny``, ``htsat-tiny-roberta``, ``htsat-base-roberta``): random init, seeded (the same
   weights on every call);
2. a shipped model (``tiny-baseline``, ``tiny-tclap``; any directory under ``tclap/assets/models/``);
3. an existing directory: a transformers ``ClapModel`` export (``config.json`` + weights + processor files);
4. an existing file: an original LAION-CLAP ``.pt`` checkpoint, converted (:mod:`tclap.models.laion`);
5. ``owner/name``: a Hugging Face hub id, the only case in which the network may be used.

A string that looks like a local path (:func:`looks_like_local_path`: a trailing ``/``, ``./``, ``../``, ``~``, an
absolute path, a file suffix, or an existing parent folder) is never sent to the hub: when it does not exist the
answer is "not found", not the hub's repo-id rules.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import torch

from basekit.errors import UserError
from tclap.models.bundle import ClapBundle
from tclap.models.configs import CONFIG_NAMES, ClapArchConfig, get_config
from tclap.models.frontends import (
    TCLAP_CONFIG_FILE,
    frontend_config_from_extractor,
    make_frontend,
)
from tclap.models import laion
from tclap.models.tokenizer import build_tiny_tokenizer

SHIPPED_MODELS = ("tiny-baseline", "tiny-tclap")
ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets" / "models"
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")


#: Suffixes that make a name a file path, never a hub id (``owner/model-v1.5`` keeps its dot: not listed here).
PATH_SUFFIXES = (*CHECKPOINT_SUFFIXES, ".safetensors", ".json", ".onnx", ".zip", ".tar", ".gz")


def looks_like_local_path(name: str) -> bool:
    """Whether ``name`` is meant as a local file or folder rather than a hub id (``owner/name``).

    Decided by the look of the string: a trailing ``/`` (or ``os.sep``), a leading ``/``, ``./``, ``../``, ``.``
    or ``~``, a Windows drive or backslash, a file suffix from :data:`PATH_SUFFIXES`, more than one ``/``, or a
    first component that is an existing local folder (``runs/model`` when ``runs/`` exists).
    """
    s = str(name)
    if not s:
        return False
    seps = ("/", os.sep)
    if s.endswith(seps) or s.startswith(("/", ".", "~", os.sep)) or "\\" in s or (len(s) > 1 and s[1] == ":"):
        return True
    if Path(s).suffix.lower() in PATH_SUFFIXES or s.count("/") > 1:
        return True
    head = s.split("/", 1)[0]
    return "/" in s and Path(head).expanduser().is_dir()


def build_tokenizer(arch: ClapArchConfig, tokenizer=None, source: str = "model"):
    """Resolve the tokenizer: an object, a local directory, or the built-in tiny BPE for ``tokenizer="tiny"``."""
    if tokenizer is not None and not isinstance(tokenizer, (str, os.PathLike)):
        return tokenizer
    if tokenizer is not None:
        d = Path(tokenizer)
        if not d.is_dir():
            raise UserError(f"tokenizer directory not found: {d} (pass a local directory with tokenizer files)")
        from transformers import AutoTokenizer  # noqa: PLC0415 (transformers is heavy; loaded only when this path runs)

        try:
            return AutoTokenizer.from_pretrained(str(d), local_files_only=True)
        except Exception as exc:  # noqa: BLE001 (transformers raises OSError/ValueError/TypeError here)
            raise UserError(f"cannot load a tokenizer from {d}: {str(exc).splitlines()[0][:200]}") from None
    if arch.tokenizer == "tiny":

        return build_tiny_tokenizer(model_max_length=arch.text.max_length)
    raise UserError(
        f"{source} carries no tokenizer: pass --tokenizer DIR (a local RoBERTa tokenizer directory, e.g. a copy "
        "of roberta-base or laion/clap-htsat-unfused); nothing is downloaded"
    )


def _check_vocab(model, tokenizer, source: str) -> None:
    n_tok, n_emb = len(tokenizer), int(model.config.text_config.vocab_size)
    if n_tok > n_emb:
        raise UserError(
            f"{source}: the tokenizer has {n_tok} tokens but the text model only {n_emb} embeddings; pass the "
            "tokenizer the model was trained with"
        )


def from_config(arch: ClapArchConfig | str, device="cpu", tokenizer=None, seed: int = 0) -> ClapBundle:
    """A randomly initialised model of a named (or given) architecture; seeded, so repeatable."""
    from transformers import ClapModel  # noqa: PLC0415 (transformers is heavy; loaded only when this path runs)

    arch = get_config(arch) if isinstance(arch, str) else arch
    tok = build_tokenizer(arch, tokenizer, source=f"config {arch.name!r}")
    with torch.random.fork_rng(devices=[]):  # seed init without touching the caller's RNG
        torch.manual_seed(seed)
        model = ClapModel(arch.to_hf(vocab_size=len(tok)))
    if arch.text.vocab_size is None:
        arch = dataclasses.replace(arch, text=dataclasses.replace(arch.text, vocab_size=len(tok)))
    return ClapBundle(model.eval(), tok, make_frontend(arch.frontend), config_name=arch.name,
                      source=f"config:{arch.name}", arch=arch, max_text_length=arch.text.max_length, device=device)


def from_directory(path: str | os.PathLike, device="cpu", tokenizer=None, hub: bool = False) -> ClapBundle:
    """A transformers ``ClapModel`` directory (or, with ``hub=True``, a hub id) with its processor files."""
    from transformers import ClapFeatureExtractor, ClapModel  # noqa: PLC0415 (transformers is heavy; loaded only when this path runs)

    src = str(path)
    local = not hub
    if local and not (Path(src) / "config.json").is_file():
        raise UserError(f"{src} is not a ClapModel directory (no config.json); export one with `tclap export`")
    if local:
        # Refuse another architecture before transformers half-loads it (and logs a warning about it).
        try:
            model_type = json.loads((Path(src) / "config.json").read_text()).get("model_type")
        except (OSError, ValueError, AttributeError):
            model_type = "unreadable"
        if model_type != "clap":
            raise UserError(f"{src} holds a {model_type!r} model, not a CLAP model (config.json model_type must be "
                            "'clap'); pass a ClapModel directory, a LAION-CLAP .pt or a config name")
    try:
        model = ClapModel.from_pretrained(src, local_files_only=local)
    except Exception as exc:  # noqa: BLE001 (OSError, ValueError, RuntimeError size mismatch...)
        raise UserError(f"cannot load a ClapModel from {src}: {str(exc).splitlines()[0][:240]}") from None
    arch = None
    meta_file = Path(src) / TCLAP_CONFIG_FILE
    if local and meta_file.is_file():
        try:
            meta = json.loads(meta_file.read_text())
            arch = ClapArchConfig.from_dict(meta["arch"]) if meta.get("arch") else None
        except (ValueError, KeyError, TypeError) as exc:
            raise UserError(f"{meta_file} is unreadable ({exc}); re-export the model") from None
    if tokenizer is None:
        try:
            from transformers import AutoTokenizer  # noqa: PLC0415 (transformers is heavy; loaded only when this path runs)

            tok = AutoTokenizer.from_pretrained(src, local_files_only=local)
        except Exception:  # noqa: BLE001 no tokenizer files: fall back below
            tok = build_tokenizer(arch, None, source=src) if arch is not None else None
        if tok is None:
            raise UserError(f"{src} has no tokenizer files: pass --tokenizer DIR or re-export with `tclap export`")
    else:
        tok = build_tokenizer(arch or get_config("htsat-tiny-roberta"), tokenizer, source=src)
    _check_vocab(model, tok, src)
    fusion = bool(model.config.audio_config.enable_fusion)
    try:
        fe_cfg = frontend_config_from_extractor(ClapFeatureExtractor.from_pretrained(src, local_files_only=local), fusion)
    except UserError:
        raise
    except Exception:  # noqa: BLE001 no preprocessor_config.json
        if arch is None:
            raise UserError(f"{src} has no feature-extractor settings (processor_config.json / preprocessor_config.json); re-export with `tclap export`") from None
        fe_cfg = arch.frontend
    name = arch.name if arch is not None else "custom"
    max_len = arch.text.max_length if arch is not None else 77
    return ClapBundle(model.eval(), tok, make_frontend(fe_cfg), config_name=name, source=src, arch=arch,
                      max_text_length=max_len, device=device)


def from_laion_checkpoint(path: str | os.PathLike, device="cpu", tokenizer=None,
                          config: str | ClapArchConfig | None = None) -> ClapBundle:
    """Convert an original LAION-CLAP ``.pt`` checkpoint (see :mod:`tclap.models.laion`)."""
    from transformers import ClapModel  # noqa: PLC0415 (transformers is heavy; loaded only when this path runs)


    src = str(path)
    hf_sd, _dropped = laion.laion_to_hf_state_dict(laion.read_checkpoint(path), source=src)
    found = laion.infer_arch(hf_sd, source=src)
    if config is not None:
        arch = get_config(config) if isinstance(config, str) else config
        laion.check_arch(arch, found, src)
        arch = dataclasses.replace(arch, text=dataclasses.replace(arch.text, vocab_size=found.text.vocab_size))
    else:
        arch = found
    tok = build_tokenizer(arch, tokenizer, source=f"LAION-CLAP checkpoint {src}")
    model = ClapModel(arch.to_hf())
    _check_vocab(model, tok, src)
    laion.load_hf_state_dict(model, hf_sd, src)
    return ClapBundle(model.eval(), tok, make_frontend(arch.frontend), config_name=arch.name, source=src,
                      arch=arch, max_text_length=arch.text.max_length, device=device)


def load_clap(name_or_path: str | os.PathLike, device: str | torch.device = "cpu", tokenizer=None,
              config: str | ClapArchConfig | None = None) -> ClapBundle:
    """Load a CLAP model with its tokenizer and front end from any source (see the module docstring).

    Args:
        name_or_path: a config name, a shipped model name, a ClapModel directory, a LAION ``.pt`` file or a hub id.
        device: where the model and front end live.
        tokenizer: a tokenizer object or local directory (needed for LAION ``.pt`` checkpoints of RoBERTa size).
        config: for ``.pt`` checkpoints, the expected architecture (checked against the weights); by default
            it is read off the tensor shapes.

    Returns:
        a :class:`ClapBundle` in eval mode.
    """
    name = str(name_or_path)
    if name in CONFIG_NAMES:
        return from_config(name, device=device, tokenizer=tokenizer)
    shipped = ASSETS_DIR / name
    if name in SHIPPED_MODELS or (os.sep not in name and "/" not in name and shipped.is_dir()):
        if not (shipped / "config.json").is_file():
            raise UserError(
                f"shipped model {name!r} is missing from {shipped}: run the embedded-model recipe "
                "(`tclap reproduce --preset tiny`) to build it, or pass a model directory"
            )
        return from_directory(shipped, device=device, tokenizer=tokenizer)
    p = Path(name).expanduser()
    if p.is_dir():
        return from_directory(p, device=device, tokenizer=tokenizer)
    if p.is_file():
        if p.suffix.lower() not in CHECKPOINT_SUFFIXES:
            raise UserError(f"{p} is not a checkpoint ({', '.join(CHECKPOINT_SUFFIXES)}) or a model directory")
        return from_laion_checkpoint(p, device=device, tokenizer=tokenizer, config=config)
    if looks_like_local_path(name):
        raise UserError(
            f"model {name!r} not found: no such folder or file {p.resolve()} "
            "(check the path; a ClapModel directory, a LAION-CLAP .pt checkpoint, or a hub id written owner/name)"
        )
    looks_like_hub_id = name.count("/") == 1 and " " not in name
    if looks_like_hub_id:
        return from_directory(name, device=device, tokenizer=tokenizer, hub=True)
    raise UserError(
        f"model {name!r} not found: pass a config name ({', '.join(CONFIG_NAMES)}), a shipped model "
        f"({', '.join(SHIPPED_MODELS)}), a ClapModel directory, a LAION-CLAP .pt checkpoint or a hub id (owner/name)"
    )
