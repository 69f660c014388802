"""The T-CLAP training loop on Hugging Face accelerate (1 CPU, N GPUs or several machines, same code).

One optimizer step = ``grad_accum`` micro-batches; micro-batch ``m`` of the whole run is the global batch
``sampler.batch(m)`` (a pure function of ``(seed, m)``), cut into one contiguous share per process, or, when a
source is streamed (shards, ``bank:``), the rows the plan of :mod:`tclap.data.stream` gives each process's
readers (a pure function of ``(seed, readers, m)`` and the data). Each share is embedded with one audio
forward and ONE text forward over ``[positive captions; negative captions]``; the loss is ``L_c + λ·L_t`` from
:class:`tclap.losses.TClapLoss` (L_c over the batch of all processes, gathered with gradients), plus
:class:`tclap.losses.AudioNegativeLoss` with ``--negative-audio``.

Determinism and resume: captions, batches and the dropout seed of every micro-step derive from ``(seed, step)``
(and, streaming, the reader), never from a running RNG, so a run resumed from a checkpoint
(``accelerator.save_state`` through :mod:`basekit.checkpoint`) continues exactly as an uninterrupted one would.

BatchNorm: HTSAT normalises its mel input with a BatchNorm. Batch statistics would make a sample's
embedding depend on the process's share of the batch (so N processes would not match 1), and SyncBatchNorm
is CUDA-only. We therefore keep every BatchNorm in eval mode (running statistics, as is usual when
fine-tuning); when training from random init the statistics are first set from the training features (all of
them in memory; the first global batch when streaming).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from basekit.atomic import atomic_write_text
from basekit.checkpoint import list_checkpoints, read_state, save_checkpoint
from tclap.distributed import make_accelerator, resolve_mixed_precision
from basekit.errors import UserError
from tclap.train.config import TrainConfig
from tclap.train.data import Batch, MemoryData, StreamData, build_pools, log_ids, prepare_features
from tclap.train.sampler import seed_for
from tclap.data.stream import CountCache, build_plan
from tclap.data.stream.sources import is_streamed
from tclap.losses import AudioNegativeLoss, TClapLoss

LOG_NAME = "metrics.jsonl"
LOG_TERMS = ("loss", "contrastive_loss", "temporal_loss")  # averaged over micro-batches and processes


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


def _checkpoints(out: Path) -> list[Path]:
    """The run's complete checkpoints, oldest first (:func:`basekit.checkpoint.list_checkpoints`)."""
    return list_checkpoints(Path(out) / "checkpoints")


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines past ``step`` (written after the last checkpoint by a run that was killed)."""
    if not path.exists():
        return
    keep = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln).get("step", 0) <= step]
    atomic_write_text(path, "".join(ln + "\n" for ln in keep))


@dataclass
class _Run:
    """What every step needs: the prepared model and optimizer, the losses, the process layout."""

    cfg: TrainConfig
    accelerator: object
    bundle: object
    module: nn.Module
    optimizer: torch.optim.Optimizer
    params: list
    loss_fn: nn.Module
    audio_negative: nn.Module | None
    out: Path
    writer: object | None = None

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process


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
        train_manifests: temporal sources (items with negative captions; L_c + L_t): manifests, or any SOURCE of
            :mod:`tclap.data.stream` (shards, ``pipe:`` commands, ``bank:SPEC``), which makes the run stream.
        out_dir: run folder: ``train_config.json``, ``metrics.jsonl``, ``checkpoints/step-N/``, ``model/``.
        positive_manifests: positive-only sources (L_c only), mixed in at ``cfg.data.temporal_fraction``.
        resume: continue from the newest complete checkpoint in ``out_dir`` (the step count continues).
        max_steps_this_run: stop (after a checkpoint) once this many optimizer steps ran in this call.
        step_callback: ``f(step, log_record)`` after each optimizer step (tests use it to simulate a kill).
        export: write the final model to ``out_dir/model`` (:func:`tclap.models.export.export_bundle`).
    """
    from tclap.models import load_clap  # noqa: PLC0415 (tests patch tclap.models.load_clap)

    cfg = _resolved(cfg, train_manifests, positive_manifests)
    out = Path(out_dir)
    existing = _checkpoints(out)
    if existing and not resume:
        raise UserError(f"{out} already holds checkpoints; pass --resume to continue it or choose a new --out")
    accelerator = make_accelerator(mixed_precision=cfg.mixed_precision)
    if cfg.data.batch_size % accelerator.num_processes:
        raise UserError(f"--batch-size {cfg.data.batch_size} must be divisible by the number of processes "
                        f"({accelerator.num_processes})")
    torch.manual_seed(cfg.seed)  # model init (random-init presets) is the same on every process
    bundle = load_clap(cfg.init, device="cpu")
    data = _open_data(cfg, train_manifests, positive_manifests or [], bundle, accelerator, out, quiet)
    run = _prepare(cfg, bundle, data, accelerator, out)
    start = _resume_step(run, existing[-1], data) if existing else 0
    _write_run_config(run, data, train_manifests, positive_manifests or [], start, quiet)
    end = cfg.steps if max_steps_this_run is None else min(cfg.steps, start + max_steps_this_run)
    batches = data.batches(start * cfg.optim.grad_accum)
    if cfg.data.log_sample_ids:
        batches = log_ids(batches, out / f"sample_ids.rank{accelerator.process_index}.jsonl", start * cfg.optim.grad_accum)
    bar = tqdm(total=cfg.steps, initial=start, desc="train", disable=quiet or not run.main, unit="step")
    last_rec: dict = {}
    try:
        for step in range(start, end):
            last_rec = _train_step(run, batches, step)
            _log_step(run, last_rec, log_now=step == start or (step + 1) % cfg.log_every == 0 or step + 1 == end)
            bar.update(1)
            bar.set_postfix(loss=f"{last_rec['loss']:.3f}", lt=f"{last_rec['temporal_loss']:.3f}")
            if step_callback is not None:
                step_callback(step + 1, last_rec)
            if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == end:
                _save_checkpoint(accelerator, out, step + 1, cfg, data.state())
    except RuntimeError as exc:  # a data worker that died while the step ran (DataLoader's SIGCHLD handler)
        line = data.explain(exc)
        if line is None:
            raise
        raise UserError(line) from None
    finally:
        bar.close()
        data.close()
        if run.writer is not None:
            run.writer.close()
    skipped = data.final_skipped()  # all processes: streamed runs sum what their readers skipped
    if run.main and isinstance(data, StreamData):
        _update_run_config(out, skipped=skipped)
    model_dir = _export(run, out) if end == cfg.steps and export and run.main else None
    accelerator.wait_for_everyone()
    return {"step": end, "finished": end == cfg.steps, "last": last_rec, "model_dir": str(model_dir) if model_dir else None,
            "skipped": skipped, "streamed": isinstance(data, StreamData), "out": str(out)}


