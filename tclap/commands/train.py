"""``tclap train``: train or fine-tune a CLAP model with L_c + λ·L_t (Hugging Face accelerate).

Runs as one process, or as several with ``accelerate launch --num_processes N -m tclap.cli train ...``.
A SOURCE is a manifest (held in memory), WebDataset shards (a path, glob, brace pattern, folder or ``pipe:``
command) or ``bank:builtin|FOLDER|ESC50_CSV`` (mix-ups made on the fly); any non-manifest source makes the run
stream (docs/streaming.md). ``--dry-run`` prints the data plan and exits without building the model.
"""

from __future__ import annotations

import argparse

from basekit.errors import UserError
from tclap.commands.mixup import _events, _folds
from tclap.train.config import parse_mix_ratio, preset
from tclap.train.data import plan_lines
from tclap.train.trainer import train


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", choices=("tiny", "paper"), default="tiny", help="starting configuration (default: tiny)")
    p.add_argument("--train", action="append", default=[], metavar="SOURCE",
                   help="temporal set (items with negative captions): a manifest .jsonl, shards (data/{000000..000099}.tar, "
                        "a glob, a folder, pipe:CMD) or bank:builtin|FOLDER|ESC50_CSV (mix-ups made on the fly); repeat "
                        "for several")
    p.add_argument("--positive", action="append", default=[], metavar="SOURCE",
                   help="positive-only set (L_c only), mixed into every batch; the same kinds of SOURCE; repeat for several")
    mix = p.add_mutually_exclusive_group()
    mix.add_argument("--temporal-fraction", type=float, help="share of temporal samples per batch (paper: 0.2)")
    mix.add_argument("--mix-ratio", help="temporal:positive parts per batch, e.g. 1:4 (the paper's) = fraction 0.2")
    p.add_argument("--lambda-t", type=float, help="weight λ of the temporal loss L_t (0 = contrastive only)")
    p.add_argument("--init", help="model to start from: a name (tiny, tiny-baseline, tiny-tclap), a directory or hub id")
    p.add_argument("--steps", type=int, help="optimizer steps in total")
    p.add_argument("--batch-size", type=int, help="global batch size (all processes together)")
    p.add_argument("--lr", type=float)
    p.add_argument("--warmup", type=int, help="linear warm-up steps")
    p.add_argument("--schedule", choices=("constant", "cosine"), help="learning rate after the warm-up")
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--grad-accum", type=int, help="micro-batches per optimizer step")
    p.add_argument("--mixed-precision", choices=("no", "fp16", "bf16", "auto"),
                   help="auto: bf16 on a GPU or CPU that runs it natively (AVX512-BF16 / AMX), else fp32")
    p.add_argument("--freeze-audio", action="store_true", help="keep the audio tower fixed")
    p.add_argument("--freeze-text", action="store_true", help="keep the text tower fixed")
    p.add_argument("--no-temporal-scale", action="store_true", help="L_t on raw cosines (the paper's plain dot products)")
    p.add_argument("--negative-audio", action="store_true",
                   help="also use each item's order-swapped audio as an audio-side hard negative")
    p.add_argument("--unpaired", choices=("skip", "positive"),
                   help="with λ > 0, --train items without a negative caption (overlapping events): skip them "
                        "(default, counted) or use them for L_c only as positive-only items")
    p.add_argument("--dropout", type=float, help="override every dropout probability of the model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-every", type=int, help="steps between checkpoints")
    p.add_argument("--log-every", type=int, help="steps between log lines (the first step is always logged)")
    p.add_argument("--out", required=True, help="run folder (checkpoints, metrics.jsonl, model/)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    p.add_argument("--max-steps-this-run", type=int, help="stop after this many steps (checkpointed); --resume continues")
    p.add_argument("--no-export", action="store_true", help="skip writing OUT/model at the end")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--dry-run", action="store_true",
                   help="print the data plan (sources and shares, shards per rank and worker, samples per epoch, steps) "
                        "and exit without building the model")
    st = p.add_argument_group("streamed sources (shards, pipe:, bank:)")
    st.add_argument("--workers", type=int, help="DataLoader workers (readers) per process (default 2; 0: read in the process)")
    st.add_argument("--resampled", action="store_true", help="draw shards with replacement, endlessly (no epochs)")
    st.add_argument("--shuffle-buffer", type=int, help="items shuffled within a shard per reader (default 128; 0: none)")
    st.add_argument("--data-timeout", type=float, help="seconds without data from a worker before stopping (default 600)")
    st.add_argument("--log-sample-ids", action="store_true", help="write each micro-step's item ids to OUT/sample_ids.rank<R>.jsonl")
    st.add_argument("--shard-index", action="append", default=[], metavar="FILE",
                    help="an index file (index.json / *.index.json beside the tars) counting pipe:/remote shards by tar "
                         "name, so they need not be read before the run; repeat for several")

    b = p.add_argument_group("bank: sources (mix-ups made on the fly from the bank's training split, as `tclap mixup`)")
    b.add_argument("--seconds", type=float, help="mix-up length in seconds (default: the model's clip length)")
    b.add_argument("--events", type=_events, help="events per ordered mix-up: 2, 3 or 2-3 (default)")
    b.add_argument("--overlap-prob", type=float, help="share of overlap mix-ups (no order to swap: L_c-only rows); default 0.2")
    b.add_argument("--test-folds", type=_folds, help="ESC-50 folds held out of the training mixes (default 5)")
    b.add_argument("--phrases", help="label -> caption phrase file (JSON object or label<TAB>phrase lines)")


