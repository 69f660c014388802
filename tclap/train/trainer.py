"""The T-CLAP training loop on Hugging Face accelerate (1 CPU, N GPUs or several machines, same code).

One optimizer step = ``grad_accum`` micro-batches; micro-batch ``m`` of the whole run is the global batch
``sampler.batch(m)`` (a pure function of ``(seed, m)``), cut into one contiguous share per process. Each
share is embedded with one audio forward and ONE text forward over ``[positive captions; negative
captions]``; the loss is ``L_c + λ·L_t`` from :class:`tclap.losses.TClapLoss` (L_c over the batch of all
processes, gathered with gradients).

Determinism and resume: captions, batches and the dropout seed of every micro-step derive from
``(seed, step)``, never from a running RNG, so a run resumed from a checkpoint (``accelerator.save_state``
into a temp dir, then renamed) continues exactly as an uninterrupted one would.

BatchNorm: HTSAT normalises its mel input with a BatchNorm. Batch statistics would make a sample's
embedding depend on the process's share of the batch (so N processes would not match 1), and SyncBatchNorm
is CUDA-only. We therefore keep every BatchNorm in eval mode (running statistics, as is usual when
fine-tuning); when training from random init the statistics are first set from the training features.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from basekit.atomic import atomic_write_text
from tclap.distributed import make_accelerator, resolve_mixed_precision
from basekit.errors import UserError
from tclap.train.config import TrainConfig
from tclap.train.data import TrainData, build_pools, mel_statistics, prepare_features
from tclap.train.sampler import POSITIVE, MixedBatchSampler

CKPT_PREFIX = "step-"
LOG_NAME = "metrics.jsonl"


class _TrainModule(nn.Module):
    """Wraps ``ClapModel`` so that DDP sees one forward: features + tokens -> embeddings and logit scales."""

    def __init__(self, bundle):
        super().__init__()
        self.model = bundle.model
        self._bundle = [bundle]  # a list, so nn.Module does not try to register it

    def forward(self, input_features, input_ids, attention_mask):
        b = self._bundle[0]
        audio = b.audio_embeds(input_features)  # [Ba, D]
        text = b.text_embeds(input_ids, attention_mask)  # [Bt, D]
        return audio, text, self.model.logit_scale_a, self.model.logit_scale_t


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate of optimizer step ``step`` (0-based): linear warm-up, then constant or cosine."""
    o = cfg.optim
    if o.warmup_steps and step < o.warmup_steps:
        return o.lr * (step + 1) / o.warmup_steps
    if o.schedule == "constant":
        return o.lr
    span = max(1, cfg.steps - o.warmup_steps)
    prog = min(1.0, (step - o.warmup_steps) / span)
    return o.lr * (o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * prog)))