def _train_step(run: _Run, batches, step: int) -> dict:
    """One optimizer step: ``grad_accum`` micro-batches forward and backward, then AdamW. Returns the log record."""
    cfg, o = run.cfg, run.cfg.optim
    t0 = time.perf_counter()
    lr = lr_at(step, cfg)
    for g in run.optimizer.param_groups:
        g["lr"] = lr
    sums = dict.fromkeys(LOG_TERMS, 0.0)
    wait = 0.0
    for a in range(o.grad_accum):
        micro = step * o.grad_accum + a
        t_wait = time.perf_counter()
        batch = next(batches)
        wait += time.perf_counter() - t_wait
        torch.manual_seed(seed_for(cfg.seed, 5, micro, run.accelerator.process_index))  # dropout masks of this micro-step
        last = a == o.grad_accum - 1
        with nullcontext() if last or run.accelerator.num_processes == 1 else run.accelerator.no_sync(run.module):
            terms = _loss_terms(run, batch)
            run.accelerator.backward(terms["loss"] / o.grad_accum)
        for k in sums:
            sums[k] += float(terms[k].detach()) / o.grad_accum
    if o.max_grad_norm:
        run.accelerator.clip_grad_norm_(run.params, o.max_grad_norm)
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    with torch.no_grad():  # as open_clip/LAION: keep the temperatures within [1, 100]
        m = run.accelerator.unwrap_model(run.module).model
        m.logit_scale_a.clamp_(0, math.log(100))
        m.logit_scale_t.clamp_(0, math.log(100))
    vals = run.accelerator.reduce(torch.tensor([sums[k] for k in LOG_TERMS], dtype=torch.float64,
                                               device=run.accelerator.device), reduction="mean")
    dt = time.perf_counter() - t0
    return {"step": step + 1, **{k: float(v) for k, v in zip(LOG_TERMS, vals)}, "lr": lr,
            "logit_scale": float(terms["logit_scale_a"].detach().exp()),
            "samples_per_s": cfg.data.batch_size * o.grad_accum / dt, "data_wait_s": wait, "step_s": dt,
            "world": run.accelerator.num_processes}


