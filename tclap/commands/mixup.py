"""``tclap mixup``: build temporal mix-ups (clips, captions, negatives, negative audio) from a clip bank.

``--format manifest`` (the default) writes audio files and ``OUT/manifest.jsonl``; ``--format webdataset`` (alias
``--shards-webdataset``) writes WebDataset tars straight into ``OUT``, named per ``--shard i/n`` so that machines
building one set never collide, which ``tclap train --train 'OUT/*.tar'`` streams.
"""

from __future__ import annotations

import argparse

from basekit.errors import UserError
from tclap.data.banks import BUILTIN, bank_setting
from tclap.data.mixup import MixupConfig, build_mixups, parse_shard


def _events(text: str) -> tuple[int, int]:
    try:
        parts = [int(v) for v in text.split("-")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--events {text!r}: use 2, 3 or 2-3") from None
    if len(parts) == 1:
        return parts[0], parts[0]
    if len(parts) == 2:
        return parts[0], parts[1]
    raise argparse.ArgumentTypeError(f"--events {text!r}: use 2, 3 or 2-3")


def _folds(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--test-folds {text!r}: use comma-separated fold numbers, e.g. 5 or 4,5") from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bank", action="append", default=None, metavar="BANK",
                   help="builtin (default), a folder per class (BANK/<label>/*.wav), or an ESC-50 CSV; repeat it (or "
                        "join with +: builtin+DIR) to mix events of several banks, each keeping its own hold-out")
    p.add_argument("--n", type=int, required=True, help="number of clips in the set")
    p.add_argument("--seconds", type=float, default=10.0, help="clip length in seconds (default 10)")
    p.add_argument("--out", required=True, help="output folder (audio/, negative_audio/, manifest.jsonl; or the tars)")
    p.add_argument("--sr", type=int, default=16000, help="sample rate of the written audio (default 16000)")
    p.add_argument("--split", choices=["train", "heldout"], default="train",
                   help="which bank instances/folds to use; held-out ones never reach train mixes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--events", type=_events, default=(2, 3), help="events per ordered clip: 2, 3 or 2-3 (default)")
    p.add_argument("--overlap-prob", type=float, default=0.2, help="share of overlap clips (no negative); default 0.2")
    p.add_argument("--test-folds", type=_folds, default=(5,), help="ESC-50 folds held out of training (default 5)")
    p.add_argument("--phrases", default=None, help="label -> caption phrase file (JSON object or label<TAB>phrase lines)")
    p.add_argument("--shard", default=None, help="i/n: build only items k with k %% n == i (many machines, one set)")
    p.add_argument("--format", choices=("manifest", "webdataset"), default="manifest",
                   help="manifest: audio files + OUT/manifest.jsonl (default); webdataset: tar shards directly in OUT "
                        "(OUT/mixup-<i>of<n>-<j>.tar and an index per --shard i/n)")
    p.add_argument("--shards-webdataset", dest="format", action="store_const", const="webdataset",
                   help="alias of --format webdataset")
    p.add_argument("--shard-items", type=int, default=500, help="items per tar with --format webdataset (default 500)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--strict", action="store_true", help="stop at the first bad bank clip instead of skipping it")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:

    lo, hi = args.events
    cfg = MixupConfig(
        bank=bank_setting(args.bank or [BUILTIN]), seconds=args.seconds, sr=args.sr, split=args.split, seed=args.seed,
        min_events=lo, max_events=hi, overlap_prob=args.overlap_prob, test_folds=tuple(args.test_folds),
        phrases_file=args.phrases,
    )
    report = build_mixups(
        cfg, args.out, args.n, shard=parse_shard(args.shard), workers=args.workers, quiet=args.quiet,
        strict=args.strict, webdataset=args.format == "webdataset", items_per_shard=args.shard_items,
    )
    print(report.summary())
    if report.failed:
        raise UserError(f"{len(report.failed)} clip(s) could not be built (reasons above); fix the bank and re-run to resume")
    return 0
