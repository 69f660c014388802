"""``audioldm-cond train``: train the VAE (``--stage vae``) or the latent-diffusion UNet (``--stage ldm``).

Examples::

    audioldm-cond train --stage vae --train mix/manifest.jsonl --out runs/vae --model tiny --steps 2000
    audioldm-cond train --stage ldm --train mix/manifest.jsonl --val val/manifest.jsonl \\
        --model runs/vae/final --clap tiny-tclap --cond-source text --out runs/ldm --steps 6000
    # interrupted? the same command with --resume continues from the last checkpoint
    # real scale: stream shards (or pipe: commands, bank: mix-ups) instead of caching every clip (docs/streaming.md)
    audioldm-cond train --stage ldm --train 'audiocaps/{000000..000099}.tar' --seconds 10.24 --workers 4 \\
        --model runs/vae/final --out runs/ldm --dry-run

``audioldm_cond.cli`` dispatches here (``add_arguments`` / ``run``); ``main(argv)`` runs it in-process.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from audioldm_cond.train.config import (
    COND_SOURCES, MIXED_PRECISION, STAGES, DataConfig, LdmStageConfig, OptimConfig, TrainConfig,
    ValidationConfig, VaeStageConfig, parse_cond_map, parse_unet_channels,
)
from basekit.errors import UserError, cli_entry


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stage", choices=STAGES, required=True, help="vae: the mel autoencoder; ldm: the UNet")
    p.add_argument("--train", action="append", required=True, metavar="SOURCE",
                   help="training clips: a manifest .jsonl (cached in memory), or streamed: shards "
                        "(data/{000000..000099}.tar, a glob, a folder, pipe:CMD) or bank:builtin|FOLDER|ESC50_CSV "
                        "(mix-ups made on the fly); repeat for several")
    p.add_argument("--val", default=None, help="validation manifest (losses, and prompts to generate and score)")
    p.add_argument("--out", required=True, help="run directory: checkpoints/, log.jsonl, final/")
    p.add_argument("--model", default="tiny", help="'tiny' (built from scratch) or a diffusers AudioLDM directory")
    p.add_argument("--clap", default=None, help="conditioning CLAP: tiny-tclap, tiny-baseline, a ClapModel dir, ...")
    p.add_argument("--cond-source", choices=COND_SOURCES, default="text",
                   help="train on CLAP text (default), audio (AudioLDM's choice) or a per-sample mix")
    p.add_argument("--cfg-dropout", type=float, default=0.1, help="classifier-free guidance dropout (training only)")
    p.add_argument("--scaling-factor", default="estimate",
                   help="latent scale: estimate (1/std of latents), keep (the VAE's), or a number")
    p.add_argument("--snr-gamma", type=float, default=None, help="Min-SNR loss weighting (e.g. 5)")
    p.add_argument("--prediction-type", default=None, choices=("epsilon", "v_prediction"),
                   help="stage ldm: the UNet's target (default: the model scheduler's; saved with the model)")
    p.add_argument("--kl-weight", type=float, default=1e-6, help="stage vae: weight of the KL term")
    p.add_argument("--vae-crop-frames", type=int, default=None,
                   help="stage vae: train on random windows of this many mel frames (cheaper on CPU)")
    p.add_argument("--unet-channels", default=None, help="stage ldm: train a fresh UNet of these block widths "
                   "(comma-separated, e.g. 32,64,128) instead of the model's own")
    p.add_argument("--unet-layers", type=int, default=1, help="res blocks per UNet level with --unet-channels")
    p.add_argument("--unet-position-channels", type=int, default=0,
                   help="with --unet-channels: fixed time-position input channels (0: none, as AudioLDM; 4 helps a "
                        "small UNet place events in order)")
    p.add_argument("--unet-cond-map", default=None, metavar="MxS",
                   help="with --unet-channels: M input channels of a learned layout of the condition over S stretches "
                        "of the clip, e.g. 8x8 (default: none, as AudioLDM)")
    p.add_argument("--seconds", type=float, default=None, help="clip length (default: the first clip's)")
    p.add_argument("--steps", type=int, default=1000, help="optimiser steps")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--warmup-steps", type=int, default=0)
    p.add_argument("--decay-steps", type=int, default=0,
                   help="the last N steps lower the learning rate linearly to 0 (default 0: constant after warm-up)")
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--ema-decay", type=float, default=0.999, help="0 turns EMA off")
    p.add_argument("--mixed-precision", choices=MIXED_PRECISION, default="no")
    p.add_argument("--val-every", type=int, default=0, help="validate every N steps (0: at the end only)")
    p.add_argument("--val-prompts", type=int, default=16, help="validation prompts to generate and score")
    p.add_argument("--val-guidance", default="1,2.5,4", help="guidance scales swept at validation (comma list)")
    p.add_argument("--val-steps", type=int, default=20, help="sampler steps at validation")
    p.add_argument("--val-backend", default="mel-stats", help="eval_gen embedding backend for FAD/KAD")
    p.add_argument("--val-clap", default="tiny-tclap", help="CLAP that judges CLAP score / CLAP order accuracy")
    p.add_argument("--no-val-generate", action="store_true", help="validation losses only (no generation)")
    p.add_argument("--ckpt-every", type=int, default=500, help="checkpoint every N steps (0: none)")
    p.add_argument("--ckpt-keep", type=int, default=2, help="checkpoints kept")
    p.add_argument("--cache-dir", default=None, help="cache of mels/latents/embeddings (default: OUT/cache)")
    p.add_argument("--tiny-config", default=None, help="JSON of keyword arguments for the tiny model builder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--dry-run", action="store_true",
                   help="print the data plan (sources and shares, shards per rank and worker, samples per epoch, steps) "
                        "and exit without building the models")
    st = p.add_argument_group("streamed sources (shards, pipe:, bank:, several sources; as `tclap train`)")
    st.add_argument("--workers", type=int, default=2, help="DataLoader workers (readers) per process (0: in the process)")
    st.add_argument("--resampled", action="store_true", help="draw shards with replacement, endlessly (no epochs)")
    st.add_argument("--shuffle-buffer", type=int, default=128, help="items shuffled within a shard per reader (0: none)")
    st.add_argument("--data-timeout", type=float, default=600.0, help="seconds without data from a worker before stopping")
    st.add_argument("--log-sample-ids", action="store_true", help="write each micro step's item ids to OUT/sample_ids.rank<R>.jsonl")
    st.add_argument("--shard-index", action="append", default=[], metavar="FILE",
                    help="an index file beside remote tars, counting pipe:/remote shards by tar name; repeatable")
    from tclap.commands.mixup import _events, _folds  # noqa: PLC0415

    b = p.add_argument_group("bank: sources (mix-ups made on the fly from the bank's training split; length --seconds)")
    b.add_argument("--events", type=_events, default=(2, 3), help="events per ordered mix-up: 2, 3 or 2-3 (default)")
    b.add_argument("--overlap-prob", type=float, default=0.2, help="share of overlap mix-ups (default 0.2)")
    b.add_argument("--test-folds", type=_folds, default=(5,), help="ESC-50 folds held out of the training mixes (default 5)")
    b.add_argument("--phrases", default=None, help="label -> caption phrase file (JSON object or label<TAB>phrase lines)")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The :class:`TrainConfig` that the parsed arguments describe."""
    if (args.unet_position_channels or args.unet_cond_map not in (None, "0")) and not args.unet_channels:
        raise UserError("--unet-position-channels and --unet-cond-map build a fresh UNet: give its widths with "
                        "--unet-channels too, e.g. --unet-channels 32,64,128")
    try:
        scales = tuple(float(x) for x in str(args.val_guidance).split(",") if x.strip())
    except ValueError:
        raise UserError(f"--val-guidance {args.val_guidance!r}: give comma-separated numbers, e.g. 1,2.5,4") from None
    tiny = {}
    if args.tiny_config:
        try:
            tiny = json.loads(args.tiny_config)
        except json.JSONDecodeError as exc:
            raise UserError(f"--tiny-config is not valid JSON ({exc.msg}); e.g. '{{\"latent_channels\": 8}}'") from None
    return TrainConfig(
        stage=args.stage, out_dir=args.out, model=args.model, clap=args.clap,
        data=DataConfig(train_manifest=args.train[0], val_manifest=args.val, seconds=args.seconds,
                        cache_dir=args.cache_dir, train_sources=tuple(args.train) if len(args.train) > 1 else (),
                        workers=args.workers, resampled=args.resampled, shuffle_buffer=args.shuffle_buffer,
                        data_timeout=args.data_timeout, log_sample_ids=args.log_sample_ids,
                        shard_index=tuple(args.shard_index), bank_events=tuple(args.events),
                        bank_overlap_prob=args.overlap_prob, bank_test_folds=tuple(args.test_folds),
                        bank_phrases=args.phrases),
        optim=OptimConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, grad_accum=args.grad_accum,
                          warmup_steps=args.warmup_steps, decay_steps=args.decay_steps),
        vae=VaeStageConfig(kl_weight=args.kl_weight, crop_frames=args.vae_crop_frames),
        ldm=LdmStageConfig(cond_source=args.cond_source, cfg_dropout=args.cfg_dropout,
                           scaling_factor=str(args.scaling_factor), snr_gamma=args.snr_gamma,
                           prediction_type=args.prediction_type,
                           unet=parse_unet_channels(args.unet_channels, args.unet_layers, args.unet_position_channels,
                                                    *parse_cond_map(args.unet_cond_map))
                           if args.unet_channels else None),
        val=ValidationConfig(every=args.val_every, num_prompts=args.val_prompts, guidance_scales=scales,
                             num_inference_steps=args.val_steps, backend=args.val_backend, clap_model=args.val_clap,
                             generate=not args.no_val_generate),
        ema_decay=args.ema_decay, mixed_precision=args.mixed_precision, ckpt_every=args.ckpt_every,
        ckpt_keep=args.ckpt_keep, seed=args.seed, resume=args.resume, quiet=args.quiet, tiny_kwargs=tiny,
    )