def _loss_terms(run: _Run, batch: Batch) -> dict[str, torch.Tensor]:
    """Embed one micro-batch (one audio forward, ONE text forward over positives + negatives) and weigh the
    loss terms of :mod:`tclap.losses`: ``loss = L_c + λ·L_t (+ λ·audio negative)``."""
    tok = run.bundle.tokenize(batch.texts)
    dev = run.accelerator.device  # the bundle tokenizes on the CPU; the model may sit on a GPU
    audio, text, scale_a, scale_t = run.module(batch.features.to(dev), tok["input_ids"].to(dev),
                                               tok["attention_mask"].to(dev))
    b = batch.size
    a_pos, t_pos = audio[:b], text[:b]
    has_neg = batch.has_neg.to(a_pos.device)
    # Negatives come after the positives in the one text forward; put them on their items' rows.
    t_neg = t_pos.new_zeros(t_pos.shape).index_put((has_neg.nonzero().squeeze(1),), text[b:])
    terms = run.loss_fn(a_pos, t_pos, scale_a, scale_t, negative_text_features=t_neg, has_negative=has_neg)
    if run.audio_negative is not None and (batch.neg_audio_rows >= 0).any():
        rows = batch.neg_audio_rows.to(audio.device)
        sel = (rows >= 0).nonzero().squeeze(1)
        neg = run.audio_negative(a_pos[sel], t_pos[sel], audio[rows[sel]], scale_a)
        terms["loss"] = terms["loss"] + run.cfg.loss.lambda_t * neg["audio_negative_loss"]
    terms["logit_scale_a"] = scale_a
    return terms


def _resolved(cfg: TrainConfig, train_sources, positive_sources) -> TrainConfig:
    """The validated config, ``mixed_precision="auto"`` resolved (the run records, and a resume compares, the
    precision it really used); bad requests are one-line errors before anything is loaded."""
    cfg.validate()
    if cfg.mixed_precision == "auto":
        cfg = dataclasses.replace(cfg, mixed_precision=resolve_mixed_precision("auto"))
    if not train_sources and not positive_sources:
        raise UserError("no training data: pass --train MANIFEST (and optionally --positive MANIFEST)")
    if cfg.init is None:
        raise UserError(f"preset {cfg.preset!r} needs --init NAME|DIR (e.g. a local copy of laion/clap-htsat-unfused)")
    if cfg.mixed_precision == "fp16" and not torch.cuda.is_available():
        raise UserError("--mixed-precision fp16 needs a CUDA device; use bf16 (CPU autocast) or no")
    return cfg


def _open_data(cfg: TrainConfig, train_sources, positive_sources, bundle, accelerator, out: Path, quiet: bool):
    """The batch source of this process: manifests read into memory with cached features (:class:`MemoryData`),
    or, when any source is shards or a bank, the streaming plan's readers (:class:`StreamData`)."""

    if any(is_streamed(t) for t in [*train_sources, *positive_sources]):
        return _open_stream(cfg, train_sources, positive_sources, bundle, accelerator, out, quiet)
    data = build_pools(train_sources, positive_sources, require_negatives=cfg.loss.lambda_t > 0,
                       use_negative_audio=cfg.data.use_negative_audio, unpaired=cfg.data.unpaired)
    if cfg.loss.lambda_t > 0 and len(data.temporal) == 0:
        raise UserError("λ > 0 but no --train item has a negative caption; add negatives (`tclap negatives`) or pass --lambda-t 0")
    # The main process fills the cache first so the others read it instead of computing it again.
    with accelerator.main_process_first():
        prepare_features(data, bundle.frontend, out / "feature_cache", quiet=quiet or not accelerator.is_main_process)
    return MemoryData(data, cfg, bundle.frontend, accelerator.process_index, accelerator.num_processes)


def _open_stream(cfg: TrainConfig, train_sources, positive_sources, bundle, accelerator, out: Path, quiet: bool):

    main = accelerator.is_main_process
    # The main process counts shards without an index first and keeps the counts; the others read them.
    with accelerator.main_process_first():
        cache = CountCache(out / "stream_counts.json")
        fe = bundle.frontend
        plan = build_plan(cfg, list(train_sources), list(positive_sources), accelerator.num_processes,
                          int(fe.sample_rate), float(fe.max_length_s), cache, quiet=quiet or not main)
        if main:
            cache.save()
    return StreamData(plan, cfg, fe, accelerator.process_index, lambda t: accelerator.reduce(t, reduction="sum"))