def config_from_args(args: argparse.Namespace):
    """The preset with the command line's overrides applied."""

    cfg = preset(args.preset)
    cfg.seed = args.seed
    for name, target, attr in (
        ("init", cfg, "init"), ("steps", cfg, "steps"), ("batch_size", cfg.data, "batch_size"),
        ("lr", cfg.optim, "lr"), ("warmup", cfg.optim, "warmup_steps"), ("schedule", cfg.optim, "schedule"),
        ("weight_decay", cfg.optim, "weight_decay"), ("grad_accum", cfg.optim, "grad_accum"),
        ("mixed_precision", cfg, "mixed_precision"), ("lambda_t", cfg.loss, "lambda_t"),
        ("temporal_fraction", cfg.data, "temporal_fraction"), ("checkpoint_every", cfg, "checkpoint_every"),
        ("log_every", cfg, "log_every"), ("dropout", cfg, "dropout"), ("workers", cfg.data, "workers"),
        ("shuffle_buffer", cfg.data, "shuffle_buffer"), ("data_timeout", cfg.data, "data_timeout"),
        ("seconds", cfg.data, "bank_seconds"), ("events", cfg.data, "bank_events"),
        ("overlap_prob", cfg.data, "bank_overlap_prob"), ("test_folds", cfg.data, "bank_test_folds"),
        ("phrases", cfg.data, "bank_phrases"),
    ):
        v = getattr(args, name)
        if v is not None:
            setattr(target, attr, v)
    if args.mix_ratio:
        cfg.data.temporal_fraction = parse_mix_ratio(args.mix_ratio)
    cfg.freeze_audio, cfg.freeze_text = args.freeze_audio, args.freeze_text
    cfg.loss.temporal_scale = not args.no_temporal_scale
    cfg.data.use_negative_audio = args.negative_audio
    cfg.data.resampled, cfg.data.log_sample_ids = args.resampled, args.log_sample_ids
    cfg.data.shard_index = tuple(args.shard_index)
    if args.unpaired is not None:
        cfg.data.unpaired = args.unpaired
    if cfg.steps is not None and cfg.optim.warmup_steps > cfg.steps and args.warmup is None:
        cfg.optim.warmup_steps = max(0, cfg.steps // 10)  # short runs of a long preset: keep some warm-up
    return cfg


def run(args: argparse.Namespace) -> int:
    if not args.train and not args.positive:
        raise UserError("no training data: pass --train SOURCE (a manifest or shards `tclap mixup` wrote, or bank:builtin)")
    cfg = config_from_args(args)
    if args.dry_run:
        return _dry_run(cfg, args)

    summary = train(cfg, args.train, args.out, positive_manifests=args.positive, resume=args.resume,
                    max_steps_this_run=args.max_steps_this_run, quiet=args.quiet, export=not args.no_export)
    last = summary["last"]
    state = "finished" if summary["finished"] else "stopped (resume with --resume)"
    if last:
        print(f"tclap train: {state} at step {summary['step']}/{cfg.steps}: loss {last['loss']:.4f} "
              f"(L_c {last['contrastive_loss']:.4f}, L_t {last['temporal_loss']:.4f})")
    if summary["model_dir"]:
        print(f"tclap train: model written to {summary['model_dir']}")
    if summary.get("streamed") and summary["skipped"]:
        print("tclap train: items skipped in all (this process): "
              + "; ".join(f"{n} {reason}" for reason, n in summary["skipped"].items()))
    return 0


def _dry_run(cfg, args: argparse.Namespace) -> int:
    """Print the data plan for this launch (``WORLD_SIZE`` processes, as accelerate / torchrun set it) and exit."""
    import os  # noqa: PLC0415


    cfg.validate()
    if cfg.init is None:
        raise UserError(f"preset {cfg.preset!r} needs --init NAME|DIR (e.g. a local copy of laion/clap-htsat-unfused)")
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    for line in plan_lines(cfg, args.train, args.positive, world):
        print(line)
    o = cfg.optim
    print(f"steps: {cfg.steps} optimizer step(s) x {o.grad_accum} micro-step(s) x {cfg.data.batch_size} samples = "
          f"{cfg.steps * o.grad_accum * cfg.data.batch_size} samples; nothing was built or written (--dry-run)")
    return 0
