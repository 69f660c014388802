"""Original LAION-CLAP checkpoints (``.pt``, HTSAT-tiny/base + RoBERTa) -> ``transformers.ClapModel``.

LAION's ``CLAP_Module`` saves ``{"epoch", "state_dict", "optimizer", ...}`` with ``module.``-prefixed keys
(the model was wrapped in DistributedDataParallel). Its modules map onto transformers' CLAP like this
(the mapping follows transformers' ``convert_clap_original_pytorch_to_hf.py``; the code is our own and
does not import ``laion_clap``, which downloads tokenizers at import):

=====================================================  ===============================================
LAION                                                  transformers ``ClapModel``
=====================================================  ===============================================
``audio_branch.bn0``                                   ``audio_model.audio_encoder.batch_norm``
``audio_branch.patch_embed.*``, ``.norm``, ``.layers.{i}.downsample.*``  same under ``audio_model.audio_encoder``
``audio_branch.layers.{i}.blocks.{j}.norm1 / norm2``   ``... .layernorm_before / layernorm_after``
``... .attn.qkv`` (fused ``[3C, C]``)                   ``... .attention.self.query / key / value`` (rows split in 3)
``... .attn.proj``                                     ``... .attention.output.dense``
``... .attn.relative_position_bias_table / _index``    ``... .attention.self.relative_position_bias_table / _index``
``... .mlp.fc1 / fc2``                                 ``... .intermediate.dense / output.dense``
``text_branch.*`` (a transformers RobertaModel)         ``text_model.*`` (same sub-keys)
``audio_projection.0 / .2``, ``text_projection.0 / .2``  ``*_projection.linear1 / linear2`` (Linear-ReLU-Linear)
``logit_scale_a``, ``logit_scale_t``                   same
=====================================================  ===============================================

Dropped on purpose: the STFT / mel buffers (``spectrogram_extractor``, ``logmel_extractor``: our front end
recomputes them), HTSAT's shifted-window ``attn_mask`` buffers (transformers recomputes them), the AudioSet
classifier (``tscam_conv``, ``head``) and LAION's ``audio_transform`` / ``text_transform`` MLPs (used only by
its optional MLP loss, never by the embeddings). Any other key means the checkpoint is not an
HTSAT + RoBERTa CLAP: a :class:`~basekit.errors.UserError` says so.
"""

from __future__ import annotations

import math
import os
import re
from collections import defaultdict
from pathlib import Path

import torch

from basekit.errors import UserError
from tclap.models.configs import CONFIG_NAMES, AudioTowerConfig, ClapArchConfig, TextTowerConfig, get_config

# LAION key prefixes that have no counterpart in ClapModel (see the module docstring).
_DROPPED_PREFIXES = (
    "audio_branch.spectrogram_extractor.", "audio_branch.logmel_extractor.", "audio_branch.tscam_conv.",
    "audio_branch.head.", "audio_transform.", "text_transform.",
)
_BLOCK_RENAMES = (  # inside audio_branch.layers.{i}.blocks.{j}.
    ("norm1.", "layernorm_before."),
    ("norm2.", "layernorm_after."),
    ("attn.proj.", "attention.output.dense."),
    ("attn.relative_position_bias_table", "attention.self.relative_position_bias_table"),
    ("attn.relative_position_index", "attention.self.relative_position_index"),
    ("mlp.fc1.", "intermediate.dense."),
    ("mlp.fc2.", "output.dense."),
)
_BLOCK_RE = re.compile(r"^audio_branch\.layers\.(\d+)\.blocks\.(\d+)\.(.+)$")
_PROJ_RE = re.compile(r"^(audio|text)_projection\.(\d+)\.(weight|bias)$")
_AUDIO_PASSTHROUGH = ("patch_embed.", "norm.", "bn0.")


