"""``eval-gen``: score generated audio folders and compare runs.

    eval-gen score --gen DIR --ref DIR [--prompts FILE] --backend NAME [--weights PATH] [--detector DIR] \\
                   --metrics fad,kad,kl,clap,order --out DIR
    eval-gen compare runA/scores.json runB/scores.json ...
    eval-gen detector train --bank BANK [--bank BANK] --out DIR   (the order judge for a bank, or a union of banks)
    eval-gen detector ceiling [--detector DIR] --n 400   (its order accuracy on real held-out mix-ups)
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Sequence

from basekit.device import DEVICE_HELP, resolve_device
from basekit.errors import UserError, cli_entry


DEVICE_BACKENDS = ("vggish", "panns-cnn14", "clap", "tclap")  # the backends that run a torch model


def _kv(items: Sequence[str] | None, flag: str) -> dict:
    out = {}
    for it in items or []:
        if "=" not in it:
            raise UserError(f"{flag} expects KEY=VALUE, got {it!r}")
        k, v = it.split("=", 1)
        low = v.lower()
        out[k.strip()] = True if low in ("1", "true", "yes") else False if low in ("0", "false", "no") else v
    return out


def build_parser() -> argparse.ArgumentParser:
    from eval_gen.backends import available_backends
    from eval_gen.score import ALL_METRICS

    p = argparse.ArgumentParser(prog="eval-gen", description="Score generated audio (FAD, KAD, KL, CLAP, order).")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("score", help="score a folder of generated clips against a reference folder")
    s.add_argument("--gen", required=True, help="folder of generated clips")
    s.add_argument("--ref", required=True, help="folder of reference clips")
    s.add_argument("--prompts", help="JSONL {id|file, prompt[, negative_prompt]} or CSV file,prompt")
    s.add_argument("--backend", default="mel-stats", help=f"embedding backend: {', '.join(available_backends())}")
    s.add_argument("--weights", help="weights file of the backend (vggish / panns-cnn14) or CLAP model for clap")
    s.add_argument("--backend-arg", action="append", metavar="KEY=VALUE", help="extra backend setting (repeat)")
    s.add_argument("--classifier", help="classifier for KL (default: the backend if it classifies)")
    s.add_argument("--classifier-weights", help="weights file of the KL classifier")
    s.add_argument("--clap-model", default="tiny-tclap", help="CLAP model for clap/order when the backend is not CLAP")
    s.add_argument("--detector", help="event detector folder written by 'eval-gen detector train' (default: the "
                   "built-in bank's): judges order, and is the builtin-events classifier (KL) / backend")
    s.add_argument("--metrics", default="fad,kad", help=f"comma list of {','.join(ALL_METRICS)}")
    s.add_argument("--pooling", default="auto", choices=["auto", "frames", "clip"])
    s.add_argument("--n-boot", type=int, default=100, help="bootstrap replicates for CIs (0: none)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--on-silent", default="warn", choices=["warn", "skip", "error"],
                   help="what to do with silent or near-silent clips: warn and keep (default), skip, or error")
    s.add_argument("--silence-dbfs", type=float, default=-60.0,
                   help="a clip whose peak before any gain is below this is near-silent (default -60 dBFS; the "
                        "level audioldm-cond generate recorded in prompts.jsonl, else the file's own peak)")
    s.add_argument("--cache-dir", help="embedding cache folder (default ~/.cache/tclap/eval_gen; '' disables)")
    s.add_argument("--device", default="auto", help=DEVICE_HELP)
    s.add_argument("--out", required=True, help="output folder for scores.json / scores.md / scores.png")
    s.add_argument("--no-plot", action="store_true")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.add_argument("--verbose", action="store_true",
                   help="also the progress bars of transformers / diffusers (e.g. 'Loading weights')")
    c = sub.add_parser("compare", help="side-by-side Markdown table of several scores.json files")
    c.add_argument("runs", nargs="+", help="scores.json files (or folders holding one)")
    c.add_argument("--names", help="comma list of column names (default: parent folder names)")
    c.add_argument("--out", help="also write the table to this .md file")
    from eval_gen.detector_cli import add_parser as add_detector_parser

    add_detector_parser(sub)
    return p


def _score(args) -> int:
    from eval_gen.report import markdown_table, write_report
    from basekit.quiet import quiet_third_party
    from eval_gen.score import ScoreConfig, score_folders

    bkw = _kv(args.backend_arg, "--backend-arg")
    if args.weights:
        bkw["model" if args.backend == "clap" else "weights"] = args.weights
    device = resolve_device(args.device)
    if args.backend in DEVICE_BACKENDS:
        bkw.setdefault("device", device)
    ckw = {"weights": args.classifier_weights} if args.classifier_weights else {}
    if args.classifier in DEVICE_BACKENDS:
        ckw["device"] = device
    cfg = ScoreConfig(
        backend=args.backend, backend_kwargs=bkw, metrics=tuple(m.strip() for m in args.metrics.split(",") if m.strip()),
        pooling=args.pooling, classifier=args.classifier, classifier_kwargs=ckw, clap_model=args.clap_model,
        detector=args.detector,
        n_boot=args.n_boot, seed=args.seed, on_silent=args.on_silent, silence_dbfs=args.silence_dbfs,
        cache_dir=args.cache_dir, device=device,
        progress=not args.quiet,
    )
    with warnings.catch_warnings():
        # Our warnings are one line each: print them without the source line of the warnings module.
        warnings.simplefilter("default")
        warnings.showwarning = lambda msg, *a, **k: print(f"eval-gen: warning: {msg}", file=sys.stderr)
        with quiet_third_party(args.verbose):
            result = score_folders(args.gen, args.ref, prompts=args.prompts, config=cfg)
    paths = write_report(result, args.out, plot=not args.no_plot)
    print(markdown_table(result), end="")
    print(f"wrote {paths['json']}", file=sys.stderr)
    return 0


def _compare(args) -> int:
    from eval_gen.report import compare_table, load_result

    results = [load_result(r) for r in args.runs]
    if args.names:
        names = [n.strip() for n in args.names.split(",")]
        if len(names) != len(results):
            raise UserError(f"--names has {len(names)} names for {len(results)} runs; give one per run")
    else:
        names = [(Path(r).parent.name if Path(r).is_file() else Path(r).name) or str(r) for r in args.runs]
    table = compare_table(results, names)
    print(table, end="")
    if args.out:
        from basekit.atomic import atomic_write_text

        atomic_write_text(args.out, table)
    return 0


@cli_entry(prog="eval-gen")
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.cmd == "detector":
        from eval_gen.detector_cli import run as run_detector

        return run_detector(args)
    return _score(args) if args.cmd == "score" else _compare(args)


if __name__ == "__main__":
    raise SystemExit(main())
