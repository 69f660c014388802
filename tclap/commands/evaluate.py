"""``tclap evaluate``: T-Classify (with the audio-blind control), retrieval and zero-shot evaluation."""

from __future__ import annotations

import argparse

from basekit.device import DEVICE_HELP, resolve_device
from basekit.quiet import quiet_third_party
from tclap.evaluation.report import markdown_table
from tclap.evaluation.runner import EvalConfig, evaluate


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="model name (tiny-baseline, tiny-tclap, ...), directory or hub id")
    p.add_argument("--data", required=True, help="'builtin-heldout' or a manifest (JSON Lines)")
    p.add_argument("--out", required=True, help="folder for metrics.json and metrics.md")
    p.add_argument("--prompt-template", default="A sound of {label}", help="zero-shot prompt (default: %(default)r)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--cache-dir", help="embedding cache (default: OUT/cache)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--verbose", action="store_true", help="also transformers' progress bars (e.g. 'Loading weights')")


def run(args: argparse.Namespace) -> int:

    cfg = EvalConfig(prompt_template=args.prompt_template, batch_size=args.batch_size)
    device = resolve_device(args.device)
    with quiet_third_party(args.verbose):
        res = evaluate(args.model, args.data, args.out, cfg=cfg, cache_dir=args.cache_dir, quiet=args.quiet,
                       device=device)
    print(markdown_table({k: v for k, v in res.items() if isinstance(v, float)}, res["counts"]), end="")
    return 0