def read_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a LAION-CLAP ``.pt`` file and return its model ``state_dict`` with the ``module.`` prefix removed.

    Accepts ``{"state_dict": ...}`` (how LAION saves) or a bare state dict. Loaded with
    ``weights_only=True``: a checkpoint that needs arbitrary code to unpickle is refused.
    """
    p = Path(path)
    if not p.is_file():
        raise UserError(f"checkpoint not found: {p} (check the path)")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, RuntimeError (zip), EOFError (truncated)
        raise UserError(
            f"cannot read checkpoint {p}: {str(exc).splitlines()[0][:200]} "
            "(is it a LAION-CLAP .pt file saved with torch.save? re-download it if it is truncated)"
        ) from None
    sd = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(sd, dict) or not sd or not all(torch.is_tensor(v) for v in sd.values()):
        raise UserError(f"checkpoint {p} holds no model state_dict (expected LAION's {{'state_dict': ...}} layout)")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in sd.items()}


def laion_to_hf_state_dict(sd: dict[str, torch.Tensor], source: str = "checkpoint") -> tuple[dict, list[str]]:
    """Rename a LAION-CLAP state dict (no ``module.`` prefix) to ``ClapModel`` keys.

    Returns:
        ``(hf_state_dict, dropped_keys)``; raises :class:`UserError` on a key that belongs to no known part
        (a different architecture, e.g. a PANN audio branch or a CLIP-style text transformer).
    """
    out: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    unknown: list[str] = []
    for key, value in sd.items():
        if key.startswith(_DROPPED_PREFIXES) or (key.startswith("audio_branch.") and key.endswith(".attn_mask")):
            dropped.append(key)
            continue
        if key in ("logit_scale_a", "logit_scale_t"):
            out[key] = value
            continue
        if key.startswith("text_branch."):
            if key.startswith(("text_branch.embeddings.", "text_branch.encoder.layer.", "text_branch.pooler.")):
                out["text_model." + key[len("text_branch."):]] = value
            else:
                unknown.append(key)
            continue
        m = _PROJ_RE.match(key)
        if m:
            branch, idx, kind = m.groups()
            linear = {"0": "linear1", "2": "linear2"}.get(idx)
            if linear is None:
                unknown.append(key)
            else:
                out[f"{branch}_projection.{linear}.{kind}"] = value
            continue
        m = _BLOCK_RE.match(key)
        if m:
            i, j, rest = m.groups()
            hf_prefix = f"audio_model.audio_encoder.layers.{i}.blocks.{j}."
            if rest.startswith("attn.qkv."):
                # fused [3C, C] projection -> rows [0:C]=query, [C:2C]=key, [2C:3C]=value (timm/Swin order)
                kind = rest[len("attn.qkv."):]
                q, k, v = value.chunk(3, dim=0)
                out[hf_prefix + "attention.self.query." + kind] = q.clone()
                out[hf_prefix + "attention.self.key." + kind] = k.clone()
                out[hf_prefix + "attention.self.value." + kind] = v.clone()
                continue
            for old, new in _BLOCK_RENAMES:
                if rest.startswith(old):
                    out[hf_prefix + new + rest[len(old):]] = value
                    break
            else:
                unknown.append(key)
            continue
        if key.startswith("audio_branch."):
            rest = key[len("audio_branch."):]
            if re.match(r"^layers\.\d+\.downsample\.", rest) or rest.startswith(_AUDIO_PASSTHROUGH):
                rest = "batch_norm." + rest[len("bn0."):] if rest.startswith("bn0.") else rest
                out["audio_model.audio_encoder." + rest] = value
                continue
        unknown.append(key)
    if unknown:
        raise UserError(
            f"{source} is not a LAION-CLAP HTSAT + RoBERTa checkpoint: {len(unknown)} unknown key(s), e.g. "
            f"{unknown[0]!r} (only HTSAT audio + RoBERTa text CLAP checkpoints can be converted)"
        )
    missing = [k for k in ("audio_projection.linear2.weight", "text_projection.linear2.weight",
                           "audio_model.audio_encoder.patch_embed.proj.weight",
                           "text_model.embeddings.word_embeddings.weight") if k not in out]
    if missing:
        raise UserError(f"{source} lacks {missing[0]!r}: not a complete LAION-CLAP HTSAT + RoBERTa checkpoint")
    return out, dropped


def infer_arch(hf_sd: dict[str, torch.Tensor], source: str = "checkpoint") -> ClapArchConfig:
    """Read the architecture off the tensor shapes of a converted state dict.

    What the weights cannot tell (the input ``spec_size``, the text head count, the front end) is taken
    from the named config of the same shapes, or LAION's values (spec 256, 64-d heads as in RoBERTa,
    48 kHz) otherwise; pass an explicit config for other sizes.
    """
    a_out = hf_sd["audio_projection.linear2.weight"].shape[0]
    t_out = hf_sd["text_projection.linear2.weight"].shape[0]
    if a_out != t_out:
        raise UserError(
            f"{source}: audio projection size {a_out} != text projection size {t_out}; a CLAP needs one "
            "shared embedding size (is the checkpoint mixed from two models?)"
        )
    enc = "audio_model.audio_encoder."
    proj_w = hf_sd[enc + "patch_embed.proj.weight"]  # [C, in_ch, p, p]
    blocks: dict[int, set[int]] = defaultdict(set)
    heads: dict[int, int] = {}
    window = None
    for k, v in hf_sd.items():
        m = re.match(r"^audio_model\.audio_encoder\.layers\.(\d+)\.blocks\.(\d+)\.attention\.self\.relative_position_bias_table$", k)
        if m:
            i, j = int(m.group(1)), int(m.group(2))
            blocks[i].add(j)
            heads[i] = int(v.shape[1])
            window = (int(round(math.sqrt(v.shape[0]))) + 1) // 2  # table has (2w-1)^2 rows
    if not blocks:
        raise UserError(f"{source} has no HTSAT attention blocks; not an HTSAT CLAP checkpoint")
    n_layers = max(blocks) + 1
    text_layers = {int(m.group(1)) for k in hf_sd
                   for m in [re.match(r"^text_model\.encoder\.layer\.(\d+)\.", k)] if m}
    word = hf_sd["text_model.embeddings.word_embeddings.weight"]
    hidden = int(word.shape[1])
    audio = AudioTowerConfig(
        patch_embeds_hidden_size=int(proj_w.shape[0]),
        depths=tuple(len(blocks[i]) for i in range(n_layers)),
        num_attention_heads=tuple(heads[i] for i in range(n_layers)),
        window_size=int(window),
        patch_size=int(proj_w.shape[-1]),
        patch_stride=(int(proj_w.shape[-2]), int(proj_w.shape[-1])),
        num_mel_bins=int(hf_sd[enc + "batch_norm.weight"].shape[0]),
        enable_fusion=any(".fusion_model." in k or ".mel_conv2d." in k for k in hf_sd),
    )
    text = TextTowerConfig(
        vocab_size=int(word.shape[0]), hidden_size=hidden, num_hidden_layers=len(text_layers),
        num_attention_heads=max(1, hidden // 64),
        intermediate_size=int(hf_sd["text_model.encoder.layer.0.intermediate.dense.weight"].shape[0]),
        max_length=int(hf_sd["text_model.embeddings.position_embeddings.weight"].shape[0]) - 2,
    )
    a_in = int(hf_sd["audio_projection.linear1.weight"].shape[1])
    if a_in != audio.hidden_size:
        raise UserError(
            f"{source}: audio projection takes {a_in} features but the HTSAT tower gives {audio.hidden_size}; "
            "the checkpoint's parts do not belong together"
        )
    arch = ClapArchConfig(name="custom", audio=audio, text=text, projection_dim=int(a_out))
    for name in CONFIG_NAMES:  # a known size: take its spec size, head count, front end and tokenizer kind
        named = get_config(name)
        if _same_shapes(named, arch):
            named.text.vocab_size = named.text.vocab_size or text.vocab_size
            named.audio.enable_fusion = audio.enable_fusion
            return named
    return arch


def _shape_fields(c: ClapArchConfig) -> dict:
    a, t = c.audio, c.text
    return {
        "audio hidden size": a.patch_embeds_hidden_size, "audio depths": tuple(a.depths),
        "audio heads": tuple(a.num_attention_heads), "window size": a.window_size,
        "mel bins": a.num_mel_bins, "text hidden size": t.hidden_size, "text layers": t.num_hidden_layers,
        "text intermediate size": t.intermediate_size, "projection size": c.projection_dim,
    }


def _same_shapes(named: ClapArchConfig, arch: ClapArchConfig) -> bool:
    return _shape_fields(named) == _shape_fields(arch)


def check_arch(expected: ClapArchConfig, found: ClapArchConfig, source: str) -> None:
    """Raise a one-line :class:`UserError` naming the first field where a checkpoint differs from a config."""
    e, f = _shape_fields(expected), _shape_fields(found)
    for field_name in e:
        if e[field_name] != f[field_name]:
            raise UserError(
                f"{source} does not match config {expected.name!r}: {field_name} is {f[field_name]} in the "
                f"checkpoint but {e[field_name]} in the config (pick the config of the checkpoint's architecture)"
            )


def load_hf_state_dict(model, hf_sd: dict[str, torch.Tensor], source: str) -> None:
    """Load converted weights into a ``ClapModel``: every parameter must be covered, shapes must agree."""
    own = model.state_dict()
    for k, v in hf_sd.items():
        if k not in own:
            raise UserError(f"{source}: key {k!r} has no place in the model (wrong architecture)")
        if tuple(own[k].shape) != tuple(v.shape):
            raise UserError(
                f"{source}: {k} has shape {tuple(v.shape)} in the checkpoint but {tuple(own[k].shape)} in the "
                "model (wrong architecture or config)"
            )
    # Buffers that are derived from the config (index tables, id ranges) may be absent from old checkpoints.
    derived = ("relative_position_index", "position_ids", "token_type_ids", "num_batches_tracked")
    missing = [k for k in own if k not in hf_sd and not k.endswith(derived)]
    if missing:
        raise UserError(f"{source} lacks {len(missing)} weight(s) of the model, e.g. {missing[0]!r} (truncated or other architecture)")
    model.load_state_dict(hf_sd, strict=False)
