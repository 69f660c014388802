"""``tclap export --model NAME|DIR|CKPT.pt --out DIR``: write a transformers ClapModel directory.

The result loads with ``transformers.ClapModel.from_pretrained`` and ``ClapTextModelWithProjection.from_pretrained``
(the text encoder diffusers' AudioLDM uses), with a ``ClapProcessor`` beside it. LAION-CLAP ``.pt`` checkpoints
are converted on the way; they carry no tokenizer, so pass ``--tokenizer DIR`` (a local RoBERTa tokenizer).
"""

from __future__ import annotations

import argparse
from basekit.quiet import quiet_third_party
from tclap.export import export_model


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True,
                        help="config name (tiny, htsat-tiny-roberta, ...), shipped model (tiny-baseline, tiny-tclap), "
                             "ClapModel directory, LAION-CLAP .pt checkpoint or hub id")
    parser.add_argument("--out", required=True, help="output directory (replaced atomically if it is an export)")
    parser.add_argument("--tokenizer", default=None, help="local tokenizer directory (needed for LAION .pt checkpoints)")
    parser.add_argument("--config", default=None,
                        help="expected architecture of a .pt checkpoint (checked); default: read from the weights")
    parser.add_argument("--device", default="cpu", help="device to load on (default: cpu)")
    parser.add_argument("--verbose", action="store_true",
                        help="also transformers' progress bars (e.g. 'Loading weights')")


def run(args: argparse.Namespace) -> int:

    with quiet_third_party(args.verbose):
        out = export_model(args.model, args.out, tokenizer=args.tokenizer, config=args.config, device=args.device)
    print(f"exported {args.model} -> {out}")
    return 0
