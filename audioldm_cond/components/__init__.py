"""AudioLDM components on diffusers models: build, save and load. One concept per module:

==================  ==========================================================================================
``config``          :class:`ComponentsConfig`, what the diffusers configs do not hold (``audioldm_cond.json``)
``container``       :class:`AudioLDMComponents`, the parts of one model and the checks that they fit
``builders``        :func:`build_tiny_components`, :func:`build_unet`, :func:`replace_unet` (seeded random weights)
``position``        :class:`TimePositionChannels`, fixed time-position input channels (this project's addition)
``cond_map``        :class:`CondTimeMap`, a learned layout of the condition over time (this project's addition)
``latent_range``    :func:`estimate_latent_range`, :func:`clamp_prediction` (the clean-latent clamp of sampling)
``schedulers``      :func:`make_scheduler` over AudioLDM's betas
``io``              :func:`save_components`, :func:`load_components`, :func:`resolve_model_dir`, shipped models
==================  ==========================================================================================

Every public name is importable from this package (``from audioldm_cond.components import load_components``).

Contract (the trainer and the embedded-model recipe code against it):

- ``AudioLDMComponents(vae, unet, scheduler, vocoder, mel, conditioner, config)``:
  ``vae`` a diffusers ``AutoencoderKL`` on 1-channel log-mels ``[B, 1, frames, n_mels]``;
  ``unet`` a ``UNet2DConditionModel`` with ``class_embed_type="simple_projection"``,
  ``class_embeddings_concat=True`` and ``projection_class_embeddings_input_dim == conditioner.output_dim``
  (FiLM-style conditioning, no cross-attention text: ``encoder_hidden_states=None``, ``class_labels=cond``);
  ``scheduler`` DPM-Solver++ by default (:func:`make_scheduler` gives ``"ddim"`` / ``"ddpm"`` from the same betas);
  ``vocoder`` a ``SpeechT5HifiGan`` or :class:`audioldm_cond.vocoder.GriffinLimVocoder`;
  ``mel`` an :class:`audioldm_cond.mel.AudioLDMMelFrontEnd`; ``conditioner`` a
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

Importing this package is light: diffusers, transformers and safetensors load inside the functions that need them.
"""

from audioldm_cond.components.builders import build_tiny_components, build_unet, replace_unet
from audioldm_cond.components.cond_map import CondTimeMap, add_cond_map, load_cond_map
from audioldm_cond.components.config import CONFIG_FILE, ComponentsConfig
from audioldm_cond.components.container import AudioLDMComponents
from audioldm_cond.components.io import (
    ADAPTER_FILE,
    SHIPPED_MODELS,
    assets_dir,
    load_components,
    resolve_model_dir,
    save_components,
)
from audioldm_cond.components.latent_range import clamp_prediction, estimate_latent_range
from audioldm_cond.components.position import TimePositionChannels, add_time_position, time_position_features
from audioldm_cond.components.schedulers import AUDIOLDM_BETAS, make_scheduler

__all__ = [
    "ADAPTER_FILE",
    "AUDIOLDM_BETAS",
    "AudioLDMComponents",
    "CONFIG_FILE",
    "ComponentsConfig",
    "CondTimeMap",
    "SHIPPED_MODELS",
    "TimePositionChannels",
    "add_cond_map",
    "add_time_position",
    "assets_dir",
    "build_tiny_components",
    "build_unet",
    "clamp_prediction",
    "estimate_latent_range",
    "load_components",
    "load_cond_map",
    "make_scheduler",
    "replace_unet",
    "resolve_model_dir",
    "save_components",
    "time_position_features",
]
