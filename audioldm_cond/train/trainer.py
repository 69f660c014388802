"""The AudioLDM trainer behind ``audioldm-cond train`` (Hugging Face accelerate).

Two stages, the diffusers ``train_text_to_image.py`` pattern (``Accelerator``, ``prepare``,
``accumulate``, frozen parts with ``requires_grad_(False)``, EMA and checkpoints only when
``sync_gradients``, ``save_state`` / ``load_state`` for resume):

* ``vae``: the ``AutoencoderKL`` learns log-mels ``[B, 1, frames, n_mels]`` (L1 + L2 reconstruction and
  a small KL term), for a model trained from scratch.
* ``ldm``: the UNet learns to predict the noise added to frozen, scaled VAE latents
  ``[B, C, frames/f, n_mels/f]``, given a frozen CLAP condition ``[B, D]`` (FiLM-style class embedding).
  AudioLDM trains on the CLAP *audio* embedding of the training clip and generates from the *text*
  embedding; ``cond_source`` offers ``audio``, ``text`` or a per-sample ``mix``.

All randomness of a micro step (batch, posterior sample, noise, timesteps, CFG dropout) comes from
generators seeded by ``(seed, micro_step)``, so a run resumed from a checkpoint repeats exactly the steps an
uninterrupted run takes. Checkpoints (``checkpoints/step-XXXXXXXX``, :mod:`basekit.checkpoint`) are written into a
hidden temporary directory and renamed into place, so an interruption never leaves a half-written checkpoint behind.

Data: one ``--train`` manifest is read into memory and what the frozen parts compute is cached for every clip
(:mod:`audioldm_cond.train.data`). Shards, ``pipe:`` commands, ``bank:`` sources or several sources stream instead
(:mod:`audioldm_cond.train.stream`): DataLoader workers decode and compute the mels, and each micro step's VAE
posteriors and CLAP embeddings are computed for that batch only; the batch of micro step ``m`` is a pure function
of ``(seed, readers, m)``, so a resumed run reads exactly the items an uninterrupted one reads. The step's other
randomness is drawn in the same order on both paths.

Reading order: :meth:`Trainer.fit` (set-up, the loop, the end), :meth:`Trainer.run_step` (one micro step), the
losses (:meth:`Trainer.vae_loss`, :meth:`Trainer.ldm_loss`), then the data caches.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from diffusers import DDPMScheduler
from diffusers.training_utils import EMAModel, compute_snr
from tqdm.auto import tqdm

from audioldm_cond.components import (
    build_tiny_components,
    estimate_latent_range,
    load_components,
    replace_unet,
    save_components,
)
from audioldm_cond.train import data as D
from audioldm_cond.train.config import TrainConfig
from audioldm_cond.train.runlog import RunLog
from audioldm_cond.train.validation import validate_ldm, validate_vae
from basekit.atomic import atomic_write_text, replace_dir
from basekit.checkpoint import latest_checkpoint, list_checkpoints, read_state, save_checkpoint
from basekit.errors import UserError
from tclap.distributed import make_accelerator
from audioldm_cond.train.stream import LdmFeaturizer, StreamData, build_data_plan
from tclap.data.stream import CountCache
from tclap.train.data import log_ids

class Trainer:
    """Train one stage of an AudioLDM model; see the module docstring.

    Args:
        cfg: the run's configuration (validated here).
        components: an ``AudioLDMComponents`` to train (None: built or loaded from ``cfg.model``).
    """

    def __init__(self, cfg: TrainConfig, components: Any | None = None):
        cfg.validate()
        self.cfg = cfg
        self.run_dir = cfg.run_dir
        self.ckpt_root = self.run_dir / "checkpoints"
        self.accelerator = make_accelerator(
            mixed_precision=cfg.mixed_precision, gradient_accumulation_steps=cfg.optim.grad_accum
        )
        self.device = self.accelerator.device
        self.components = components if components is not None else load_components_for(cfg)
        self.scaling_factor: float | None = None
        self.adapter = None
        self.output_bias: float | None = None
        self.stream = None  # a train.stream.StreamData when the sources stream
        self._batches: Iterator | None = None
        self._data_wait = 0.0  # seconds this optimiser step waited for streamed batches (log: data_wait_s)

    # ------------------------------------------------------------------------------------------- data
    def _prepare_data(self) -> None:
        """Read manifests and fill the caches the stage needs (mels; latents and embeddings for ldm)."""
        cfg, c = self.cfg, self.components
        if cfg.data.streamed():
            self._prepare_stream()
            return
        need_captions = cfg.stage == "ldm" and cfg.ldm.cond_source in ("text", "mix")
        self.train_clips = D.read_clip_set(cfg.data.train_manifest, need_captions=need_captions)
        self._prepare_val()
        fe = c.mel
        self.sr = int(fe.sample_rate)
        self.n_samples = D.clip_samples(self.train_clips, self.sr, cfg.data.seconds)
        self.frame_multiple = _frame_multiple(c)
        self.train_mel = self._mels(self.train_clips, "train")
        self._prepare_val_features()
        if cfg.stage == "ldm":
            self.train_lat = self._latents(self.train_clips, self.train_mel, "train")
            self.train_cond = self._embeddings(self.train_clips, "train")

    def _prepare_stream(self) -> None:
        """Streamed sources: the data plan, this process's readers, and the sample the run's statistics come from
        (its mels, and for ldm their VAE posteriors) standing in for the in-memory path's ``train_mel`` /
        ``train_lat``; nothing else of the training data is held."""

        cfg, c, acc = self.cfg, self.components, self.accelerator
        self.train_clips = None
        self._prepare_val()
        self.sr = int(c.mel.sample_rate)
        self.n_samples = int(round(cfg.data.seconds * self.sr)) if cfg.data.seconds else 0
        self.frame_multiple = _frame_multiple(c)
        # The main process counts shards without an index first and keeps the counts; the others read them.
        with acc.main_process_first():
            cache = CountCache(self.run_dir / "stream_counts.json")
            plan = build_data_plan(cfg, acc.num_processes, self.sr, cache, quiet=cfg.quiet or not acc.is_main_process)
            if acc.is_main_process:
                cache.save()
        feat = LdmFeaturizer(c.mel.to_dict(), self.n_samples, self.frame_multiple,
                             keep_waves=cfg.stage == "ldm" and cfg.ldm.cond_source in ("audio", "mix"))
        self.stream = StreamData(plan, cfg, feat, acc.process_index)
        if acc.is_main_process:
            atomic_write_text(self.run_dir / "data_plan.json", json.dumps(plan.describe(), indent=1))
            if not cfg.quiet:
                for line in plan.lines():
                    print(f"audioldm-cond train: {line}", file=sys.stderr)
        sample = self.stream.sample()
        self.train_mel = sample.mel  # [n, 1, F, M], the first micro-steps' global batches
        self._prepare_val_features()
        if cfg.stage == "ldm":
            vae = c.vae.to(self.device).eval()
            with torch.no_grad():
                parts = [vae.encode(x.to(self.device)).latent_dist for x in sample.mel.split(cfg.optim.batch_size)]
            self.train_lat = {"mean": torch.cat([p.mean.float().cpu() for p in parts]),
                              "std": torch.cat([p.std.float().cpu() for p in parts])}

    def _prepare_val(self) -> None:
        cfg = self.cfg
        self.val_clips = None
        if cfg.data.val_manifest:
            self.val_clips = D.read_clip_set(cfg.data.val_manifest)
            if len(self.val_clips) > cfg.data.max_val_items:
                n = cfg.data.max_val_items
                self.val_clips = D.ClipSet(self.val_clips.ids[:n], self.val_clips.audio[:n],
                                           self.val_clips.captions[:n], self.val_clips.manifest)

    def _prepare_val_features(self) -> None:
        cfg, c = self.cfg, self.components
        self.val_mel = self._mels(self.val_clips, "val") if self.val_clips else None
        if cfg.stage == "ldm":
            self.val_lat = self._latents(self.val_clips, self.val_mel, "val") if self.val_clips else None
            with torch.no_grad():
                self.uncond = c.conditioner.raw_text([""], warn=False).detach().float().cpu()  # [1, clap_dim]

    def _mels(self, clips: D.ClipSet, tag: str) -> torch.Tensor:
        """Log-mels of every clip, ``[N, 1, frames, n_mels]`` (frames cut to a multiple the models need)."""
        fe = self.components.mel
        settings = fe.to_dict() if hasattr(fe, "to_dict") else repr(fe)
        key = D.files_key(clips, "mel", settings, self.n_samples)

        def compute(idx):
            waves = D.load_waves(clips, idx, self.sr, self.n_samples)
            with torch.no_grad():
                mel = fe(waves).float()
            return {"mel": mel[:, :, : mel.shape[2] - mel.shape[2] % self.frame_multiple]}

        return D.cached_chunks(self.cfg.cache_dir / f"mel-{tag}-{key}", len(clips), compute,
                               f"mels ({tag})", self.cfg.quiet)["mel"]

    def _latents(self, clips: D.ClipSet, mel: torch.Tensor, tag: str) -> dict[str, torch.Tensor]:
        """VAE posterior mean and std of every clip's mel, ``[N, C, h, w]`` each (VAE frozen)."""
        vae = self.components.vae.to(self.device).eval()
        key = D.files_key(clips, "lat", self.n_samples, D.module_key(vae))

        def compute(idx):
            with torch.no_grad():
                post = vae.encode(mel[idx].to(self.device)).latent_dist
            return {"mean": post.mean.float().cpu(), "std": post.std.float().cpu()}

        return D.cached_chunks(self.cfg.cache_dir / f"lat-{tag}-{key}", len(clips), compute,
                               f"latents ({tag})", self.cfg.quiet)

    def _embeddings(self, clips: D.ClipSet, tag: str) -> dict[str, torch.Tensor]:
        """Frozen CLAP embeddings (before any adapter): audio ``[N, D]``, text of every caption ``[M, D]``.

        Text rows are grouped per item: item ``i`` owns rows ``first[i] : first[i] + count[i]``.
        """
        cond = self.components.conditioner
        src = self.cfg.ldm.cond_source
        key = D.files_key(clips, "emb", src, self.n_samples, D.module_key(_clap_module(cond)),
                          [tuple(c) for c in clips.captions])
        out: dict[str, torch.Tensor] = {}
        if src in ("audio", "mix"):
            def audio(idx):
                waves = D.load_waves(clips, idx, self.sr, self.n_samples)
                with torch.no_grad():
                    return {"audio": cond.raw_audio(waves, sr=self.sr).float().cpu()}

            out.update(D.cached_chunks(self.cfg.cache_dir / f"emb-audio-{tag}-{key}", len(clips), audio,
                                       f"CLAP audio embeddings ({tag})", self.cfg.quiet))
        if src in ("text", "mix"):
            owner = [i for i, caps in enumerate(clips.captions) for _ in caps]
            texts = [c for caps in clips.captions for c in caps]

            def text(idx):
                with torch.no_grad():
                    return {"text": cond.raw_text([texts[i] for i in idx]).float().cpu()}

            out.update(D.cached_chunks(self.cfg.cache_dir / f"emb-text-{tag}-{key}", len(texts), text,
                                       f"CLAP text embeddings ({tag})", self.cfg.quiet))
            out["owner"] = torch.tensor(owner)
            # first caption row of each item and its caption count, to draw one caption per sample
            counts = torch.tensor([len(c) for c in clips.captions])
            out["first"] = torch.cumsum(counts, 0) - counts
            out["count"] = counts
        return out

    # ---------------------------------------------------------------------------------------- losses
    def vae_loss(self, vae, micro: int) -> tuple[torch.Tensor, dict[str, float]]:
        """Stage ``vae`` loss of one micro batch: ``l1·|x̂−x| + l2·(x̂−x)² + kl·KL(q(z|x) ‖ N(0, I))``."""
        cfg = self.cfg
        if self.stream is not None:
            x = self._stream_batch(micro).mel  # [B, 1, F, M]
        else:
            idx = D.batch_indices(len(self.train_mel), cfg.optim.batch_size, cfg.seed, micro)
            x = self.train_mel[idx]  # [B, 1, F, M]
        g = D.step_generator(cfg.seed, micro, 1)
        crop = cfg.vae.crop_frames
        if crop and crop < x.shape[2]:
            f = 2 ** (len(self.components.vae.config.block_out_channels) - 1)
            if crop % f:
                raise UserError(f"--vae-crop-frames {crop} must be a multiple of the VAE's downsampling factor {f}")
            start = int(torch.randint(0, (x.shape[2] - crop) // f + 1, (1,), generator=g)) * f
            x = x[:, :, start : start + crop]
        x = x.to(self.device)
        post = vae.encode(x).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=g).to(self.device)
        rec = vae.decode(z).sample
        l1 = (rec.float() - x).abs().mean()
        l2 = ((rec.float() - x) ** 2).mean()
        kl = post.kl().float().mean()  # summed over latent dims, averaged over the batch (AudioLDM)
        loss = cfg.vae.l1_weight * l1 + cfg.vae.l2_weight * l2 + cfg.vae.kl_weight * kl
        return loss, {"l1": l1.item(), "l2": l2.item(), "kl": kl.item()}

    def condition(self, idx: list[int], g: torch.Generator, emb: dict[str, torch.Tensor]) -> torch.Tensor:
        """Training condition ``[B, D]`` from cached raw CLAP embeddings: source choice, then CFG dropout.

        The same maths as ``ClapConditioner.training_condition`` (the null condition is the embedding of
        ``""``), on cached vectors so that no CLAP runs inside the step. A learned adapter, when the
        conditioner has one, is applied (and trained) in :meth:`ldm_loss`.
        """
        b = len(idx)
        rows = torch.tensor(idx)
        pick_text, k, drop = self._draw_condition(b, g, emb["count"][rows] if "text" in emb else None)
        parts = []
        if "text" in emb:
            parts.append(emb["text"][emb["first"][rows] + k])
        if "audio" in emb:
            parts.append(emb["audio"][rows])
        if len(parts) == 2:
            c = torch.where(pick_text[:, None], parts[0], parts[1])
        else:
            c = parts[0]
        c = torch.where(drop[:, None], self.uncond.expand(b, -1), c)
        return c

    def _draw_condition(self, b: int, g: torch.Generator, counts: torch.Tensor | None):
        """The condition's random choices for ``b`` samples, in a fixed order on both data paths: text or audio
        ``[b]`` bool (a coin only for ``mix``), the caption of each ``[b]`` long (of ``counts [b]``; None when no
        text is used), CFG dropout ``[b]`` bool."""
        cfg = self.cfg.ldm
        pick_text = torch.ones(b, dtype=torch.bool) if cfg.cond_source == "text" else (
            torch.zeros(b, dtype=torch.bool) if cfg.cond_source == "audio" else torch.rand(b, generator=g) < 0.5)
        k = (torch.rand(b, generator=g) * counts).long() if counts is not None else None
        drop = torch.rand(b, generator=g) < cfg.cfg_dropout
        return pick_text, k, drop

    def stream_condition(self, batch, g: torch.Generator) -> torch.Tensor:
        """Training condition ``[B, D]`` of a streamed batch: the same choices as :meth:`condition`, with the frozen
        CLAP run only on the rows that use it (the chosen caption, or the clip's audio; dropped rows take ``""``)."""
        cond = self.components.conditioner
        b = len(batch)
        text = self.cfg.ldm.cond_source in ("text", "mix")
        counts = torch.tensor([len(c) for c in batch.captions]) if text else None
        pick_text, k, drop = self._draw_condition(b, g, counts)
        c = self.uncond.expand(b, -1).clone()
        want_text = (pick_text & ~drop).nonzero().flatten().tolist() if text else []
        want_audio = (~pick_text & ~drop).nonzero().flatten().tolist()
        with torch.no_grad():
            if want_text:
                c[want_text] = cond.raw_text([batch.captions[i][int(k[i])] for i in want_text]).float().cpu()
            if want_audio:
                c[want_audio] = cond.raw_audio(batch.waves[want_audio], sr=self.sr).float().cpu()
        return c

    def ldm_loss(self, unet, micro: int, lat: dict | None = None, emb: dict | None = None,
                 idx: list[int] | None = None, g: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
        """Stage ``ldm`` loss: MSE between the UNet's prediction and the noise (or v) target."""
        cfg = self.cfg
        g = D.step_generator(cfg.seed, micro, 2) if g is None else g
        if lat is None and self.stream is not None:
            batch = self._stream_batch(micro)
            with torch.no_grad():
                post = self.components.vae.encode(batch.mel.to(self.device)).latent_dist
            return self._denoise_loss(unet, post.mean.float().cpu(), post.std.float().cpu(), g,
                                      lambda: self.stream_condition(batch, g))
        lat = self.train_lat if lat is None else lat
        emb = self.train_cond if emb is None else emb
        if idx is None:
            idx = D.batch_indices(len(lat["mean"]), cfg.optim.batch_size, cfg.seed, micro)
        return self._denoise_loss(unet, lat["mean"][idx], lat["std"][idx], g, lambda: self.condition(idx, g, emb))

    def _denoise_loss(self, unet, mean: torch.Tensor, std: torch.Tensor, g: torch.Generator,
                      condition) -> tuple[torch.Tensor, dict]:
        """The ldm loss of posteriors ``mean, std [B, C, h, w]``; ``condition()`` gives ``[B, D]`` (drawn after the
        posterior sample, the noise and the timesteps, from the same generator ``g``)."""
        cfg = self.cfg
        z = (mean + std * torch.randn(mean.shape, generator=g)) * self.scaling_factor  # posterior sample, scaled
        noise = torch.randn(z.shape, generator=g)
        t = torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (len(mean),), generator=g)
        cond = condition().to(self.device)
        if self.adapter is not None:
            cond = self.adapter(cond)
        noisy = self.noise_scheduler.add_noise(z, noise, t)
        if self.noise_scheduler.config.prediction_type == "v_prediction":
            target = self.noise_scheduler.get_velocity(z, noise, t)
        else:
            target = noise
        dev = self.device
        pred = unet(noisy.to(dev), t.to(dev), encoder_hidden_states=None, class_labels=cond).sample
        per = ((pred.float() - target.to(dev)) ** 2).mean(dim=(1, 2, 3))
        if cfg.ldm.snr_gamma:
            # Min-SNR weighting (Hang et al. 2023): caps the weight of low-noise steps, converges faster.
            snr = compute_snr(self.noise_scheduler, t)
            w = torch.clamp(snr, max=cfg.ldm.snr_gamma) / snr
            if self.noise_scheduler.config.prediction_type == "v_prediction":
                w = torch.clamp(snr, max=cfg.ldm.snr_gamma) / (snr + 1)
            per = per * w.to(dev)
        return per.mean(), {}

    # ------------------------------------------------------------------------------------------ fit
    def fit(self) -> dict[str, Any]:
        """Run the stage to ``cfg.optim.steps`` optimiser steps; returns the final summary dict.

        Set-up (run folder, data, models, optimiser, resume), then the loop: :meth:`run_step` per micro step and,
        after each optimiser step, :meth:`_end_of_step` (EMA, log, checkpoint, validation); then a last validation
        and the final save.
        """
        cfg = self.cfg
        latest = self._open_run_dir()
        self._prepare_data()
        self._setup_models(fresh=latest is None)
        log = RunLog(self.run_dir, tensorboard=True)
        step = self._resume(latest, log)
        self._record_latent_range()
        if step == 0 and self.output_bias is not None:
            log.event({"event": "init_output_bias", "step": 0, "value": self.output_bias})

        micro = step * cfg.optim.grad_accum
        meter = _Meter()
        pbar = tqdm(total=cfg.optim.steps, initial=step, desc=f"train {cfg.stage}", disable=cfg.quiet)
        last_val = None
        self._open_stream(micro)
        try:
            while step < cfg.optim.steps:
                meter.add(*self.run_step(micro))
                micro += 1
                if not self.accelerator.sync_gradients:
                    continue  # inside a gradient-accumulation window
                step += 1
                last_val = self._end_of_step(step, meter, log, pbar) or last_val
        except RuntimeError as exc:  # a data worker that died or hung: one line naming what it was reading
            line = self.stream.explain(exc) if self.stream is not None else None
            if line is None:
                raise
            raise UserError(line) from None
        finally:
            if self.stream is not None:
                self.stream.close()
        pbar.close()
        if last_val is None or last_val.get("step") != step:
            last_val = self.validate(step, log)
        final = self.save_final()
        log.close()
        out = {"step": step, "final": str(final), "validation": last_val, "scaling_factor": self.scaling_factor}
        if self.stream is not None:
            out["skipped"] = self.stream.all_skipped()
        return out

    def _open_stream(self, micro: int) -> None:
        """Streamed sources: start this process's readers at micro step ``micro`` (a resumed run's)."""
        if self.stream is None:
            return
        batches = self.stream.batches(micro)
        if self.cfg.data.log_sample_ids:

            batches = log_ids(batches, self.run_dir / f"sample_ids.rank{self.accelerator.process_index}.jsonl", micro)
        self._batches = batches

    def _stream_batch(self, micro: int):
        """The streamed batch of micro step ``micro`` (the readers move forward one micro step per call)."""
        t0 = time.perf_counter()
        batch = next(self._batches)
        self._data_wait += time.perf_counter() - t0
        if batch.micro != micro:  # the loop and the readers must agree, or a resume would read other items
            raise RuntimeError(f"streamed batch of micro step {batch.micro} where {micro} was due")
        return batch

    def run_step(self, micro: int) -> tuple[float, dict[str, float]]:
        """One micro step: the stage's loss on micro batch ``micro``, backward, and (when the accumulation window
        closes) gradient clipping and the optimiser and learning-rate steps. Returns the loss and extra terms."""
        acc, cfg = self.accelerator, self.cfg
        with acc.accumulate(self.model):
            loss, extra = self.loss_fn(self.model, micro)
            acc.backward(loss)
            if acc.sync_gradients and cfg.optim.max_grad_norm > 0:
                acc.clip_grad_norm_(self.params, cfg.optim.max_grad_norm)
            self.optimizer.step()  # accelerate's wrapper steps only when the window closes
            self.lr_scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
        return loss.item(), extra

    def _end_of_step(self, step: int, meter: "_Meter", log: RunLog, pbar) -> dict[str, Any] | None:
        """After optimiser step ``step``: EMA update, the step's log line, then a checkpoint and a validation when
        they are due. Returns the validation result when one ran."""
        cfg = self.cfg
        if self.ema is not None:
            self.ema.step(self.accelerator.unwrap_model(self.model).parameters())
        rec = meter.record(step, lr=self.lr_scheduler.get_last_lr()[0])
        if self.stream is not None:  # seconds of the step spent waiting for the data workers (bench_ldm_stream.py)
            rec["data_wait_s"], self._data_wait = round(self._data_wait, 4), 0.0
        log.scalars(rec)
        pbar.update(1)
        pbar.set_postfix(loss=f"{rec['loss']:.4f}")
        if cfg.ckpt_every and step % cfg.ckpt_every == 0:
            self.save_checkpoint(step)
        if cfg.val.every and step % cfg.val.every == 0:
            return self.validate(step, log)
        return None

    # ---------------------------------------------------------------------------------------- set-up
    def _open_run_dir(self) -> Path | None:
        """Make the run folder and write its config; returns the checkpoint to resume from (None: start fresh).

        A folder that already holds checkpoints is refused unless ``--resume`` was given.
        """
        self.run_dir.mkdir(parents=True, exist_ok=True)
        latest = latest_checkpoint(self.ckpt_root)
        if latest is not None and not self.cfg.resume:
            raise UserError(f"{self.run_dir} already holds checkpoints (last: {latest.name}); pass --resume to "
                            "continue that run, or choose a new --out")
        atomic_write_text(self.run_dir / "config.json", self.cfg.to_json())
        return latest

    def _setup_models(self, fresh: bool) -> None:
        """Freeze all but the stage's model, build the optimiser, the learning-rate schedule and EMA, and hand
        them to accelerate. ``fresh``: no checkpoint will be loaded (a from-scratch VAE then gets its output bias).
        """
        cfg, acc, c = self.cfg, self.accelerator, self.components
        if cfg.stage == "vae":
            model = c.vae
            if cfg.vae.init_output_bias and cfg.model == "tiny" and fresh:
                self.output_bias = float(self.train_mel.mean())
                with torch.no_grad():
                    model.decoder.conv_out.bias.fill_(self.output_bias)
            frozen = [c.unet, _clap_module(c.conditioner)]
        else:
            model = c.unet
            frozen = [c.vae, _clap_module(c.conditioner)]
            if cfg.ldm.prediction_type and c.scheduler.config.prediction_type != cfg.ldm.prediction_type:
                c.scheduler = type(c.scheduler).from_config(c.scheduler.config,
                                                            prediction_type=cfg.ldm.prediction_type)
            self.noise_scheduler = DDPMScheduler.from_config(c.scheduler.config)
            self.scaling_factor = self._scaling_factor()
        for m in frozen:
            if m is not None:
                m.requires_grad_(False).eval()
        model.requires_grad_(True).train()
        params = list(model.parameters())
        # A learned adapter (CLAP size != UNet condition size, when asked for) trains with the UNet.
        adapter = getattr(c.conditioner, "adapter", None) if cfg.stage == "ldm" else None
        if adapter is not None:
            adapter.requires_grad_(True).train()
            params += list(adapter.parameters())
        opt = torch.optim.AdamW(params, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor(cfg.optim))
        if adapter is not None:
            model, adapter, opt, sched = acc.prepare(model, adapter, opt, sched)
        else:
            model, opt, sched = acc.prepare(model, opt, sched)
        if cfg.stage == "ldm" and hasattr(c.conditioner, "check_fits"):
            c.conditioner.check_fits(acc.unwrap_model(model))
        ema = None
        if cfg.ema_decay > 0:
            inner = acc.unwrap_model(model)
            ema = EMAModel(inner.parameters(), decay=cfg.ema_decay, model_cls=type(inner), model_config=inner.config)
            ema.to(self.device)
            acc.register_for_checkpointing(ema)
        self.model, self.adapter, self.ema, self.params = model, adapter, ema, params
        self.optimizer, self.lr_scheduler = opt, sched
        self.loss_fn = self.vae_loss if cfg.stage == "vae" else self.ldm_loss

    def _resume(self, latest: Path | None, log: RunLog) -> int:
        """Load ``latest`` (model, optimiser, EMA and RNG states; the latent scale) and drop log lines written
        after it; returns the step to continue from (0 without a checkpoint)."""
        if latest is None:
            if self.cfg.resume:
                log.event({"event": "resume", "step": 0, "checkpoint": None,
                           "note": "no checkpoint yet; starting fresh"})
            return 0
        state = read_state(latest)
        readers = state.get("stream_readers")
        if self.stream is not None and readers is not None and readers != self.stream.plan.readers:
            raise UserError(f"checkpoint {latest} was written by a run with {readers} data reader(s) (processes x "
                            f"--workers), this one has {self.stream.plan.readers}; it would read other items: resume "
                            "with the same processes and --workers")
        try:
            self.accelerator.load_state(str(latest))
        except (RuntimeError, KeyError, ValueError) as exc:
            raise UserError(f"checkpoint {latest} does not fit this model/optimizer "
                            f"({str(exc).splitlines()[0][:120]}); resume with the settings that wrote it, or "
                            "choose a new --out") from None
        step = int(state["step"])
        if state.get("scaling_factor") is not None:
            self.scaling_factor = float(state["scaling_factor"])
        log.truncate_after(step)
        log.event({"event": "resume", "step": step, "checkpoint": latest.name})
        return step

    def _record_latent_range(self) -> None:
        """ldm: the clean-latent range generation clamps to (validation samples included), from the posterior
        means of the training latents at the (possibly resumed) scale."""
        if self.cfg.stage == "ldm":
            self.components.config.latent_range = estimate_latent_range(self.train_lat["mean"] * self.scaling_factor)

    def _scaling_factor(self) -> float:
        """Latent scale: 1/std of the training latents (``estimate``), the VAE's own (``keep``) or a number."""
        mode = self.cfg.ldm.scaling_factor
        if mode == "keep":
            return float(self.components.vae.config.scaling_factor)
        if mode != "estimate":
            return float(mode)
        mean, std = self.train_lat["mean"], self.train_lat["std"]
        # Var of a posterior sample over the data = Var(mean) + E[std²] (law of total variance).
        var = mean.double().var() + (std.double() ** 2).mean()
        return float(1.0 / math.sqrt(float(var)))

    # ------------------------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, step: int) -> Path:
        """Write ``checkpoints/step-XXXXXXXX`` (accelerate state + ``trainer_state.json``) atomically and keep the
        last ``ckpt_keep``; see :mod:`basekit.checkpoint`."""
        acc = self.accelerator
        state = {"scaling_factor": self.scaling_factor, "config": self.cfg.to_dict()}
        if self.stream is not None:
            state["stream_readers"] = self.stream.plan.readers  # the batches depend on it
        return save_checkpoint(self.ckpt_root, step, lambda d: acc.save_state(str(d)), state,
                               keep=self.cfg.ckpt_keep, is_main=acc.is_main_process, barrier=acc.wait_for_everyone)

    def save_final(self) -> Path:
        """Save the trained components (EMA weights) with ``save_components`` under ``<out>/final`` (atomic)."""
        cfg, c = self.cfg, self.components
        if cfg.stage == "ldm":
            c.vae.register_to_config(scaling_factor=self.scaling_factor)
            c.config.source = cfg.ldm.cond_source
            c.config.cfg_dropout = cfg.ldm.cfg_dropout
        c.config.extra = {**c.config.extra, f"trained_{cfg.stage}": {
            "steps": cfg.optim.steps, "batch_size": cfg.optim.batch_size, "lr": cfg.optim.lr,
            "seed": cfg.seed, "train": ", ".join(cfg.data.sources())}}
        final = self.run_dir / "final"
        tmp = self.run_dir / f".tmp-final-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        with self._ema_weights():
            save_components(c, tmp)
        atomic_write_text(tmp / "training.json", json.dumps(
            {"stage": cfg.stage, "steps": cfg.optim.steps, "scaling_factor": self.scaling_factor,
             "config": cfg.to_dict()}, indent=2))
        replace_dir(tmp, final)
        return final

    @contextlib.contextmanager
    def _ema_weights(self) -> Iterator[torch.nn.Module]:
        """The trained model (unwrapped) holding its EMA weights when EMA is on; training weights come back after."""
        inner = self.accelerator.unwrap_model(self.model)
        if self.ema is not None:
            self.ema.store(inner.parameters())
            self.ema.copy_to(inner.parameters())
        try:
            yield inner
        finally:
            if self.ema is not None:
                self.ema.restore(inner.parameters())

    # ------------------------------------------------------------------------------------- validation
    def validate(self, step: int, log: RunLog) -> dict[str, Any]:
        """Validation losses (fixed batches and noise) and, for ``ldm``, generation scored by eval_gen.

        Runs with the EMA weights when EMA is on; training weights are restored afterwards.
        """
        with self._ema_weights() as inner:
            inner.eval()
            try:
                res = validate_vae(self, inner) if self.cfg.stage == "vae" else validate_ldm(self, inner)
            finally:
                inner.train()
        res = {"step": step, **res}
        log.validation(res)
        return res


class _Meter:
    """Sums of the loss and extra terms over the micro steps of one optimiser step, and the step's wall time."""

    def __init__(self):
        self._reset()

    def _reset(self) -> None:
        self.loss, self.n, self.extra, self.t0 = 0.0, 0, {}, time.time()

    def add(self, loss: float, extra: dict[str, float]) -> None:
        self.loss += loss
        self.n += 1
        for k, v in extra.items():
            self.extra[k] = self.extra.get(k, 0.0) + v

    def record(self, step: int, lr: float) -> dict[str, Any]:
        """The log line of optimiser step ``step`` (means over its micro steps); starts the next step's sums."""
        rec = {"step": step, "loss": self.loss / self.n, "lr": lr, "sec": round(time.time() - self.t0, 3),
               **{k: v / self.n for k, v in self.extra.items()}}
        self._reset()
        return rec


# ------------------------------------------------------------------------------------------- helpers
def lr_factor(optim) -> Callable[[int], float]:
    """The learning-rate multiplier of step ``s`` (0-based) under ``optim`` (an ``OptimConfig``).

    Linear warm-up over ``warmup_steps`` (``s / warmup_steps``, diffusers' ``constant_with_warmup`` exactly), then
    1, then over the last ``decay_steps`` of ``steps`` a linear fall to 0 (``(steps - s) / decay_steps``).
    """
    warm, decay, total = int(optim.warmup_steps), int(optim.decay_steps), int(optim.steps)

    def factor(s: int) -> float:
        if s < warm:
            return float(s) / float(max(1, warm))
        if decay > 0 and s >= total - decay:
            return max(0.0, float(total - s) / float(decay))
        return 1.0

    return factor


def load_components_for(cfg: TrainConfig):
    """Build tiny components (``--model tiny``) or load a shipped name / diffusers-layout directory.

    ``--clap`` swaps the conditioning encoder (``text_encoder`` of ``load_components``); for stage ``ldm``,
    ``--unet-channels`` (``cfg.ldm.unet``) swaps in a fresh UNet of that size.
    """
    if cfg.model == "tiny":
        kwargs = {"source": cfg.ldm.cond_source, "cfg_dropout": cfg.ldm.cfg_dropout, **cfg.tiny_kwargs}
        comps = build_tiny_components(clap=cfg.clap or "tiny", seed=cfg.seed, **kwargs)
    else:
        comps = load_components(cfg.model, text_encoder=cfg.clap, source=cfg.ldm.cond_source)
    if cfg.stage == "ldm" and cfg.ldm.unet:
        u = cfg.ldm.unet
        replace_unet(comps, u["channels"], layers_per_block=int(u.get("layers_per_block", 1)),
                          attention=bool(u.get("attention", True)), seed=cfg.seed + 1,
                          position_channels=int(u.get("position_channels", 0)),
                          cond_map_channels=int(u.get("cond_map_channels", 0)),
                          cond_map_segments=int(u.get("cond_map_segments", 8)))
    return comps


def _clap_module(conditioner) -> torch.nn.Module | None:
    """The frozen torch module behind a conditioner (for freezing and for cache keys)."""
    for name in ("clap", "bundle"):
        obj = getattr(conditioner, name, None)
        if obj is not None:
            return getattr(obj, "model", obj)
    return conditioner if isinstance(conditioner, torch.nn.Module) else None


def _frame_multiple(components) -> int:
    """Mel frames must divide by the VAE's and the UNet's total down-sampling factors."""
    vae_f = 2 ** (len(components.vae.config.block_out_channels) - 1)
    unet_f = 2 ** (len(components.unet.config.block_out_channels) - 1)
    return vae_f * unet_f


__all__ = ["Trainer", "latest_checkpoint", "list_checkpoints", "load_components_for"]
