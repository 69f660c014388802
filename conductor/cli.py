"""The ``tclap`` console script: ``tclap``'s own command table plus the pipelines that sit above it.

``tclap reproduce`` drives all four packages, so it lives here, one layer up; ``tclap.cli`` never names it.
"""

from __future__ import annotations

import sys
from typing import Sequence

from basekit.errors import cli_entry
from tclap.cli import COMMANDS as TCLAP_COMMANDS
from tclap.cli import dispatch

COMMANDS = {
    **TCLAP_COMMANDS,
    "reproduce": ("conductor.commands.reproduce", "run the paper's pipeline end to end (tiny or paper preset)"),
}


@cli_entry(prog="tclap")
def main(argv: Sequence[str] | None = None) -> int:
    return dispatch(argv, COMMANDS)


if __name__ == "__main__":
    sys.exit(main())
