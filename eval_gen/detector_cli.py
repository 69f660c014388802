"""``eval-gen detector``: train an event detector on a clip bank and measure its ceiling on held-out mix-ups.

    eval-gen detector train --bank BANK [--bank BANK ...] --out DIR [--set steps=1500 ...]
    eval-gen detector ceiling [--detector DIR] [--bank BANK ...] --n 400 [--seconds 4] [--events 2] [--seed 0]

``BANK`` is ``builtin`` or a folder per class (``BANK/<label>/*.wav``); repeat ``--bank`` (or join banks with ``+``:
``builtin+DIR``) for one detector over the union of their classes, each class from its own bank
(:class:`tclap.data.banks.UnionBank`; a class in two banks is refused). ``train`` uses every bank's train split
only; ``ceiling`` builds ``--n`` ordered mix-ups of the banks' *held-out* splits (no overlapping events; by default
the banks the detector was trained on) and prints the share whose true event order the detector finds, with its
95% Wilson interval: the highest order accuracy that this judge can credit a generator with.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import fields
from pathlib import Path

from basekit.errors import UserError


def add_parser(sub) -> None:
    """Add the ``detector`` command (``train`` / ``ceiling``) to an ``add_subparsers`` object."""
    d = sub.add_parser("detector", help="train a sound-event detector on a clip bank, or measure its ceiling")
    dsub = d.add_subparsers(dest="detector_cmd", required=True)
    t = dsub.add_parser("train", help="train a detector on a bank's train split and save it to a folder")
    t.add_argument("--bank", action="append", required=True, metavar="BANK",
                   help="'builtin' or a folder per class (BANK/<label>/*.wav); repeat it (or join with +: builtin+DIR) "
                        "for one detector over the union of the banks' classes, each keeping its own hold-out")
    t.add_argument("--out", required=True, help="folder for detector.json + model.safetensors")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", default=[],
                   help="a detector setting (repeat), e.g. --set steps=1500 --set instances_per_class=40")
    c = dsub.add_parser("ceiling", help="the detector's order accuracy on real held-out mix-ups of a bank")
    c.add_argument("--detector", default="builtin", help="a saved detector folder, or 'builtin' (default)")
    c.add_argument("--bank", action="append", default=None, metavar="BANK",
                   help="bank of the mix-ups (default: the detector's; 'builtin' or a folder; repeat it, or "
                        "builtin+DIR, for a union)")
    c.add_argument("--n", type=int, default=400, help="held-out mix-ups (default 400)")
    c.add_argument("--seconds", type=float, default=4.0)
    c.add_argument("--events", default="2", help="events per mix-up: 2, 3 or 2-3")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--work", default=None, help="where the mix-ups are written (default: a temp folder)")
    c.add_argument("--json", default=None, help="also write the result to this JSON file")
    c.add_argument("--quiet", action="store_true")


def parse_settings(items) -> "DetectorConfig":  # noqa: F821 - imported lazily below
    from eval_gen.detector import DetectorConfig

    base = DetectorConfig()
    types = {f.name: type(getattr(base, f.name)) for f in fields(base)}
    out = {}
    for it in items:
        if "=" not in it:
            raise UserError(f"--set expects KEY=VALUE, got {it!r}")
        k, v = (s.strip() for s in it.split("=", 1))
        if k not in types or k == "version":
            raise UserError(f"--set {k}: unknown detector setting; known: {', '.join(n for n in types if n != 'version')}")
        try:
            out[k] = (v.lower() in ("1", "true", "yes")) if types[k] is bool else types[k](v)
        except ValueError:
            raise UserError(f"--set {k}={v}: not a {types[k].__name__}") from None
    return DetectorConfig(**out)


def _events(text: str) -> tuple[int, int]:
    try:
        lo, _, hi = text.partition("-")
        a, b = int(lo), int(hi or lo)
    except ValueError:
        raise UserError(f"--events {text!r}: use 2, 3 or 2-3") from None
    if not 2 <= a <= b <= 3:
        raise UserError(f"--events {text!r}: use 2, 3 or 2-3")
    return a, b


def run(args) -> int:
    if args.detector_cmd == "train":
        from eval_gen.detector import train_detector

        cfg = parse_settings(args.set)
        det = train_detector(args.bank[0] if len(args.bank) == 1 else args.bank, cfg)
        det.record["made_by"]["command"] = " ".join(
            ["eval-gen detector train", *(f"--bank {shlex.quote(str(b))}" for b in args.bank), "--out",
             shlex.quote(str(args.out)), *(f"--set {shlex.quote(s)}" for s in args.set)])
        out = det.save(args.out)
        print(json.dumps({"out": str(out), "labels": list(det.labels[1:]), **det.record}, indent=2))
        return 0
    from eval_gen.detector import BUILTIN, EventDetector, get_detector
    from eval_gen.temporal import detector_ceiling

    if args.n < 1:
        raise UserError(f"--n {args.n}: give at least 1 mix-up (400 or more for a ceiling worth reporting)")
    lo, hi = _events(args.events)
    det = get_detector() if args.detector == BUILTIN else EventDetector.load(args.detector)
    from tclap.data.banks import bank_label

    # A union detector records its members' paths as a list; the mix-ups then draw each class from its own bank.
    bank = args.bank or (det.record.get("bank", {}).get("path") or "builtin")
    if isinstance(bank, list) and None in bank:
        raise UserError(f"detector {args.detector} does not record where all of its banks are; name them with --bank")
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        res = detector_ceiling(args.work or str(Path(tmp) / "mix"), n=args.n, seconds=args.seconds, seed=args.seed,
                               detector=det, bank=bank, min_events=lo, max_events=hi, progress=not args.quiet)
    lo_ci, hi_ci = res["wilson"]
    print(f"detector ceiling: {100 * res['order_accuracy']:.2f}% ({res['correct']}/{res['n']}) of held-out "
          f"{args.events}-event mix-ups of {bank_label(bank)} in order; "
          f"95% Wilson interval {100 * lo_ci:.2f}-{100 * hi_ci:.2f}%")
    if args.json:
        from basekit.atomic import atomic_write_text

        atomic_write_text(args.json, json.dumps(res, indent=2) + "\n")
    return 0


def main(argv=None) -> int:
    """Stand-alone entry (``python -m eval_gen.detector_cli train ...``), the same as ``eval-gen detector``."""
    from basekit.errors import cli_entry

    @cli_entry(prog="eval-gen detector")
    def _main(a):
        p = argparse.ArgumentParser(prog="eval-gen")
        add_parser(p.add_subparsers(dest="cmd", required=True))
        return run(p.parse_args(["detector", *(a or [])]))

    return _main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    raise SystemExit(main())
