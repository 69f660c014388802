"""Random-weight models, seeded: tiny AudioLDM components and AudioLDM-style UNets of any size."""

from __future__ import annotations

from dataclasses import asdict

import torch

from audioldm_cond.components.cond_map import add_cond_map
from audioldm_cond.components.config import ComponentsConfig
from audioldm_cond.components.container import AudioLDMComponents
from audioldm_cond.components.position import add_time_position
from audioldm_cond.components.schedulers import make_scheduler
from audioldm_cond.conditioning import ClapConditioner
from audioldm_cond.mel import AudioLDMMelConfig, AudioLDMMelFrontEnd
from audioldm_cond.vocoder import GriffinLimConfig, GriffinLimVocoder, build_tiny_hifigan
from basekit.errors import UserError


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
    from diffusers import AutoencoderKL  # noqa: PLC0415 (heavy: keeps the package import light)

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
    from diffusers import UNet2DConditionModel  # noqa: PLC0415 (heavy: keeps the package import light)

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
