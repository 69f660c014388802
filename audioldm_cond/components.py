"""AudioLDM components on diffusers models: build, save and load.

An AudioLDM is a mel VAE, a latent-diffusion UNet conditioned on one CLAP vector, a noise scheduler, a vocoder
and the log-mel front end. :class:`AudioLDMComponents` holds them with the conditioner and a JSON config.

Contract (the trainer and the embedded-model recipe code against it):

- ``AudioLDMComponents(vae, unet, scheduler, vocoder, mel, conditioner, config)``:
  ``vae`` a diffusers ``AutoencoderKL`` on 1-channel log-mels ``[B, 1, frames, n_mels]``;
  ``unet`` a ``UNet2DConditionModel`` with ``class_embed_type="simple_projection"``,
  ``class_embeddings_concat=True`` and ``projection_class_embeddings_input_dim == conditioner.output_dim``
  (FiLM-style conditioning, no cross-attention text: ``encoder_hidden_states=None``, ``class_labels=cond``);
  ``scheduler`` DPM-Solver++ by default (:func:`make_scheduler` gives ``"ddim"`` / ``"ddpm"`` from the same betas);
  ``vocoder`` a ``SpeechT5HifiGan`` or :class:`audioldm_cond.vocoder.GriffinLimVocoder`;
  ``mel`` a ``tclap.features.AudioLDMMelFrontEnd``; ``conditioner`` a
  :class:`audioldm_cond.conditioning.ClapConditioner`; ``config`` a :class:`ComponentsConfig`.
  Helpers: ``mel_to_latents`` / ``latents_to_mel`` (VAE with its ``scaling_factor``), ``frames_for(seconds)``,
  ``validate()``, ``to(device)``.
- ``build_tiny_components(clap="tiny-tclap", seed=0, ...)``: small, seeded, random-weight components.
- ``save_components(components, dir)``: the diffusers AudioLDM layout (``model_index.json``, ``vae/``, ``unet/``,
  ``scheduler/``, ``vocoder/``, ``text_encoder/`` (``ClapTextModelWithProjection``), ``tokenizer/``), plus ``clap/``
  (the full CLAP, for audio conditioning and CLAP re-ranking), ``conditioner/`` (adapter weights, when one is used)
  and ``audioldm_cond.json``. Written to a temporary directory and renamed into place (atomic).
- ``load_components(name_or_dir, text_encoder=None, ...)``: a shipped name (``tiny-tclap``, ``tiny-baseline``
  under ``audioldm_cond/assets/models/``) or a directory in that layout, including a local copy of
  ``cvssp/audioldm-s-full-v2``; ``text_encoder`` swaps the conditioning encoder for any CLAP ``tclap`` loads.
  A missing component folder is a one-line :class:`UserError` naming it.
- Beyond AudioLDM (off by default, for small UNets that must place events in time): ``position_channels``
  (:class:`TimePositionChannels`, fixed cosine features of each latent frame's place in the clip) and
  ``cond_map_channels`` (:class:`CondTimeMap`, a learned layout of the condition over the clip, stored in the
  UNet's weights as ``time_cond_map.*``) widen the UNet's input; a forward pre-hook appends them, so callers
  still pass ``[B, latent_channels, h, w]`` and ``class_labels``. Such a model has no diffusers-pipeline
  equivalent (``to_diffusers`` says so).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from audioldm_cond.conditioning import ClapConditioner, TransformersClap, load_clap_encoder
from audioldm_cond.vocoder import GRIFFIN_LIM_CONFIG, GriffinLimConfig, GriffinLimVocoder, build_tiny_hifigan
from basekit.errors import UserError
from audioldm_cond.mel import AudioLDMMelConfig, AudioLDMMelFrontEnd

SHIPPED_MODELS = ("tiny-tclap", "tiny-baseline")
CONFIG_FILE = "audioldm_cond.json"
ADAPTER_FILE = "adapter.safetensors"
# AudioLDM's noise schedule (cvssp/audioldm-s-full-v2 scheduler_config.json).
AUDIOLDM_BETAS = dict(num_train_timesteps=1000, beta_start=0.0015, beta_end=0.0195, beta_schedule="scaled_linear")


def assets_dir() -> Path:
    """Where the shipped models live: ``audioldm_cond/assets/models/``."""
    return Path(__file__).resolve().parent / "assets" / "models"


@dataclass
class ComponentsConfig:
    """What is not in the diffusers configs: front end, length limit, conditioning settings, provenance."""

    name: str = "custom"
    mel: AudioLDMMelConfig = field(default_factory=AudioLDMMelConfig)
    max_seconds: float = 10.24  # longest generation allowed (the training length of AudioLDM-s)
    clap: str = ""  # the conditioning encoder's name or path when the model was built (provenance)
    source: str = "text"  # conditioning source used in training: text | audio | mix
    cfg_dropout: float = 0.1
    audio_prob: float = 0.5
    adapter_dim: int | None = None
    vocoder: str = "hifigan"  # hifigan | griffinlim
    # Per-channel range [[lo_0, ...], [hi_0, ...]] of the *scaled* training latents (0.1 / 99.9 percentiles),
    # recorded by the LDM trainer. When set, generation clamps each step's predicted clean latent x0 to it
    # (DDPM's ``clip_sample``, per channel and for every scheduler); see ``clamp_prediction``.
    latent_range: list | None = None
    # Fixed time-position channels appended to the UNet's input (see ``TimePositionChannels``); 0 for AudioLDM.
    position_channels: int = 0
    # A learned map from the condition onto ``cond_map_channels`` input channels laid out over
    # ``cond_map_segments`` stretches of the clip (see ``CondTimeMap``); 0 for AudioLDM.
    cond_map_channels: int = 0
    cond_map_segments: int = 8
    extra: dict = field(default_factory=dict)  # free-form provenance (recipe, steps, scores)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ComponentsConfig":
        d = dict(d)
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise UserError(f"{CONFIG_FILE} has unknown keys {unknown} (written by a newer version? upgrade)")
        if isinstance(d.get("mel"), dict):
            d["mel"] = AudioLDMMelConfig(**d["mel"])
        return cls(**d)


@dataclass
class AudioLDMComponents:
    """Everything generation and training need (see the module docstring)."""

    vae: nn.Module
    unet: nn.Module
    scheduler: object
    vocoder: nn.Module
    mel: nn.Module
    conditioner: ClapConditioner
    config: ComponentsConfig = field(default_factory=ComponentsConfig)

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def sample_rate(self) -> int:
        return int(self.vocoder.config.sampling_rate)

    @property
    def hop_length(self) -> int:
        rates = self.vocoder.config.upsample_rates
        out = 1
        for r in rates:
            out *= int(r)
        return out

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def min_seconds(self) -> float:
        """Shortest generation: one latent frame (as diffusers' ``AudioLDMPipeline.check_inputs``)."""
        return self.vae_scale_factor * self.hop_length / self.sample_rate

    def frames_for(self, seconds: float) -> int:
        """Mel frames for ``seconds``, rounded up to the VAE's downsampling factor (as ``AudioLDMPipeline``)."""
        frames = int(seconds / (self.hop_length / self.sample_rate))
        f = self.vae_scale_factor
        return -(-frames // f) * f

    def mel_to_latents(self, mel: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``mel [B, 1, frames, n_mels]`` -> scaled latents ``[B, C, frames / f, n_mels / f]`` (a posterior sample)."""
        dist = self.vae.encode(mel).latent_dist
        return dist.sample(generator=generator) * self.vae.config.scaling_factor

    def latents_to_mel(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents ``[B, C, h, w]`` -> log-mel ``[B, 1, h * f, w * f]`` (in the VAE's dtype)."""
        z = latents / self.vae.config.scaling_factor
        return self.vae.decode(z.to(device=self.vae.device, dtype=self.vae.dtype)).sample

    @torch.inference_mode()
    def resynthesize(self, waves) -> list[np.ndarray]:
        """Real audio through this model's own path: mel -> VAE (posterior mean) -> mel -> vocoder.

        What a perfect UNet could at best produce, so scores of resynthesized real clips are the ceiling of
        the generation path (the VAE's and the vocoder's losses together). ``waves``: 1-D arrays at
        :attr:`sample_rate`; returns arrays of the same lengths.
        """
        out = []
        for w in waves:
            x = torch.as_tensor(np.asarray(w, dtype=np.float32), device=self.device)[None]  # [1, T]
            mel = self.mel(x)  # [1, 1, frames, n_mels]
            frames = mel.shape[2] // self.vae_scale_factor * self.vae_scale_factor
            mel = mel[:, :, :frames]
            z = self.vae.encode(mel).latent_dist.mean
            rec = self.vae.decode(z).sample  # [1, 1, frames, n_mels]
            wave = self.vocoder(rec[:, 0].to(self.vocoder.dtype)).float().cpu().numpy()[0]
            n = len(w)
            out.append(np.pad(wave, (0, max(0, n - len(wave))))[:n].astype(np.float32))
        return out

    def validate(self) -> "AudioLDMComponents":
        """Check that the parts fit together; one-line :class:`UserError` otherwise."""
        self.conditioner.check_fits(self.unet)
        ucfg = self.unet.config
        if ucfg.class_embed_type != "simple_projection" or not ucfg.class_embeddings_concat:
            raise UserError(
                "the UNet is not an AudioLDM UNet: it needs class_embed_type='simple_projection' and "
                "class_embeddings_concat=True"
            )
        n_mels = self.mel.n_mels
        if int(self.vocoder.config.model_in_dim) != n_mels:
            raise UserError(
                f"the vocoder expects {self.vocoder.config.model_in_dim} mel bins but the front end makes {n_mels}; "
                "use a vocoder trained on the same mel settings"
            )
        if n_mels % self.vae_scale_factor:
            raise UserError(f"{n_mels} mel bins are not divisible by the VAE's downsampling {self.vae_scale_factor}")
        n_pos, n_map = int(self.config.position_channels), int(self.config.cond_map_channels)
        n_extra = n_pos + n_map
        if self.vae.config.latent_channels + n_extra != ucfg.in_channels or ucfg.out_channels != ucfg.in_channels - n_extra:
            extra = (f" plus {n_pos} position" if n_pos else "") + (f" plus {n_map} condition-map" if n_map else "")
            extra = f"{extra} channels" if extra else ""
            raise UserError(
                f"the VAE has {self.vae.config.latent_channels} latent channels{extra} but the UNet takes "
                f"{ucfg.in_channels} and returns {ucfg.out_channels}"
            )
        cmap = getattr(self.unet, "time_cond_map", None)
        if n_map and (cmap is None or cmap.channels != n_map or cmap.segments != int(self.config.cond_map_segments)):
            raise UserError(f"the model config asks for a {n_map}-channel condition time map but the UNet "
                            f"{'has another' if cmap is not None else 'has none'}; re-save the model")
        if n_extra:
            add_time_position(self.unet, n_pos)
        return self

    def to(self, device: str | torch.device) -> "AudioLDMComponents":
        for m in (self.vae, self.unet, self.vocoder, self.mel, self.conditioner):
            m.to(device)
        return self

    def eval(self) -> "AudioLDMComponents":
        for m in (self.vae, self.unet, self.vocoder, self.mel):
            m.eval()
        return self

    def to_diffusers(self):
        """The same models as diffusers' ``AudioLDMPipeline`` (for comparisons; needs a HiFi-GAN vocoder).

        The tokenizer is a copy whose ``model_max_length`` is our conditioner's token budget, so both pipelines
        tokenise alike without changing the tokenizer the conditioner shares.
        """
        import copy  # noqa: PLC0415

        from diffusers import AudioLDMPipeline  # noqa: PLC0415

        if self.config.position_channels or self.config.cond_map_channels:
            raise UserError(f"this model's UNet takes {self.config.position_channels} time-position and "
                            f"{self.config.cond_map_channels} condition-map channels, which diffusers' AudioLDMPipeline "
                            "does not add; compare with a model built without them")

        tok = copy.deepcopy(self.conditioner.clap.tokenizer)
        tok.model_max_length = self.conditioner.max_text_length
        pipe = AudioLDMPipeline(vae=self.vae, text_encoder=self.conditioner.text_encoder_with_projection(),
                                tokenizer=tok, unet=self.unet, scheduler=self.scheduler, vocoder=self.vocoder)
        pipe.set_progress_bar_config(disable=True)
        return pipe


# ------------------------------------------------------------------------------------- latent range
def estimate_latent_range(latents: torch.Tensor, q: float = 0.001) -> list[list[float]]:
    """Per-channel ``[[lo...], [hi...]]`` = the ``q`` / ``1 - q`` quantiles of scaled latents ``[N, C, T, F]``."""
    if latents.ndim != 4 or latents.shape[0] == 0:
        raise UserError(f"latent range needs latents [N, C, T, F] with N >= 1, got {tuple(latents.shape)}")
    flat = latents.detach().float().transpose(0, 1).reshape(latents.shape[1], -1)
    if flat.shape[1] > 2_000_000:  # torch.quantile's input limit is 16M; a strided subsample is plenty
        flat = flat[:, :: flat.shape[1] // 2_000_000 + 1]
    lo, hi = torch.quantile(flat, q, dim=1), torch.quantile(flat, 1.0 - q, dim=1)
    return [lo.tolist(), hi.tolist()]


def clamp_prediction(scheduler, model_output: torch.Tensor, sample: torch.Tensor, t, latent_range) -> torch.Tensor:
    """The UNet output with its implied clean latent x0 clamped to ``latent_range`` (per channel).

    For variance-preserving schedulers (DDPM, DDIM, DPM-Solver: ``x_t = sqrt(a) x0 + sqrt(1 - a) eps`` with
    ``a = alphas_cumprod[t]``): x0 is recovered from the epsilon (or v) prediction, clamped, and turned back
    into the same kind of prediction, so any scheduler's ``step`` uses the clamped x0. A small model's x0
    estimates drift far outside the data early in sampling; this is DDPM's ``clip_sample`` with the range
    measured on the training latents instead of [-1, 1].

    Shapes: ``model_output`` and ``sample`` ``[B, C, T, F]``; ``latent_range`` ``[[lo] * C, [hi] * C]``.
    """
    acp = getattr(scheduler, "alphas_cumprod", None)
    if acp is None or float(getattr(scheduler, "init_noise_sigma", 1.0)) != 1.0:
        raise UserError(f"{type(scheduler).__name__} is not a variance-preserving scheduler; clamping needs DDPM, "
                        "DDIM or DPM-Solver (or pass clip_latents=False)")
    a = acp[int(t)].to(sample.device, torch.float32)
    sa, s1 = a.sqrt(), (1 - a).sqrt()
    x, out = sample.float(), model_output.float()
    kind = scheduler.config.get("prediction_type", "epsilon")
    if kind == "epsilon":
        x0 = (x - s1 * out) / sa
    elif kind == "v_prediction":
        x0 = sa * x - s1 * out
    else:  # "sample": the output is x0 itself
        x0 = out
    lo = torch.tensor(latent_range[0], device=x.device).view(1, -1, 1, 1)
    hi = torch.tensor(latent_range[1], device=x.device).view(1, -1, 1, 1)
    x0 = torch.maximum(torch.minimum(x0, hi), lo)
    if kind == "sample":
        new = x0
    else:
        eps = (x - sa * x0) / s1
        new = eps if kind == "epsilon" else sa * eps - s1 * x0
    return new.to(model_output.dtype)


# ------------------------------------------------------------------------------------------------ scheduler
def make_scheduler(kind: str = "dpm", config: dict | None = None):
    """A scheduler over AudioLDM's betas (or those of ``config``): ``dpm`` (DPM-Solver++ 2M), ``ddim``, ``ddpm``."""
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

    base = dict(config or AUDIOLDM_BETAS)
    if kind == "dpm":
        return DPMSolverMultistepScheduler.from_config(base, algorithm_type="dpmsolver++", solver_order=2)
    if kind == "ddim":
        return DDIMScheduler.from_config(base, clip_sample=False, set_alpha_to_one=False)
    if kind == "ddpm":
        return DDPMScheduler.from_config(base, clip_sample=False)
    raise UserError(f"scheduler '{kind}' is unknown; use dpm (DPM-Solver++), ddim or ddpm")


# ---------------------------------------------------------------------------------------------------- build
def build_tiny_components(
    clap="tiny-tclap",
    seed: int = 0,
    *,
    source: str = "text",
    adapter_dim: int | None = None,
    cfg_dropout: float = 0.1,
    unet_channels: tuple[int, ...] = (32, 64),
    vae_channels: tuple[int, ...] = (32, 64),
    latent_channels: int = 4,
    layers_per_block: int = 1,
    attention: bool = True,
    vocoder: str = "griffinlim",
    max_seconds: float = 4.0,
    mel: AudioLDMMelConfig | None = None,
    name: str = "tiny",
    position_channels: int = 0,
    cond_map_channels: int = 0,
    cond_map_segments: int = 8,
) -> AudioLDMComponents:
    """Small random-weight AudioLDM components, seeded (tests, benchmarks, the embedded model's start point).

    Args:
        clap: the conditioning CLAP (a ``ClapBundle`` or any name/dir ``tclap.models.load_clap`` loads).
        unet_channels: UNet block widths; the last ``len - 1`` blocks use (self-)attention when ``attention``.
        vae_channels: VAE block widths; the mel is downsampled by ``2 ** (len - 1)`` in time and frequency.
        vocoder: ``griffinlim`` (no weights) or ``hifigan`` (a tiny random ``SpeechT5HifiGan``).
        max_seconds: the longest generation this model accepts.
        position_channels: fixed time-position channels appended to the UNet input (``TimePositionChannels``).
        cond_map_channels, cond_map_segments: a learned layout of the condition over time (``CondTimeMap``).
    """
    from diffusers import AutoencoderKL

    mel = mel or AudioLDMMelConfig()
    conditioner = ClapConditioner(clap, source=source, cfg_dropout=cfg_dropout, adapter_dim=adapter_dim)
    clap_name = conditioner.clap_name
    f = 2 ** (len(vae_channels) - 1)
    torch.manual_seed(seed)
    if adapter_dim:
        conditioner.adapter.reset_parameters()  # re-draw under the seed so builds are reproducible
    vae = AutoencoderKL(
        in_channels=1,
        out_channels=1,
        down_block_types=["DownEncoderBlock2D"] * len(vae_channels),
        up_block_types=["UpDecoderBlock2D"] * len(vae_channels),
        block_out_channels=list(vae_channels),
        latent_channels=latent_channels,
        layers_per_block=1,
        norm_num_groups=min(32, vae_channels[0]),
        sample_size=mel.n_mels,
    )
    frames = int(max_seconds * mel.sample_rate / mel.hop_length)
    unet = build_unet(latent_channels, max(1, frames // f), unet_channels, conditioner.output_dim,
                      layers_per_block=layers_per_block, attention=attention, seed=seed + 1,
                      position_channels=position_channels, cond_map_channels=cond_map_channels,
                      cond_map_segments=cond_map_segments)
    if vocoder == "hifigan":
        voc = build_tiny_hifigan(mel, seed=seed + 2)
    elif vocoder == "griffinlim":
        voc = GriffinLimVocoder(GriffinLimConfig(mel=mel))
    else:
        raise UserError(f"vocoder '{vocoder}' is unknown; use griffinlim or hifigan")
    cfg = ComponentsConfig(
        name=name,
        mel=mel,
        max_seconds=float(max_seconds),
        clap=clap_name,
        source=source,
        cfg_dropout=cfg_dropout,
        adapter_dim=adapter_dim,
        vocoder=vocoder,
        position_channels=int(position_channels),
        cond_map_channels=int(cond_map_channels),
        cond_map_segments=int(cond_map_segments),
    )
    comps = AudioLDMComponents(
        vae=vae.eval(),
        unet=unet.eval(),
        scheduler=make_scheduler("dpm"),
        vocoder=voc.eval(),
        mel=AudioLDMMelFrontEnd(**asdict(mel)),
        conditioner=conditioner,
        config=cfg,
    )
    return comps.validate()


def build_unet(latent_channels: int, sample_size: int, channels, cond_dim: int, *, layers_per_block: int = 1,
               attention: bool = True, seed: int = 0, position_channels: int = 0, cond_map_channels: int = 0,
               cond_map_segments: int = 8):
    """A randomly initialised AudioLDM-style ``UNet2DConditionModel`` (seeded).

    ``channels``: block widths; the last ``len - 1`` down blocks (and the mid block) use self-attention when
    ``attention`` (AudioLDM's ``encoder_hidden_states`` is None, so "cross" attention attends to the latent
    itself). The ``[B, cond_dim]`` condition enters through ``simple_projection`` class embeddings,
    concatenated to the time embedding (``class_embeddings_concat``), as in AudioLDM. ``position_channels``:
    the UNet takes ``latent_channels + position_channels`` input channels and a :class:`TimePositionChannels`
    hook fills the extra ones, so callers still pass ``[B, latent_channels, h, w]``. ``cond_map_channels``: ``M``
    more input channels from a learned :class:`CondTimeMap` of the condition over ``cond_map_segments`` stretches.
    """
    from diffusers import UNet2DConditionModel

    channels = [int(c) for c in channels]
    if not channels or min(channels) < 8:
        raise UserError(f"UNet channels {channels}: give one or more widths of at least 8, e.g. 32,64,128")
    position_channels = int(position_channels)
    if not 0 <= position_channels <= 64:
        raise UserError(f"position channels {position_channels}: give 0 (none, as AudioLDM) to 64, e.g. 4")
    torch.manual_seed(seed)
    n = len(channels)
    down = ["DownBlock2D"] + ["CrossAttnDownBlock2D" if attention else "DownBlock2D"] * (n - 1)
    up = ["CrossAttnUpBlock2D" if attention else "UpBlock2D"] * (n - 1) + ["UpBlock2D"]
    unet = UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=latent_channels + position_channels + int(cond_map_channels),
        out_channels=latent_channels,
        down_block_types=down,
        up_block_types=up,
        mid_block_type="UNetMidBlock2DCrossAttn" if attention else None,
        block_out_channels=channels,
        layers_per_block=layers_per_block,
        norm_num_groups=min(32, channels[0]),
        cross_attention_dim=channels,
        attention_head_dim=8,
        class_embed_type="simple_projection",
        projection_class_embeddings_input_dim=cond_dim,
        class_embeddings_concat=True,
    )
    if cond_map_channels:
        add_cond_map(unet, cond_map_channels, cond_map_segments, seed=seed + 7)
    return add_time_position(unet, position_channels) if position_channels or cond_map_channels else unet


def replace_unet(components: "AudioLDMComponents", channels, *, layers_per_block: int = 1, attention: bool = True,
                 seed: int = 0, position_channels: int = 0, cond_map_channels: int = 0,
                 cond_map_segments: int = 8) -> "AudioLDMComponents":
    """Swap in a fresh random UNet of another size (same latent channels, sample size and condition size)."""
    old = components.unet.config
    components.unet = build_unet(int(components.vae.config.latent_channels), old.sample_size, channels,
                                 components.conditioner.output_dim, layers_per_block=layers_per_block,
                                 attention=attention, seed=seed, position_channels=position_channels,
                                 cond_map_channels=cond_map_channels, cond_map_segments=cond_map_segments).eval()
    components.config.position_channels = int(position_channels)
    components.config.cond_map_channels = int(cond_map_channels)
    components.config.cond_map_segments = int(cond_map_segments)
    return components.validate()


# ------------------------------------------------------------------------------------- time position
def time_position_features(frames: int, n: int, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """``[n, frames]``: ``cos(π·(k + 1)·(i + ½) / frames)`` for channel ``k`` at latent frame ``i``.

    Channel 0 falls monotonically from ~1 at the clip's start to ~-1 at its end, so every frame knows where in
    the clip it lies; the higher channels resolve that position more finely. Positions are relative to the
    clip's length, so "first half" means the same at any generation length.
    """
    i = torch.arange(frames, device=device, dtype=torch.float32) + 0.5
    k = torch.arange(1, n + 1, device=device, dtype=torch.float32)
    return torch.cos(torch.pi * k[:, None] * i[None, :] / frames).to(dtype)


class TimePositionChannels:
    """A forward pre-hook that appends time-position (and condition-map) channels to a UNet's ``sample``.

    A UNet of convolutions and (position-free) self-attention is translation-equivariant: a frame in the middle of
    the clip cannot tell the first half from the second except through the zero padding at the edges, far outside a
    small UNet's receptive field. Placing "A, then B" needs that information, so models built with
    ``position_channels > 0`` see ``[B, C + n, h, w]``: the latent and :func:`time_position_features` along the
    time axis ``h``, broadcast over frequency (the idea of CoordConv, Liu et al. 2018). When the UNet carries a
    :class:`CondTimeMap` (``unet.time_cond_map``), its ``[B, M, h]`` output for the call's ``class_labels`` follows
    (``[B, C + n + M, h, w]``). Callers keep passing ``[B, C, h, w]``; the hook travels with the module
    (training, EMA, validation, generation and the probe).
    """

    def __init__(self, n: int):
        self.n = int(n)

    def __call__(self, module, args, kwargs):
        sample = args[0] if args else kwargs["sample"]
        b, _, h, w = sample.shape
        parts = [sample]
        if self.n:
            pos = time_position_features(h, self.n, device=sample.device, dtype=sample.dtype)  # [n, h]
            parts.append(pos[None, :, :, None].expand(b, self.n, h, w))
        cmap = getattr(module, "time_cond_map", None)
        if cmap is not None:
            labels = kwargs.get("class_labels")
            if labels is None:
                raise UserError("this UNet lays its condition out over time (a condition map): pass class_labels")
            layout = cmap(labels.to(sample.dtype), h)  # [B or 1, M, h]
            parts.append(layout[..., None].expand(b, cmap.channels, h, w))
        x = torch.cat(parts, dim=1)  # [B, C + n + M, h, w]
        if args:
            return (x, *args[1:]), kwargs
        return args, {**kwargs, "sample": x}


def add_time_position(unet, n: int):
    """Attach a :class:`TimePositionChannels` hook with ``n`` position channels (once); returns ``unet``.

    The hook also feeds a :class:`CondTimeMap` set as ``unet.time_cond_map`` (before or after this call).
    """
    n = int(n)
    if getattr(unet, "_time_channels_hook", None) is not None:
        if getattr(unet, "time_position_channels", 0) != n:
            raise UserError("this UNet already adds time-position channels; build a fresh one to change their number")
        return unet
    unet._time_channels_hook = unet.register_forward_pre_hook(TimePositionChannels(n), with_kwargs=True)
    unet.time_position_channels = n
    return unet


class CondTimeMap(nn.Module):
    """A learned layout of the condition over the clip: ``[B, D]`` -> ``[B, M, frames]``.

    A linear map gives ``M`` channels at ``S`` evenly spaced anchor points of the clip, linearly interpolated to
    the latent's frames. AudioLDM's UNet sees its condition only as a per-channel shift of every frame alike, so
    "A, then B" and "B, then A" must be told apart deep inside the network; this map lets the condition say
    *where* in the clip a feature belongs at the UNet's input. A condition that does not encode order (a
    bag-of-events CLAP embedding) cannot use it to place events; one that does (T-CLAP) can.

    Args:
        cond_dim: size ``D`` of the conditioning vector (the UNet's ``projection_class_embeddings_input_dim``).
        channels: ``M`` output channels.
        segments: ``S`` anchor points along time (>= 2).
    """

    def __init__(self, cond_dim: int, channels: int, segments: int = 8):
        super().__init__()
        if not 1 <= int(channels) <= 64 or not 2 <= int(segments) <= 64:
            raise UserError(f"condition map of {channels} channel(s) over {segments} segment(s): give 1-64 channels "
                            "over 2-64 segments, e.g. 8 over 8")
        self.channels, self.segments = int(channels), int(segments)
        self.proj = nn.Linear(int(cond_dim), self.channels * self.segments)

    def forward(self, cond: torch.Tensor, frames: int) -> torch.Tensor:
        """``cond`` ``[B, D]`` -> ``[B, M, frames]``."""
        anchors = self.proj(cond).view(cond.shape[0], self.channels, self.segments)  # [B, M, S]
        return nn.functional.interpolate(anchors, size=int(frames), mode="linear", align_corners=True)


def add_cond_map(unet, channels: int, segments: int = 8, *, seed: int | None = 0):
    """Give ``unet`` a fresh :class:`CondTimeMap` (``unet.time_cond_map``, saved with its weights); returns it.

    ``seed``: seeds the map's initial weights (as ``build_unet`` seeds the UNet's); None leaves the global RNG
    alone (loading, where the weights are overwritten)."""
    if seed is not None:
        torch.manual_seed(seed)
    unet.time_cond_map = CondTimeMap(int(unet.config.projection_class_embeddings_input_dim), channels, segments)
    return unet


def load_cond_map(unet, unet_dir: Path, channels: int, segments: int) -> None:
    """Rebuild ``unet.time_cond_map`` and read its weights from the saved UNet (diffusers skips unknown keys)."""
    from safetensors import safe_open

    files = sorted(Path(unet_dir).glob("*.safetensors"))
    add_cond_map(unet, channels, segments, seed=None)
    state = {}
    for f in files:
        with safe_open(str(f), framework="pt") as fh:
            for k in fh.keys():
                if k.startswith("time_cond_map."):
                    state[k[len("time_cond_map."):]] = fh.get_tensor(k)
    if not state:
        raise UserError(f"{unet_dir} has no condition-map weights (time_cond_map.*) but the model config asks for "
                        f"{channels} condition-map channels; re-save the model")
    unet.time_cond_map.load_state_dict(state)


# ----------------------------------------------------------------------------------------------------- save
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
        from tclap.models.configs import FrontEndConfig
        from tclap.models.frontends import make_feature_extractor

        fe = make_feature_extractor(FrontEndConfig(**asdict(clap.frontend.config)))
    if fe is not None:
        fe.save_pretrained(directory)


def save_components(components: AudioLDMComponents, directory: str | os.PathLike) -> Path:
    """Write ``components`` in the diffusers AudioLDM layout (see the module docstring); atomic.

    The directory is assembled under a temporary name beside ``directory`` and renamed into place, so an
    interrupted save never leaves a half-written model where a loader would find it.
    """
    from diffusers import __version__ as diffusers_version

    out = Path(directory)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        c = components
        c.vae.save_pretrained(tmp / "vae")
        c.unet.save_pretrained(tmp / "unet")
        c.scheduler.save_pretrained(tmp / "scheduler")
        c.vocoder.save_pretrained(tmp / "vocoder")
        text_encoder = c.conditioner.text_encoder_with_projection()
        text_encoder.save_pretrained(tmp / "text_encoder")
        tok = c.conditioner.clap.tokenizer
        # diffusers pads to tokenizer.model_max_length: store the budget our conditioner uses.
        old_max = tok.model_max_length
        tok.model_max_length = c.conditioner.max_text_length
        try:
            tok.save_pretrained(tmp / "tokenizer")
        finally:
            tok.model_max_length = old_max
        if c.conditioner.has_audio:
            _save_clap(c.conditioner.clap, tmp / "clap")
        if c.conditioner.adapter is not None:
            from safetensors.torch import save_file

            (tmp / "conditioner").mkdir()
            state = {k: v.detach().cpu().contiguous() for k, v in c.conditioner.adapter.state_dict().items()}
            save_file(state, str(tmp / "conditioner" / ADAPTER_FILE))
        cfg = c.config.to_dict()
        cfg["adapter_dim"] = c.conditioner.adapter_dim
        cfg["vocoder"] = "griffinlim" if isinstance(c.vocoder, GriffinLimVocoder) else "hifigan"
        (tmp / CONFIG_FILE).write_text(json.dumps(cfg, indent=2))
        index = {
            "_class_name": "AudioLDMPipeline",
            "_diffusers_version": diffusers_version,
            "scheduler": ["diffusers", type(c.scheduler).__name__],
            "text_encoder": ["transformers", "ClapTextModelWithProjection"],
            "tokenizer": ["transformers", type(tok).__name__],
            "unet": ["diffusers", type(c.unet).__name__],
            "vae": ["diffusers", type(c.vae).__name__],
            "vocoder": ["audioldm_cond", "GriffinLimVocoder"]
            if isinstance(c.vocoder, GriffinLimVocoder)
            else ["transformers", type(c.vocoder).__name__],
        }
        (tmp / "model_index.json").write_text(json.dumps(index, indent=2))
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


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


def _need_dir(root: Path, sub: str, why: str) -> Path:
    p = root / sub
    if not p.is_dir():
        raise UserError(f"AudioLDM model {root} is missing the '{sub}/' folder ({why}); re-save or re-download it")
    return p


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
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.schedulers import SchedulerMixin

    root = resolve_model_dir(name_or_dir)
    index = _read_index(root)
    cfg = ComponentsConfig.from_dict(json.loads((root / CONFIG_FILE).read_text())) if (root / CONFIG_FILE).exists() else None
    vae = AutoencoderKL.from_pretrained(_need_dir(root, "vae", "the mel VAE"))
    from diffusers.utils import logging as dlog

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
    sched_dir = _need_dir(root, "scheduler", "the noise schedule")
    sched_cfg = _read_json_file(sched_dir / "scheduler_config.json")
    if scheduler is None:
        import diffusers

        sched_cls = getattr(diffusers, sched_cfg.get("_class_name", ""), None)
        if sched_cls is None or not issubclass(sched_cls, SchedulerMixin):
            raise UserError(f"{sched_dir} names an unknown scheduler {sched_cfg.get('_class_name')!r}")
        sched = sched_cls.from_config(sched_cfg)
    else:
        sched = make_scheduler(scheduler, sched_cfg)

    if "vocoder" in index:
        voc_dir = _need_dir(root, "vocoder", "the mel-to-waveform vocoder")
        if (voc_dir / GRIFFIN_LIM_CONFIG).exists():
            vocoder = GriffinLimVocoder.from_pretrained(voc_dir)
        else:
            from transformers import SpeechT5HifiGan

            vocoder = SpeechT5HifiGan.from_pretrained(voc_dir)
    else:  # a model without a vocoder: Griffin-Lim on its mel settings
        vocoder = GriffinLimVocoder(GriffinLimConfig(mel=cfg.mel if cfg else AudioLDMMelConfig()))

    if cfg is None:  # a plain diffusers directory: derive the front end from the vocoder
        hop = 1
        for r in vocoder.config.upsample_rates:
            hop *= int(r)
        frames = unet.config.sample_size * 2 ** (len(vae.config.block_out_channels) - 1)
        mel_cfg = AudioLDMMelConfig(
            sample_rate=int(vocoder.config.sampling_rate), hop_length=hop, n_mels=int(vocoder.config.model_in_dim)
        )
        cfg = ComponentsConfig(
            name=root.name,
            mel=mel_cfg,
            max_seconds=frames * hop / mel_cfg.sample_rate,
            clap=str(root / "text_encoder"),
            vocoder="griffinlim" if isinstance(vocoder, GriffinLimVocoder) else "hifigan",
        )

    src = source or cfg.source
    if text_encoder is not None:
        clap = text_encoder
        ad = adapter_dim
    else:
        if (root / "clap").is_dir():
            clap = load_clap_encoder(str(root / "clap"))
        else:
            te = _need_dir(root, "text_encoder", "the CLAP text encoder")
            tk = _need_dir(root, "tokenizer", "the text encoder's tokenizer")
            clap = TransformersClap.from_pretrained(te, tokenizer_dir=tk)
        ad = adapter_dim or cfg.adapter_dim
    conditioner = ClapConditioner(clap, source=src, cfg_dropout=cfg.cfg_dropout, audio_prob=cfg.audio_prob, adapter_dim=ad)
    if text_encoder is None and cfg.adapter_dim:
        from safetensors.torch import load_file

        path = _need_dir(root, "conditioner", "the conditioning adapter weights") / ADAPTER_FILE
        if not path.exists():
            raise UserError(f"AudioLDM model {root} is missing conditioner/{ADAPTER_FILE}; re-save it")
        conditioner.adapter.load_state_dict(load_file(str(path)))
    comps = AudioLDMComponents(
        vae=vae.eval(),
        unet=unet.eval(),
        scheduler=sched,
        vocoder=vocoder.eval(),
        mel=AudioLDMMelFrontEnd(**asdict(cfg.mel)),
        conditioner=conditioner,
        config=cfg,
    )
    return comps.validate().to(device)


def _read_json_file(path: Path) -> dict:
    if not path.exists():
        raise UserError(f"missing {path} (re-save or re-download the model)")
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise UserError(f"cannot parse {path}: {exc} (re-save the model)") from None


def _read_index(root: Path) -> dict:
    return _read_json_file(root / "model_index.json")
