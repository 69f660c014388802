"""Time-position channels: fixed features of each latent frame's place in the clip, appended to the UNet's input.

Off by default (AudioLDM has none). :class:`TimePositionChannels` is a forward pre-hook, so callers keep passing
``[B, latent_channels, h, w]``; it also appends the output of a :class:`~audioldm_cond.components.cond_map.CondTimeMap`
when the UNet carries one (``unet.time_cond_map``).
"""

from __future__ import annotations

import torch

from basekit.errors import UserError


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