def _seed_for(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


def _set_dropout(model: nn.Module, p: float) -> None:
    """Every random drop in the model: ``nn.Dropout`` modules, the text attention's functional dropout
    (a float ``attention_dropout``) and HTSAT's stochastic depth (``drop_prob``)."""
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = p
        for attr in ("attention_dropout", "drop_prob"):
            if isinstance(getattr(m, attr, None), float):
                setattr(m, attr, p)


def _freeze_batchnorm(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)


def _set_mel_batchnorm(model, stats) -> None:
    """Set HTSAT's input BatchNorm (one channel per mel bin) from data statistics (random init only)."""
    bn = getattr(getattr(model, "audio_model", None), "audio_encoder", None)
    bn = getattr(bn, "batch_norm", None)
    if bn is None or stats is None or bn.num_features != stats[0].numel():
        return
    with torch.no_grad():
        bn.running_mean.copy_(stats[0])
        bn.running_var.copy_(stats[1].clamp_min(1e-5))


@dataclass
class _Batch:
    features: torch.Tensor  # [b (+ b_neg_audio), 1, frames, n_mels]
    texts: list[str]  # b positives, then the negatives of the items that have one
    has_neg: torch.Tensor  # [b] bool
    neg_audio_rows: torch.Tensor  # [b] long: row of the item's negative audio in features, -1 if none


def _make_batch(data: TrainData, items, cfg: TrainConfig, micro: int, frontend, rank: int) -> _Batch:
    rng = np.random.default_rng([cfg.seed, 3, micro])  # caption choice, shared by every process
    choices = rng.random((len(items), 2))
    pos_texts, neg_texts, feats, has_neg, wave_rows = [], [], [], [], []
    neg_feats, neg_rows = [], []
    for k, it in enumerate(items):
        pool = data.positive if it.pool == POSITIVE else data.temporal
        caps, negs = pool.captions[it.index], pool.negatives[it.index]
        j = int(choices[k, 0] * len(caps))
        pos_texts.append(caps[j])
        if negs and cfg.loss.lambda_t > 0:
            # Captions and negatives written pairwise (same length) keep the pair; else draw one.
            neg_texts.append(negs[j] if len(negs) == len(caps) else negs[int(choices[k, 1] * len(negs))])
            has_neg.append(True)
        else:
            has_neg.append(False)
        if pool.features is not None:
            feats.append(pool.features[it.index])
        else:
            wave_rows.append(pool.waves[it.index])
        if cfg.data.use_negative_audio and pool.negative_features is not None and pool.negative_audio_paths[it.index]:
            neg_rows.append(len(items) + len(neg_feats))
            neg_feats.append(pool.negative_features[it.index])
        else:
            neg_rows.append(-1)
    if wave_rows and feats:
        raise UserError("mixing clips that need random crops with clips that do not is not supported; use clips of one length")
    if wave_rows:
        gen = torch.Generator().manual_seed(_seed_for(cfg.seed, 4, micro, rank))
        x = frontend(wave_rows, generator=gen).float().cpu()
    else:
        x = torch.stack(feats)
    if neg_feats:
        x = torch.cat([x, torch.stack(neg_feats)])
    return _Batch(x, pos_texts + neg_texts, torch.tensor(has_neg, dtype=torch.bool), torch.tensor(neg_rows))


def _checkpoints(out: Path) -> list[Path]:
    ck = out / "checkpoints"
    if not ck.is_dir():
        return []
    done = [p for p in ck.iterdir() if p.name.startswith(CKPT_PREFIX) and (p / "trainer_state.json").exists()]
    return sorted(done, key=lambda p: int(p.name[len(CKPT_PREFIX):]))


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines past ``step`` (written after the last checkpoint by a run that was killed)."""
    if not path.exists():
        return
    keep = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln).get("step", 0) <= step]
    atomic_write_text(path, "".join(ln + "\n" for ln in keep))


def train(
    cfg: TrainConfig,
    train_manifests: list[str],
    out_dir: str | os.PathLike,
    positive_manifests: list[str] | None = None,
    resume: bool = False,
    max_steps_this_run: int | None = None,
    quiet: bool = False,
    step_callback: Callable[[int, dict], None] | None = None,
    export: bool = True,
) -> dict:
    """Train (or fine-tune) a CLAP model; see the module docstring. Returns a summary dict.

    Args:
        cfg: the resolved configuration (a preset with command-line overrides).
        train_manifests: temporal sets (items with negative captions; L_c + L_t).
        out_dir: run folder: ``train_config.json``, ``metrics.jsonl``, ``checkpoints/step-N/``, ``model/``.
        positive_manifests: positive-only sets (L_c only), mixed in at ``cfg.data.temporal_fraction``.
        resume: continue from the newest complete checkpoint in ``out_dir`` (the step count continues).
        max_steps_this_run: stop (after a checkpoint) once this many optimizer steps ran in this call.
        step_callback: ``f(step, log_record)`` after each optimizer step (tests use it to simulate a kill).
        export: write the final model to ``out_dir/model`` (:func:`tclap.models.export.export_bundle`).
    """

    from tclap.losses import TClapLoss  # noqa: PLC0415
    from tclap.models import load_clap  # noqa: PLC0415

    cfg.validate()
    if cfg.mixed_precision == "auto":  # the run records (and a resume compares) the precision it really used
        cfg = dataclasses.replace(cfg, mixed_precision=resolve_mixed_precision("auto"))
    if not train_manifests and not positive_manifests:
        raise UserError("no training data: pass --train MANIFEST (and optionally --positive MANIFEST)")
    if cfg.init is None:
        raise UserError(f"preset {cfg.preset!r} needs --init NAME|DIR (e.g. a local copy of laion/clap-htsat-unfused)")
    if cfg.mixed_precision == "fp16" and not torch.cuda.is_available():
        raise UserError("--mixed-precision fp16 needs a CUDA device; use bf16 (CPU autocast) or no")
    out = Path(out_dir)
    existing = _checkpoints(out)
    if existing and not resume:
        raise UserError(f"{out} already holds checkpoints; pass --resume to continue it or choose a new --out")

    accelerator = make_accelerator(mixed_precision=cfg.mixed_precision)
    world, rank = accelerator.num_processes, accelerator.process_index
    if cfg.data.batch_size % world:
        raise UserError(f"--batch-size {cfg.data.batch_size} must be divisible by the number of processes ({world})")
    main = accelerator.is_main_process
    torch.manual_seed(cfg.seed)  # model init (random-init presets) is the same on every process

    bundle = load_clap(cfg.init, device="cpu")
    data = build_pools(train_manifests, positive_manifests or [], require_negatives=cfg.loss.lambda_t > 0,
                       use_negative_audio=cfg.data.use_negative_audio, unpaired=cfg.data.unpaired)
    if cfg.loss.lambda_t > 0 and len(data.temporal) == 0:
        raise UserError("λ > 0 but no --train item has a negative caption; add negatives (`tclap negatives`) or pass --lambda-t 0")
    cache = out / "feature_cache"
    # The main process fills the cache first so the others read it instead of computing it again.
    with accelerator.main_process_first():
        prepare_features(data, bundle.frontend, cache, quiet=quiet or not main)

    model = bundle.model
    if cfg.dropout is not None:
        _set_dropout(model, cfg.dropout)
    if str(cfg.init) == "tiny":  # random init: BN statistics from the data (see module docstring)
        _set_mel_batchnorm(model, mel_statistics(data))
    if cfg.freeze_audio:
        for mod in (model.audio_model, model.audio_projection):
            mod.requires_grad_(False)
    if cfg.freeze_text:
        for mod in (model.text_model, model.text_projection):
            mod.requires_grad_(False)
    _freeze_batchnorm(model)
    params = [p for p in model.parameters() if p.requires_grad]
    o = cfg.optim
    optimizer = torch.optim.AdamW(params, lr=o.lr, betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay)
    module = _TrainModule(bundle)
    module, optimizer = accelerator.prepare(module, optimizer)
    loss_fn = TClapLoss(lambda_t=cfg.loss.lambda_t, use_logit_scale=cfg.loss.temporal_scale)

    sampler = MixedBatchSampler(len(data.positive), len(data.temporal), cfg.data.batch_size,
                                cfg.data.temporal_fraction, cfg.seed)
    start = 0
    if existing:
        last = existing[-1]
        state = json.loads((last / "trainer_state.json").read_text())
        try:
            accelerator.load_state(str(last))
        except (RuntimeError, KeyError, ValueError) as exc:
            raise UserError(f"checkpoint {last} does not fit this model/optimizer ({str(exc).splitlines()[0][:120]}); "
                            "resume with the same --init/--preset, or choose a new --out") from None
        start = int(state["step"])
    if main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "train_config.json", json.dumps(
            {"config": cfg.to_dict(), "train": list(map(str, train_manifests)),
             "positive": list(map(str, positive_manifests or [])), "skipped": data.skipped,
             "moved_to_positive": data.moved_to_positive,
             "pools": {"positive": len(data.positive), "temporal": len(data.temporal)},
             "batch": {"temporal": sampler.k_temporal, "positive": sampler.k_positive}}, indent=2))
        _truncate_log(out / LOG_NAME, start)
        for reason, n in data.skipped.items():
            print(f"tclap train: skipped {n} item(s): {reason}")
        if data.moved_to_positive:
            print(f"tclap train: {data.moved_to_positive} --train item(s) without a negative caption go to the "
                  "positive-only pool (L_c only; --unpaired positive)")
    writer = None
    if main:
        try:
            from torch.utils.tensorboard import SummaryWriter  # noqa: PLC0415

            writer = SummaryWriter(str(out / "tensorboard"))
        except ImportError:  # tensorboard is an optional extra
            writer = None

    module.train()
    _freeze_batchnorm(accelerator.unwrap_model(module))
    end = cfg.steps if max_steps_this_run is None else min(cfg.steps, start + max_steps_this_run)
    bar = tqdm(total=cfg.steps, initial=start, desc="train", disable=quiet or not main, unit="step")
    last_rec: dict = {}
    step = start
    for step in range(start, end):
        t0 = time.perf_counter()
        lr = lr_at(step, cfg)
        for g in optimizer.param_groups:
            g["lr"] = lr
        sums = {"loss": 0.0, "contrastive_loss": 0.0, "temporal_loss": 0.0}
        for a in range(o.grad_accum):
            micro = step * o.grad_accum + a
            items = MixedBatchSampler.shard(sampler.batch(micro), rank, world)
            batch = _make_batch(data, items, cfg, micro, bundle.frontend, rank)
            torch.manual_seed(_seed_for(cfg.seed, 5, micro, rank))  # dropout masks of this micro-step
            tok = bundle.tokenize(batch.texts)
            sync = a == o.grad_accum - 1
            ctx = accelerator.no_sync(module) if not sync and world > 1 else _null()
            with ctx:
                dev = accelerator.device  # the bundle tokenizes on the CPU; the model may sit on a GPU
                audio, text, scale_a, scale_t = module(batch.features.to(dev), tok["input_ids"].to(dev),
                                                       tok["attention_mask"].to(dev))
                b = len(items)
                a_pos, t_pos = audio[:b], text[:b]
                has_neg = batch.has_neg.to(a_pos.device)
                # Negatives come after the positives in the one text forward; put them on their items' rows.
                t_neg = t_pos.new_zeros(t_pos.shape).index_put((has_neg.nonzero().squeeze(1),), text[b:])
                terms = loss_fn(a_pos, t_pos, scale_a, scale_t, negative_text_features=t_neg, has_negative=has_neg)
                loss = terms["loss"]
                if cfg.data.use_negative_audio and (batch.neg_audio_rows >= 0).any():
                    rows = batch.neg_audio_rows.to(audio.device)
                    sel = (rows >= 0).nonzero().squeeze(1)
                    a_neg = audio[rows[sel]]
                    s = scale_a.exp()
                    # A2T hard negative: the caption should prefer its audio over the order-swapped audio.
                    l_ta = F.softplus(s * ((a_neg * t_pos[sel]).sum(-1) - (a_pos[sel] * t_pos[sel]).sum(-1))).mean()
                    loss = loss + cfg.loss.lambda_t * l_ta
                accelerator.backward(loss / o.grad_accum)
            for k in sums:
                v = loss if k == "loss" else terms[k]
                sums[k] += float(v.detach()) / o.grad_accum
        if o.max_grad_norm:
            accelerator.clip_grad_norm_(params, o.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():  # as open_clip/LAION: keep the temperatures within [1, 100]
            m = accelerator.unwrap_model(module).model
            m.logit_scale_a.clamp_(0, math.log(100))
            m.logit_scale_t.clamp_(0, math.log(100))
        vals = accelerator.reduce(torch.tensor([sums["loss"], sums["contrastive_loss"], sums["temporal_loss"]],
                                               dtype=torch.float64, device=accelerator.device), reduction="mean")
        rec = {"step": step + 1, "loss": float(vals[0]), "contrastive_loss": float(vals[1]),
               "temporal_loss": float(vals[2]), "lr": lr, "logit_scale": float(scale_a.detach().exp()),
               "samples_per_s": cfg.data.batch_size * o.grad_accum / (time.perf_counter() - t0), "world": world}
        last_rec = rec
        if main:
            if step == start or (step + 1) % cfg.log_every == 0 or step + 1 == end:
                with open(out / LOG_NAME, "a") as f:
                    f.write(json.dumps(rec) + "\n")
                if writer is not None:
                    for k in ("loss", "contrastive_loss", "temporal_loss", "lr", "logit_scale"):
                        writer.add_scalar(f"train/{k}", rec[k], step + 1)
            bar.update(1)
            bar.set_postfix(loss=f"{rec['loss']:.3f}", lt=f"{rec['temporal_loss']:.3f}")
        if step_callback is not None:
            step_callback(step + 1, rec)
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == end:
            _save_checkpoint(accelerator, out, step + 1, cfg)
    bar.close()
    if writer is not None:
        writer.close()
    done = end == cfg.steps
    model_dir = None
    if done and export and main:
        model_dir = out / "model"
        accelerator.unwrap_model(module)._bundle[0].save_pretrained(
            model_dir, provenance={"trainer": "tclap train", "preset": cfg.preset, "steps": cfg.steps,
                                   "lambda_t": cfg.loss.lambda_t, "seed": cfg.seed, "init": str(cfg.init)})
    accelerator.wait_for_everyone()
    return {"step": end, "finished": done, "last": last_rec, "model_dir": str(model_dir) if model_dir else None,
            "skipped": data.skipped, "out": str(out)}


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _save_checkpoint(accelerator, out: Path, step: int, cfg: TrainConfig) -> None:
    """``save_state`` into ``checkpoints/.tmp-step-N`` then rename: a kill never leaves a half checkpoint."""
    ck = out / "checkpoints"
    final = ck / f"{CKPT_PREFIX}{step:08d}"
    tmp = ck / f".tmp-{CKPT_PREFIX}{step:08d}"
    if accelerator.is_main_process:
        ck.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp), safe_serialization=True)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        atomic_write_text(tmp / "trainer_state.json", json.dumps({"step": step, "seed": cfg.seed}))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        for old in _checkpoints(out)[:-cfg.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
