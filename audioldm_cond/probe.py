"""Does a trained AudioLDM *use* the order in its prompt? A likelihood probe that needs no sampling.

Temporal-order accuracy of generated clips (``eval_gen``) mixes three failures: the conditioning embedding may not
carry the order, the UNet may not use it, and the sampler may not realise it. This probe isolates the middle one.
For a real clip ``x`` whose caption says "A then B", the UNet's denoising error at noise level ``t``

    L(x, c, t, ε) = mean((ε̂_θ(√ᾱ_t·z + √(1−ᾱ_t)·ε, t, c) − target)²)      (z: the VAE posterior mean of x's
                                                                         log-mel, times the scaling factor)

(target ``ε``, or ``v`` for v-prediction models) is, summed over ``t``, a Monte-Carlo estimate of −log p(x | c) up
to weights and a constant: a conditional diffusion model is a classifier (Li et al. 2023, "Your Diffusion Model
is Secretly a Zero-Shot Classifier"; Clark & Jaini 2023). With the same ``z``, ``t`` and ``ε`` for every caption:

- **order preference**: the share of clips for which L(x, caption) < L(x, order-swapped caption). 50% means the
  UNet ignores the order of its conditioning, whatever the embedding carries.
- **identity preference** (the control): L(x, caption) < L(x, the caption of a clip with other events). Near 100%
  shows that the probe has the power to see a preference the UNet did learn.

Each preference comes with a 95% Wilson interval and the mean error margin per timestep.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from basekit.errors import UserError
from basekit.audio import load_audio, pad_or_crop

DEFAULT_TIMESTEPS = (0.1, 0.25, 0.4, 0.55, 0.7, 0.85)  # fractions of the training schedule's length


@dataclass(frozen=True)
class ProbeItem:
    """One real clip and three captions: its own, the order-swapped one, and another clip's (other events)."""

    id: str
    audio: Path
    caption: str
    swapped: str
    other: str


def probe_items(items: Sequence[dict], n: int | None = None) -> tuple[list[ProbeItem], dict[str, int]]:
    """Manifest items (``tclap.data.manifest``) -> probe items, and the counts of what was skipped and why.

    An item needs a caption and an order-swapped negative caption. Its "other" caption is the caption of the next
    usable item whose event labels differ (by the ``events`` field; by caption text when there is none).
    """
    usable, skipped = [], {"no negative caption": 0}
    for it in items:
        caps, negs = it.get("captions") or [], it.get("negative_captions") or []
        if not caps or not negs:
            skipped["no negative caption"] += 1
            continue
        labels = frozenset(e.get("label") for e in it.get("events") or []) or frozenset([caps[0]])
        usable.append((it, caps[0], negs[0], labels))
    out: list[ProbeItem] = []
    skipped["no caption with other events"] = 0
    for k, (it, cap, neg, labels) in enumerate(usable):
        other = next((u[1] for j in range(1, len(usable)) for u in [usable[(k + j) % len(usable)]] if u[3] != labels),
                     None)
        if other is None:
            skipped["no caption with other events"] += 1
            continue
        out.append(ProbeItem(str(it.get("id", k)), Path(it["audio"]), cap, neg, other))
        if n is not None and len(out) >= n:
            break
    return out, {k: v for k, v in skipped.items() if v}


def resolve_timesteps(scheduler, timesteps: Sequence[float] | None = None) -> torch.Tensor:
    """Fractions in (0, 1) of the training schedule, or integer timesteps, -> ``[T]`` long timesteps."""
    n = int(scheduler.config.num_train_timesteps)
    ts = DEFAULT_TIMESTEPS if timesteps is None else tuple(timesteps)
    if not ts:
        raise UserError("--timesteps is empty; give fractions of the schedule, e.g. 0.1,0.4,0.7, or integer steps")
    out = []
    for t in ts:
        step = int(round(float(t) * n)) if 0 < float(t) < 1 else int(t)
        if not 0 <= step < n:
            raise UserError(f"--timesteps value {t} is outside the model's schedule (0..{n - 1}, or a fraction in (0, 1))")
        out.append(step)
    return torch.tensor(out, dtype=torch.long)


def clip_latents(components, waves: torch.Tensor) -> torch.Tensor:
    """``waves [B, samples]`` at the model's rate -> scaled VAE posterior means ``[B, C, h, w]``."""
    c = components
    vae = c.vae
    mel = c.mel(waves.to(c.device)).to(vae.dtype)  # [B, 1, frames, n_mels]
    f = c.vae_scale_factor
    mel = mel[:, :, : mel.shape[2] - mel.shape[2] % f]
    return vae.encode(mel).latent_dist.mean.float() * float(vae.config.scaling_factor)


def denoising_errors(unet, scheduler, latents: torch.Tensor, conds: torch.Tensor, timesteps: torch.Tensor,
                     noise: torch.Tensor) -> torch.Tensor:
    """The UNet's denoising error of every clip under every condition at every timestep.

    Args:
        latents: clean scaled latents ``[N, C, h, w]``.
        conds: conditions ``[K, N, D]`` (K captions per clip).
        timesteps: ``[T]``.
        noise: ``[T, N, C, h, w]``, the same for every condition.

    Returns:
        ``[K, N, T]``: mean squared error of the prediction against the scheduler's target (ε or v).
    """
    k_n, n, _ = conds.shape
    n_t = len(timesteps)
    z = latents.unsqueeze(0).expand(n_t, *latents.shape).reshape(n_t * n, *latents.shape[1:])
    eps = noise.reshape(n_t * n, *latents.shape[1:])
    t = timesteps.repeat_interleave(n)
    noisy = scheduler.add_noise(z, eps, t)
    target = scheduler.get_velocity(z, eps, t) if scheduler.config.prediction_type == "v_prediction" else eps
    dev, dt = next(unet.parameters()).device, next(unet.parameters()).dtype
    out = torch.empty(k_n, n, n_t)
    for k in range(k_n):
        labels = conds[k].unsqueeze(0).expand(n_t, n, conds.shape[-1]).reshape(n_t * n, -1)
        pred = unet(noisy.to(dev, dt), t.to(dev), encoder_hidden_states=None, class_labels=labels.to(dev, dt)).sample
        err = ((pred.float().cpu() - target.float()) ** 2).mean(dim=(1, 2, 3))
        out[k] = err.view(n_t, n).T
    return out


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion ``k / n`` (in [0, 1])."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    d = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / d
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, centre - half), min(1.0, centre + half))