def _prepare(cfg: TrainConfig, bundle, data, accelerator, out: Path) -> _Run:
    """Dropout, BatchNorm statistics, frozen towers, AdamW and the losses; the model prepared by accelerate."""

    model = bundle.model
    if cfg.dropout is not None:
        _set_dropout(model, cfg.dropout)
    if str(cfg.init) == "tiny":  # random init: BN statistics from the data (see module docstring)
        _set_mel_batchnorm(model, data.mel_statistics())
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
    module, optimizer = accelerator.prepare(_TrainModule(bundle), optimizer)
    module.train()
    _freeze_batchnorm(accelerator.unwrap_model(module))
    return _Run(cfg, accelerator, bundle, module, optimizer, params,
                loss_fn=TClapLoss(lambda_t=cfg.loss.lambda_t, use_logit_scale=cfg.loss.temporal_scale),
                audio_negative=AudioNegativeLoss() if cfg.data.use_negative_audio else None, out=out,
                writer=_tensorboard(out) if accelerator.is_main_process else None)


def _resume_step(run: _Run, last: Path, data) -> int:
    """Load the newest checkpoint into the prepared model and optimizer; the step it was saved at."""
    state = read_state(last)
    for key, now in data.state().items():  # a streamed run's items depend on its number of readers
        if key in state and state[key] != now:
            raise UserError(f"checkpoint {last} was written with {key} = {state[key]} (processes x --workers), this run has "
                            f"{now}; resume with the same layout, or the resumed run would read other items")
    try:
        run.accelerator.load_state(str(last))
    except (RuntimeError, KeyError, ValueError) as exc:
        raise UserError(f"checkpoint {last} does not fit this model/optimizer ({str(exc).splitlines()[0][:120]}); "
                        "resume with the same --init/--preset, or choose a new --out") from None
    return int(state["step"])


def _write_run_config(run: _Run, data, train_sources, positive_sources, start: int, quiet: bool) -> None:
    """``train_config.json`` (config, sources, what the data held), the log cut back to ``start``, the data report."""
    if not run.main:
        return
    run.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run.out / "train_config.json", json.dumps(
        {"config": run.cfg.to_dict(), "train": list(map(str, train_sources)),
         "positive": list(map(str, positive_sources)), **data.describe()}, indent=2))
    _truncate_log(run.out / LOG_NAME, start)
    for line in data.report():
        print(line)


def _update_run_config(out: Path, **fields) -> None:
    """Replace top-level fields of ``train_config.json`` (the skip counts a streamed run knows at its end)."""
    path = out / "train_config.json"
    atomic_write_text(path, json.dumps({**json.loads(path.read_text()), **fields}, indent=2))


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: PLC0415 (torch is heavy; loaded only when this path runs)

        return SummaryWriter(str(out / "tensorboard"))
    except ImportError:  # tensorboard is an optional extra
        return None


def _log_step(run: _Run, rec: dict, log_now: bool) -> None:
    """Append ``rec`` to ``metrics.jsonl`` (and TensorBoard) on the main process when ``log_now``."""
    if not (run.main and log_now):
        return
    with open(run.out / LOG_NAME, "a") as f:
        f.write(json.dumps(rec) + "\n")
    if run.writer is not None:
        for k in ("loss", "contrastive_loss", "temporal_loss", "lr", "logit_scale"):
            run.writer.add_scalar(f"train/{k}", rec[k], rec["step"])


def _export(run: _Run, out: Path) -> Path:
    cfg = run.cfg
    model_dir = out / "model"
    run.accelerator.unwrap_model(run.module)._bundle[0].save_pretrained(
        model_dir, provenance={"trainer": "tclap train", "preset": cfg.preset, "steps": cfg.steps,
                               "lambda_t": cfg.loss.lambda_t, "seed": cfg.seed, "init": str(cfg.init)})
    return model_dir


def _save_checkpoint(accelerator, out: Path, step: int, cfg: TrainConfig, data_state: dict | None = None) -> None:
    """``accelerator.save_state`` as checkpoint ``step`` of the run (:func:`basekit.checkpoint.save_checkpoint`:
    built under a hidden name, renamed when complete, so a kill never leaves a half checkpoint)."""
    save_checkpoint(out / "checkpoints", step, lambda d: accelerator.save_state(str(d), safe_serialization=True),
                    state={"seed": cfg.seed, **(data_state or {})}, keep=cfg.keep_checkpoints,
                    is_main=accelerator.is_main_process,
                    barrier=accelerator.wait_for_everyone)
