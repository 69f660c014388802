"""``tclap singles``: a positive-only set of single-event clips (one event per clip, its phrase as caption)."""

from __future__ import annotations

import argparse

from basekit.errors import UserError
from tclap.commands.mixup import _folds
from tclap.data.banks import BUILTIN, bank_label, bank_setting
from tclap.data.singles import SinglesConfig, build_singles


def add_arguments(p: argparse.ArgumentParser) -> None:

    p.add_argument("--bank", action="append", default=None, metavar="BANK",
                   help="builtin (default), a folder per class (BANK/<label>/*.wav), or an ESC-50 CSV; repeat it (or "
                        "join with +: builtin+DIR) for the classes of several banks")
    p.add_argument("--per-class", type=int, default=100,
                   help="clips per class (built-in: that many instances; file banks: at most that many, default 100)")
    p.add_argument("--seconds", type=float, default=10.0, help="longest clip in seconds; longer ones are cut (default 10)")
    p.add_argument("--out", required=True, help="output folder (audio/, manifest.jsonl)")
    p.add_argument("--sr", type=int, default=16000, help="sample rate of the written audio (default 16000)")
    p.add_argument("--split", choices=["train", "heldout"], default="train",
                   help="which bank instances/folds to use (default train)")
    p.add_argument("--test-folds", type=_folds, default=(5,), help="ESC-50 folds held out of training (default 5)")
    p.add_argument("--phrases", default=None, help="label -> caption phrase file (JSON object or label<TAB>phrase lines)")
    p.add_argument("--format", choices=("manifest", "webdataset"), default="manifest",
                   help="manifest: audio files + OUT/manifest.jsonl (default); webdataset: OUT/singles-<j>.tar and an index")
    p.add_argument("--shard-items", type=int, default=500, help="items per tar with --format webdataset (default 500)")
    p.add_argument("--strict", action="store_true", help="stop at the first bad bank clip instead of leaving it out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:

    cfg = SinglesConfig(bank=bank_setting(args.bank or [BUILTIN]), per_class=args.per_class, seconds=args.seconds, sr=args.sr, split=args.split,
                        test_folds=tuple(args.test_folds), phrases_file=args.phrases)
    report = build_singles(cfg, args.out, quiet=args.quiet, strict=args.strict, webdataset=args.format == "webdataset",
                           items_per_shard=args.shard_items)
    print(report.summary())
    for key, reason in list(report.failed.items())[:10]:
        print(f"  left out {key}: {reason}")
    if not report.items:
        raise UserError(f"no clip of bank {bank_label(cfg.bank)!r} could be read; fix the bank")
    return 0
