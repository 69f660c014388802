"""The clean-latent range: measured on the training latents, used to clamp each sampling step's predicted x0."""

from __future__ import annotations

import torch

from basekit.errors import UserError


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
