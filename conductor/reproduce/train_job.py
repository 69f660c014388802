"""One AudioLDM training run of the reproduction, in its own process: ``main([CONFIG_JSON])``.

The config is a ``audioldm_cond.train.config.TrainConfig`` written by the ldm stage (its ``to_dict()``), so the run is
built from the trainer's own config class, never from command-line flags re-typed here. A run resumes from its
last checkpoint (``resume`` is set in the config).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Sequence

from basekit.errors import UserError, cli_entry
from audioldm_cond.train.config import TrainConfig


@cli_entry(prog="tclap reproduce")
def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 1:
        raise UserError("usage: python -m conductor.reproduce.train_job CONFIG_JSON")
    from audioldm_cond.train.trainer import Trainer  # noqa: PLC0415 (loads torch and diffusers; the stage planner imports this module to look for a build_parser)

    path = Path(argv[0])
    if not path.is_file():
        raise UserError(f"training config {path} not found; re-run tclap reproduce, which writes it")
    Trainer(TrainConfig.from_dict(json.loads(path.read_text()))).fit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