def run(args: argparse.Namespace) -> int:
    from audioldm_cond.train.trainer import Trainer  # noqa: PLC0415 (heavy: diffusers, accelerate; parsing stays light)

    cfg = config_from_args(args)
    if args.dry_run:
        return _dry_run(cfg)
    summary = Trainer(cfg).fit()
    print(json.dumps({"step": summary["step"], "final": summary["final"],
                      "scaling_factor": summary["scaling_factor"]}))
    if summary.get("skipped"):
        print("audioldm-cond train: items skipped in all (this process): "
              + "; ".join(f"{n} {reason}" for reason, n in summary["skipped"].items()), file=sys.stderr)
    return 0


def _dry_run(cfg: TrainConfig) -> int:
    """Print the data plan for this launch (``WORLD_SIZE`` processes, as accelerate / torchrun set it) and exit."""
    from audioldm_cond.train.stream import plan_lines, world_size  # noqa: PLC0415

    cfg.validate()
    for line in plan_lines(cfg, world_size()):
        print(line)
    o = cfg.optim
    print(f"steps: {o.steps} optimizer step(s) x {o.grad_accum} micro-step(s) x {o.batch_size} samples = "
          f"{o.steps * o.grad_accum * o.batch_size} samples; nothing was built or written (--dry-run)")
    return 0


@cli_entry(prog="audioldm-cond")
def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="audioldm-cond train", description=__doc__.splitlines()[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
