"""Save and load: the diffusers AudioLDM layout on disk, and the models shipped inside the package."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from audioldm_cond.components.cond_map import load_cond_map
from audioldm_cond.components.config import CONFIG_FILE, ComponentsConfig
from audioldm_cond.components.container import AudioLDMComponents
from audioldm_cond.components.schedulers import make_scheduler
from audioldm_cond.conditioning import ClapConditioner, TransformersClap, load_clap_encoder
from audioldm_cond.mel import AudioLDMMelConfig, AudioLDMMelFrontEnd
from audioldm_cond.vocoder import GRIFFIN_LIM_CONFIG, GriffinLimConfig, GriffinLimVocoder
from basekit.atomic import current_umask, replace_dir
from basekit.errors import UserError

SHIPPED_MODELS = ("tiny-tclap", "tiny-baseline")
ADAPTER_FILE = "adapter.safetensors"


def assets_dir() -> Path:
    """Where the shipped models live: ``audioldm_cond/assets/models/``."""
    return Path(__file__).resolve().parents[1] / "assets" / "models"


# ----------------------------------------------------------------------------------------------------- save
def save_components(components: AudioLDMComponents, directory: str | os.PathLike) -> Path:
    """Write ``components`` in the diffusers AudioLDM layout (see the package docstring); atomic.

    The directory is assembled under a hidden temporary name beside ``directory`` and swapped into place
    (:func:`basekit.atomic.replace_dir`), so an interrupted save never leaves a half-written model where a loader
    would find it, and an existing model is replaced whole.
    """
    out = Path(directory)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes 0o700: a plain mkdir's permissions instead
        _write_layout(components, tmp)
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _write_layout(c: AudioLDMComponents, root: Path) -> None:
    """Every file of the layout into the (empty, temporary) folder ``root``."""
    from diffusers import __version__ as diffusers_version  # noqa: PLC0415 (heavy: keeps the package import light)

    c.vae.save_pretrained(root / "vae")
    c.unet.save_pretrained(root / "unet")
    c.scheduler.save_pretrained(root / "scheduler")
    c.vocoder.save_pretrained(root / "vocoder")
    c.conditioner.text_encoder_with_projection().save_pretrained(root / "text_encoder")
    tok = c.conditioner.clap.tokenizer
    # diffusers pads to tokenizer.model_max_length: store the budget our conditioner uses.
    old_max = tok.model_max_length
    tok.model_max_length = c.conditioner.max_text_length
    try:
        tok.save_pretrained(root / "tokenizer")
    finally:
        tok.model_max_length = old_max
    if c.conditioner.has_audio:
        _save_clap(c.conditioner.clap, root / "clap")
    if c.conditioner.adapter is not None:
        (root / "conditioner").mkdir()
        state = {k: v.detach().cpu().contiguous() for k, v in c.conditioner.adapter.state_dict().items()}
        save_file(state, str(root / "conditioner" / ADAPTER_FILE))
    griffin_lim = isinstance(c.vocoder, GriffinLimVocoder)
    cfg = {**c.config.to_dict(), "adapter_dim": c.conditioner.adapter_dim,
           "vocoder": "griffinlim" if griffin_lim else "hifigan"}
    (root / CONFIG_FILE).write_text(json.dumps(cfg, indent=2))
    index = {
        "_class_name": "AudioLDMPipeline",
        "_diffusers_version": diffusers_version,
        "scheduler": ["diffusers", type(c.scheduler).__name__],
        "text_encoder": ["transformers", "ClapTextModelWithProjection"],
        "tokenizer": ["transformers", type(tok).__name__],
        "unet": ["diffusers", type(c.unet).__name__],
        "vae": ["diffusers", type(c.vae).__name__],
        "vocoder": (["audioldm_cond", "GriffinLimVocoder"] if griffin_lim
                    else ["transformers", type(c.vocoder).__name__]),
    }
    (root / "model_index.json").write_text(json.dumps(index, indent=2))


def _save_clap(clap, directory: Path) -> None:
    """The full CLAP (audio branch included) in a directory ``load_clap`` reads back."""
    if hasattr(clap, "save_pretrained"):
        try:
            clap.save_pretrained(directory)
            return
        except ImportError:  # tclap's exporter not available in this checkout: write the same files ourselves
            shutil.rmtree(directory, ignore_errors=True)
    clap.model.save_pretrained(directory)
    clap.tokenizer.save_pretrained(directory)
    fe = getattr(clap, "feature_extractor", None)
    if fe is None and getattr(clap, "frontend", None) is not None:
        # tclap.models pulls in its model zoo; only a tclap-made CLAP without a feature extractor gets here.
        from tclap.models.configs import FrontEndConfig  # noqa: PLC0415 (heavy: keeps the package import light)
        from tclap.models.frontends import make_feature_extractor  # noqa: PLC0415 (as above)

        fe = make_feature_extractor(FrontEndConfig(**asdict(clap.frontend.config)))
    if fe is not None:
        fe.save_pretrained(directory)


# ----------------------------------------------------------------------------------------------------- load
def resolve_model_dir(name_or_dir: str | os.PathLike) -> Path:
    """A shipped name or a directory -> the model directory (one-line :class:`UserError` when neither)."""
    s = str(name_or_dir)
    if s in SHIPPED_MODELS:
        d = assets_dir() / s
        if not (d / "model_index.json").exists():
            raise UserError(
                f"the shipped AudioLDM model '{s}' is missing (expected {d}); reinstall tclap-toolkit (the shipped models "
                f"are its package data) or pass --model DIR"
            )
        return d
    d = Path(os.path.expanduser(s))
    if not d.is_dir():
        raise UserError(
            f"AudioLDM model '{s}' is neither a shipped name ({', '.join(SHIPPED_MODELS)}) nor a directory "
            "(pass a diffusers-format AudioLDM directory)"
        )
    if not (d / "model_index.json").exists():
        raise UserError(f"{d} has no model_index.json; it is not a diffusers-format AudioLDM directory")
    return d


def load_components(
    name_or_dir: str | os.PathLike,
    text_encoder=None,
    *,
    device: str | torch.device = "cpu",
    scheduler: str | None = None,
    source: str | None = None,
    adapter_dim: int | None = None,
) -> AudioLDMComponents:
    """Load AudioLDM components from a shipped name or a diffusers-format directory.

    Args:
        name_or_dir: ``tiny-tclap``, ``tiny-baseline`` or a directory (e.g. a copy of ``cvssp/audioldm-s-full-v2``).
        text_encoder: swap the conditioning encoder: a ``ClapBundle`` or any name/dir ``tclap`` loads. Its
            projection size must fit the UNet, unless ``adapter_dim`` asks for a (new, untrained) linear adapter.
        scheduler: ``dpm`` / ``ddim`` / ``ddpm`` to switch the saved scheduler (same betas); None keeps it.
        source: override the conditioning source saved with the model (training only).
    """
    from diffusers import AutoencoderKL  # noqa: PLC0415 (heavy: keeps the package import light)

    root = resolve_model_dir(name_or_dir)
    index = _read_json_file(root / "model_index.json")
    cfg = ComponentsConfig.from_dict(_read_json_file(root / CONFIG_FILE)) if (root / CONFIG_FILE).exists() else None
    vae = AutoencoderKL.from_pretrained(_need_dir(root, "vae", "the mel VAE"))
    unet = _load_unet(root, cfg)
    sched = _load_scheduler(root, scheduler)
    vocoder = _load_vocoder(root, index, cfg)
    if cfg is None:  # a plain diffusers directory
        cfg = _config_of_plain_diffusers(root, vae, unet, vocoder)
    comps = AudioLDMComponents(
        vae=vae.eval(),
        unet=unet.eval(),
        scheduler=sched,
        vocoder=vocoder.eval(),
        mel=AudioLDMMelFrontEnd(**asdict(cfg.mel)),
        conditioner=_load_conditioner(root, cfg, text_encoder, source=source, adapter_dim=adapter_dim),
        config=cfg,
    )
    return comps.validate().to(device)


def _load_unet(root: Path, cfg: ComponentsConfig | None):
    """The UNet, with its condition map when the config names one (diffusers skips those weights)."""
    from diffusers import UNet2DConditionModel  # noqa: PLC0415 (heavy: keeps the package import light)
    from diffusers.utils import logging as dlog  # noqa: PLC0415 (as above)

    unet_dir = _need_dir(root, "unet", "the diffusion UNet")
    cond_map = cfg is not None and cfg.cond_map_channels
    level = dlog.get_verbosity()
    if cond_map:
        dlog.set_verbosity_error()  # the condition map's weights are ours: diffusers would list them as unused
    try:
        unet = UNet2DConditionModel.from_pretrained(unet_dir)
    finally:
        dlog.set_verbosity(level)
    if cond_map:
        load_cond_map(unet, unet_dir, cfg.cond_map_channels, cfg.cond_map_segments)
    return unet


def _load_scheduler(root: Path, kind: str | None):
    """The saved scheduler, or (``kind``) another one over the saved betas."""
    import diffusers  # noqa: PLC0415 (heavy: keeps the package import light)
    from diffusers.schedulers import SchedulerMixin  # noqa: PLC0415 (as above)

    sched_dir = _need_dir(root, "scheduler", "the noise schedule")
    sched_cfg = _read_json_file(sched_dir / "scheduler_config.json")
    if kind is not None:
        return make_scheduler(kind, sched_cfg)
    sched_cls = getattr(diffusers, sched_cfg.get("_class_name", ""), None)
    if sched_cls is None or not issubclass(sched_cls, SchedulerMixin):
        raise UserError(f"{sched_dir} names an unknown scheduler {sched_cfg.get('_class_name')!r}")
    return sched_cls.from_config(sched_cfg)


def _load_vocoder(root: Path, index: dict, cfg: ComponentsConfig | None):
    """Griffin-Lim or HiFi-GAN as saved; a model without a vocoder gets Griffin-Lim on its mel settings."""
    if "vocoder" not in index:
        return GriffinLimVocoder(GriffinLimConfig(mel=cfg.mel if cfg else AudioLDMMelConfig()))
    voc_dir = _need_dir(root, "vocoder", "the mel-to-waveform vocoder")
    if (voc_dir / GRIFFIN_LIM_CONFIG).exists():
        return GriffinLimVocoder.from_pretrained(voc_dir)
    from transformers import SpeechT5HifiGan  # noqa: PLC0415 (heavy: keeps the package import light)

    return SpeechT5HifiGan.from_pretrained(voc_dir)


def _config_of_plain_diffusers(root: Path, vae, unet, vocoder) -> ComponentsConfig:
    """A directory without ``audioldm_cond.json`` (e.g. ``cvssp/audioldm-s-full-v2``): front end from the vocoder."""
    hop = 1
    for r in vocoder.config.upsample_rates:
        hop *= int(r)
    frames = unet.config.sample_size * 2 ** (len(vae.config.block_out_channels) - 1)
    mel_cfg = AudioLDMMelConfig(
        sample_rate=int(vocoder.config.sampling_rate), hop_length=hop, n_mels=int(vocoder.config.model_in_dim)
    )
    return ComponentsConfig(
        name=root.name,
        mel=mel_cfg,
        max_seconds=frames * hop / mel_cfg.sample_rate,
        clap=str(root / "text_encoder"),
        vocoder="griffinlim" if isinstance(vocoder, GriffinLimVocoder) else "hifigan",
    )


def _load_conditioner(root: Path, cfg: ComponentsConfig, text_encoder, *, source: str | None,
                      adapter_dim: int | None) -> ClapConditioner:
    """The saved CLAP (full one in ``clap/`` when present, else text encoder + tokenizer) or ``text_encoder``."""
    if text_encoder is not None:
        clap, ad = text_encoder, adapter_dim
    else:
        if (root / "clap").is_dir():
            clap = load_clap_encoder(str(root / "clap"))
        else:
            te = _need_dir(root, "text_encoder", "the CLAP text encoder")
            tk = _need_dir(root, "tokenizer", "the text encoder's tokenizer")
            clap = TransformersClap.from_pretrained(te, tokenizer_dir=tk)
        ad = adapter_dim or cfg.adapter_dim
    conditioner = ClapConditioner(clap, source=source or cfg.source, cfg_dropout=cfg.cfg_dropout,
                                  audio_prob=cfg.audio_prob, adapter_dim=ad)
    if text_encoder is None and cfg.adapter_dim:
        path = _need_dir(root, "conditioner", "the conditioning adapter weights") / ADAPTER_FILE
        if not path.exists():
            raise UserError(f"AudioLDM model {root} is missing conditioner/{ADAPTER_FILE}; re-save it")
        conditioner.adapter.load_state_dict(load_file(str(path)))
    return conditioner


def _need_dir(root: Path, sub: str, why: str) -> Path:
    p = root / sub
    if not p.is_dir():
        raise UserError(f"AudioLDM model {root} is missing the '{sub}/' folder ({why}); re-save or re-download it")
    return p


def _read_json_file(path: Path) -> dict:
    if not path.exists():
        raise UserError(f"missing {path} (re-save or re-download the model)")
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise UserError(f"cannot parse {path}: {exc} (re-save the model)") from None


__all__ = ["ADAPTER_FILE", "SHIPPED_MODELS", "assets_dir", "load_components", "resolve_model_dir", "save_components"]
