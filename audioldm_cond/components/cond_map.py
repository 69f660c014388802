"""The condition map: a learned layout of the CLAP condition over the clip, fed to the UNet as input channels.

Off by default (AudioLDM has none). Its weights live inside the UNet's (``time_cond_map.*``); diffusers does not
know the module, so :func:`load_cond_map` reads them back after ``UNet2DConditionModel.from_pretrained``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn

from basekit.errors import UserError


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
