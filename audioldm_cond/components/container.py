"""The container: :class:`AudioLDMComponents` holds the parts of one AudioLDM and checks that they fit."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from audioldm_cond.components.config import ComponentsConfig
from audioldm_cond.components.position import add_time_position
from audioldm_cond.conditioning import ClapConditioner
from basekit.errors import UserError


@dataclass
class AudioLDMComponents:
    """Everything generation and training need (see the :mod:`audioldm_cond.components` docstring)."""

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
        from diffusers import AudioLDMPipeline  # noqa: PLC0415 (heavy: keeps the package import light)

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
