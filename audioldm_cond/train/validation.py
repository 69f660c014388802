"""Validation of ``audioldm-cond train``: deterministic losses, and generation scored by eval_gen.

Every number here is deterministic for given weights: fixed batches, a fixed generator for noise and
timesteps, no dropout, so curves from different runs and resumes are comparable.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch

from audioldm_cond.pipeline import TemporalAudioLDMPipeline
from audioldm_cond.train import data as D
from audioldm_cond.train.config import TrainConfig
from basekit.errors import UserError
from eval_gen.score import score_arrays
from eval_gen.temporal import order_accuracy_detector

VAL_SEED = 1234


class TrainingRun(Protocol):
    """What validation reads from a run; the trainer (``audioldm_cond.train.trainer.Trainer``) is one.

    Declared here so that this module needs nothing from the trainer module, which imports this one.
    """

    cfg: TrainConfig
    components: Any  # AudioLDMComponents
    device: torch.device
    sr: int
    n_samples: int  # samples per clip
    train_mel: torch.Tensor  # [N, 1, frames, n_mels]
    val_mel: torch.Tensor | None
    val_clips: D.ClipSet | None
    val_lat: dict[str, torch.Tensor] | None  # posterior "mean" and "std", [N, C, h, w] each
    uncond: torch.Tensor  # [1, clap_dim], the null condition

    def ldm_loss(self, unet, micro: int, lat: dict | None = None, emb: dict | None = None,
                 idx: list[int] | None = None, g: torch.Generator | None = None) -> tuple[torch.Tensor, dict]: ...


@torch.no_grad()
def validate_vae(tr: "TrainingRun", vae) -> dict[str, Any]:
    """Mean L1 / L2 reconstruction of the validation mels through the posterior mode."""
    mel = tr.val_mel if tr.val_mel is not None else tr.train_mel[: tr.cfg.data.max_val_items]
    l1 = l2 = 0.0
    for s in range(0, len(mel), tr.cfg.optim.batch_size):
        x = mel[s : s + tr.cfg.optim.batch_size].to(tr.device)
        rec = vae.decode(vae.encode(x).latent_dist.mode()).sample.float()
        l1 += float((rec - x).abs().sum())
        l2 += float(((rec - x) ** 2).sum())
    n = mel.numel()
    return {"val_l1": l1 / n, "val_l2": l2 / n, "on": "val" if tr.val_mel is not None else "train"}


@torch.no_grad()
def validate_ldm(tr: "TrainingRun", unet) -> dict[str, Any]:
    """Noise-prediction loss on held-out latents, then generation of the validation prompts, scored.

    The loss uses the text embedding of each validation clip's first caption (its audio embedding when it
    has none) at fixed noise and timesteps. Generation runs only when a validation manifest with captions
    is given and ``cfg.val.generate`` is on.
    """
    cfg = tr.cfg
    out: dict[str, Any] = {}
    if tr.val_clips is None:
        return out
    cond = tr.components.conditioner
    n = len(tr.val_clips)
    prompts = [caps[0] if caps else None for caps in tr.val_clips.captions]
    emb = torch.zeros(n, tr.uncond.shape[1])
    with_text = [i for i, p in enumerate(prompts) if p is not None]
    if with_text:
        emb[with_text] = cond.raw_text([prompts[i] for i in with_text]).float().cpu()
    without = [i for i, p in enumerate(prompts) if p is None]
    if without:
        waves = D.load_waves(tr.val_clips, without, tr.sr, tr.n_samples)
        emb[without] = cond.raw_audio(waves, sr=tr.sr).float().cpu()
    g = torch.Generator().manual_seed(VAL_SEED)
    fixed = {"text": emb, "owner": torch.arange(n), "first": torch.arange(n), "count": torch.ones(n, dtype=torch.long)}
    saved_src, saved_drop = cfg.ldm.cond_source, cfg.ldm.cfg_dropout
    cfg.ldm.cond_source, cfg.ldm.cfg_dropout = "text", 0.0
    try:
        total, count = 0.0, 0
        for s in range(0, n, cfg.optim.batch_size):
            idx = list(range(s, min(n, s + cfg.optim.batch_size)))
            loss, _ = tr.ldm_loss(unet, 0, lat=tr.val_lat, emb=fixed, idx=idx, g=g)
            total += float(loss) * len(idx)
            count += len(idx)
        out["val_loss"] = total / count
    finally:
        cfg.ldm.cond_source, cfg.ldm.cfg_dropout = saved_src, saved_drop
    if cfg.val.generate and with_text and cfg.val.num_prompts > 0:
        out["generation"] = generate_and_score(tr, [prompts[i] for i in with_text][: cfg.val.num_prompts])
    return out


def generate_and_score(tr: "TrainingRun", prompts: list[str]) -> dict[str, Any]:
    """Generate ``prompts`` at each validation guidance scale and score them against the validation clips.

    Returns ``{"cfg=<scale>": {fad, kad, clap_score, order_clap, order_detector, order_n}}`` from
    ``eval_gen.score.score_arrays`` (FAD / KAD on the configured backend; CLAP score and CLAP order accuracy
    with eval_gen's default CLAP; order accuracy by event-onset detection), plus ``best_guidance`` (the scale
    with the highest detector order accuracy: the guidance sweep).
    """
    cfg = tr.cfg
    pipe = TemporalAudioLDMPipeline(tr.components, progress=False)
    seconds = tr.n_samples / tr.sr
    ref = [w.numpy() for w in D.load_waves(tr.val_clips, range(len(tr.val_clips)), tr.sr, tr.n_samples)]
    res: dict[str, Any] = {}
    for scale in cfg.val.guidance_scales:
        out = pipe(prompts, seconds=seconds, num_inference_steps=cfg.val.num_inference_steps,
                   guidance_scale=scale, seed=VAL_SEED)
        gen = [np.asarray(a, dtype=np.float32) for a in out.audios]
        sr = tr.components.sample_rate
        try:
            scores = score_arrays(gen, ref, sr, prompts=prompts, backend=cfg.val.backend,
                                  metrics=("fad", "kad", "clap", "order"), clap_model=cfg.val.clap_model)["metrics"]
        except UserError as exc:
            # The judge CLAP is missing (e.g. not shipped yet): keep the CLAP-free metrics, say what was skipped.
            res["skipped"] = f"CLAP score / CLAP order accuracy: {exc}"
            scores = score_arrays(gen, ref, sr, backend=cfg.val.backend, metrics=("fad", "kad"))["metrics"]
            det = order_accuracy_detector(gen, sr, prompts)
            scores.update({"clap_score": {"value": None}, "order_clap": {"value": None},
                           "order_detector": {"value": det["accuracy"], "n": det["n"]}})
        res[f"cfg={scale:g}"] = {
            "fad": scores["fad"]["value"], "kad": scores["kad"]["value"],
            "clap_score": scores["clap_score"]["value"], "order_clap": scores["order_clap"]["value"],
            "order_detector": scores["order_detector"]["value"], "order_n": scores["order_detector"]["n"]}
    acc = {k: v["order_detector"] for k, v in res.items() if isinstance(v, dict) and v.get("order_detector") is not None}
    if acc:
        res["best_guidance"] = max(acc, key=acc.get)
    return res
