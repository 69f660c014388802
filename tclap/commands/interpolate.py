"""``tclap interpolate --from BASELINE --to TCLAP --alpha 0.8 --out DIR``: a weight-space ensemble (WiSE-FT).

Writes ``(1 − α)·from + α·to`` as a CLAP export (see :mod:`tclap.interpolate`): α trades the T-CLAP fine-tune's
order accuracy against the contrastive baseline's retrieval, with no training. Evaluate it with
``tclap evaluate --model DIR``.
"""

from __future__ import annotations

import argparse
from tclap.interpolate import interpolate_models


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="src", required=True,
                        help="the model at alpha 0 (e.g. the contrastive-only fine-tune): name, directory or .pt")
    parser.add_argument("--to", dest="dst", required=True,
                        help="the model at alpha 1 (e.g. the T-CLAP fine-tune of the same start)")
    parser.add_argument("--alpha", type=float, required=True, help="weight of --to, in [0, 1] (e.g. 0.8)")
    parser.add_argument("--out", required=True, help="output directory (a CLAP export, written atomically)")
    parser.add_argument("--device", default="cpu", help="device to load on (default: cpu)")


def run(args: argparse.Namespace) -> int:

    out = interpolate_models(args.src, args.dst, args.alpha, args.out, device=args.device)
    print(f"interpolated {args.src} -> {args.dst} at alpha {args.alpha:g} -> {out}")
    return 0