@torch.no_grad()
def probe_order(components, items: Sequence[ProbeItem], *, timesteps: Sequence[float] | None = None,
                noise_draws: int = 1, seconds: float | None = None, seed: int = 0, batch_size: int = 16,
                progress: bool = False) -> dict:
    """Run the probe (see the module docstring) over ``items``.

    Returns a dict with ``order_preference`` and ``identity_preference`` (percent), their 95% Wilson intervals
    (``*_ci``), ``timesteps``, the mean margins ``L(swapped) − L(caption)`` and ``L(other) − L(caption)`` per
    timestep (positive: the caption is preferred), ``n_items`` and per-item rows (``items``).
    """
    from diffusers import DDPMScheduler  # noqa: PLC0415 (diffusers is heavy; loaded only when this path runs)


    if not items:
        raise UserError("no probe items: the data needs captions with order-swapped negative captions "
                        "(a `tclap mixup` manifest, or builtin-heldout)")
    if noise_draws < 1:
        raise UserError(f"--noise-draws {noise_draws}: give 1 or more")
    c = components
    # The training noise schedule (the same betas as the sampler's config; add_noise needs DDPM's form).
    sched = DDPMScheduler.from_config(c.scheduler.config)
    ts = resolve_timesteps(sched, timesteps)
    secs = float(seconds if seconds is not None else c.config.max_seconds)
    if secs <= 0 or secs > c.config.max_seconds:
        raise UserError(f"--seconds {secs:g} is outside this model's range (0, {c.config.max_seconds:g}]")
    sr = c.sample_rate
    n_samples = int(round(secs * sr))
    g = torch.Generator().manual_seed(int(seed))
    rows: list[dict] = []
    errs = []
    starts = range(0, len(items), batch_size)
    from tqdm.auto import tqdm  # noqa: PLC0415

    for s in tqdm(starts, desc="order probe", disable=not progress, leave=False):
        batch = items[s : s + batch_size]
        waves = []
        for it in batch:
            if not it.audio.is_file():
                raise UserError(f"audio file not found: {it.audio} (item {it.id}); fix the manifest's audio path")
            waves.append(pad_or_crop(load_audio(it.audio, sr=sr), n_samples, mode="pad"))
        z = clip_latents(c, torch.from_numpy(np.stack(waves)).float())
        conds = torch.stack([c.conditioner.encode_text([getattr(it, k) for it in batch]).float().cpu()
                             for k in ("caption", "swapped", "other")])  # [3, b, D]
        e = torch.zeros(3, len(batch), len(ts))
        for _ in range(noise_draws):
            noise = torch.randn((len(ts), *z.shape), generator=g)
            e += denoising_errors(c.unet, sched, z.cpu(), conds, ts, noise)
        errs.append(e / noise_draws)
    err = torch.cat(errs, dim=1)  # [3, N, T]
    order_margin = err[1] - err[0]  # [N, T]: > 0 when the true caption explains the clip better
    ident_margin = err[2] - err[0]
    order_win = order_margin.sum(1) > 0
    ident_win = ident_margin.sum(1) > 0
    n = len(items)
    for j, it in enumerate(items):
        rows.append({"id": it.id, "caption": it.caption, "swapped": it.swapped, "other": it.other,
                     "error_caption": err[0, j].tolist(), "error_swapped": err[1, j].tolist(),
                     "error_other": err[2, j].tolist(), "prefers_order": bool(order_win[j]),
                     "prefers_identity": bool(ident_win[j])})
    ko, ki = int(order_win.sum()), int(ident_win.sum())
    return {
        "order_preference": 100.0 * ko / n,
        "order_preference_ci": [100.0 * x for x in wilson(ko, n)],
        "identity_preference": 100.0 * ki / n,
        "identity_preference_ci": [100.0 * x for x in wilson(ki, n)],
        "timesteps": ts.tolist(),
        "order_margin_per_t": order_margin.mean(0).tolist(),
        "identity_margin_per_t": ident_margin.mean(0).tolist(),
        "n_items": n,
        "noise_draws": int(noise_draws),
        "seconds": secs,
        "items": rows,
    }


def markdown_row(name: str, res: dict) -> str:
    """One row of the probe's Markdown table (see :data:`MARKDOWN_HEADER`)."""
    o, i = res["order_preference_ci"], res["identity_preference_ci"]
    return (f"| {name} | {res['order_preference']:.1f} ({o[0]:.0f}-{o[1]:.0f}) | "
            f"{res['identity_preference']:.1f} ({i[0]:.0f}-{i[1]:.0f}) | {res['n_items']} |")


MARKDOWN_HEADER = ("| model | order preference % (95% CI) | identity preference % (95% CI) | clips |\n"
                   "|---|---|---|---|")
