"""Training checkpoints on disk: one folder per optimiser step, written atomically, found, rotated, read back.

Layout (the one both trainers have always written, so existing runs resume)::

    <run>/checkpoints/
        step-00000002/            a complete checkpoint: whatever the trainer saved (accelerate ``save_state``)
            trainer_state.json    written last; ``{"step": 2, ...}``
        step-00000004/
        .tmp-step-00000006/       hidden: a save in progress, or one a kill interrupted; never listed

The contract:

* A checkpoint is complete when its folder is named ``step-<digits>`` and holds ``trainer_state.json``. The folder
  is built under a hidden temp name, the state file goes in last, and only then is the folder renamed into place,
  so a kill at any point leaves the previous checkpoint the latest one and never a half-written ``step-`` folder.
* Order is by step number, not by name (``step-100000000`` comes after ``step-99999999``).
* Rotation keeps the newest ``keep`` checkpoints. An old one is first renamed to a hidden name, then deleted, so
  a kill during the (slow, non-atomic) delete cannot leave a ``step-`` folder with some of its files gone.
* Several processes (``accelerate launch``): every process calls :func:`save_checkpoint` with the same arguments
  and its own ``is_main``/``barrier``; all write into the same temp folder, and only the main process writes the
  state file, renames and rotates. The temp name therefore carries the step only, no process id.

This module knows nothing about torch or accelerate: the trainer passes a ``write(folder)`` callable
(e.g. ``lambda d: accelerator.save_state(str(d))``) and loads with its own ``load_state``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Callable

from basekit.atomic import atomic_write_text, replace_dir
from basekit.errors import UserError

PREFIX = "step-"
STATE_FILE = "trainer_state.json"
_TMP = ".tmp-"
_DEL = ".del-"
_NAME = re.compile(rf"^{re.escape(PREFIX)}(\d+)$")


def checkpoint_name(step: int) -> str:
    """Folder name of the checkpoint after ``step`` optimiser steps: ``step-00000123`` (8 digits, more if needed)."""
    if step < 0:
        raise ValueError(f"checkpoint step must be >= 0, got {step}")
    return f"{PREFIX}{step:08d}"


def checkpoint_step(path: str | os.PathLike) -> int | None:
    """The step a checkpoint folder's name says (``step-00000123`` -> 123); None for any other name."""
    m = _NAME.match(Path(path).name)
    return int(m.group(1)) if m else None


def list_checkpoints(root: str | os.PathLike) -> list[Path]:
    """Complete checkpoints under ``root`` (the ``checkpoints`` folder), oldest step first.

    Hidden temp folders of saves in progress or interrupted, folders without a state file, and names that are
    not ``step-<digits>`` are left out. A missing ``root`` has none.
    """
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        step = checkpoint_step(p)
        if step is not None and p.is_dir() and (p / STATE_FILE).is_file():
            found.append((step, p))
    return [p for _, p in sorted(found)]


def latest_checkpoint(root: str | os.PathLike) -> Path | None:
    """The complete checkpoint with the highest step under ``root``, or None."""
    ck = list_checkpoints(root)
    return ck[-1] if ck else None


def read_state(checkpoint: str | os.PathLike) -> dict[str, Any]:
    """The trainer state a checkpoint was saved with (``trainer_state.json``; holds at least ``step``)."""
    path = Path(checkpoint) / STATE_FILE
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"checkpoint state {path} cannot be read ({exc.__class__.__name__}); "
                        "delete that checkpoint folder to resume from the one before it") from None
    if not isinstance(state, dict) or not isinstance(state.get("step"), int):
        raise UserError(f"checkpoint state {path} has no integer 'step'; "
                        "delete that checkpoint folder to resume from the one before it")
    return state


def save_checkpoint(
    root: str | os.PathLike,
    step: int,
    write: Callable[[Path], None],
    state: dict[str, Any] | None = None,
    *,
    keep: int = 2,
    is_main: bool = True,
    barrier: Callable[[], None] | None = None,
) -> Path:
    """Write the checkpoint of ``step`` under ``root`` atomically, then keep only the newest ``keep``.

    Args:
        root: the run's ``checkpoints`` folder (made if missing).
        step: optimiser steps done; names the folder (:func:`checkpoint_name`).
        write: fills the folder it is given (every process calls it, e.g. ``accelerator.save_state``).
        state: extra JSON-able trainer state; ``trainer_state.json`` gets ``{"step": step, **state}``.
        keep: how many checkpoints to keep (at least 1: the one just written is never deleted).
        is_main: whether this process renames and rotates (the main process of a distributed run).
        barrier: waits for every process (``accelerator.wait_for_everyone``); None for one process.

    Returns:
        The final folder ``root / step-XXXXXXXX``. An earlier checkpoint of the same step is replaced.
    """
    sync = barrier or (lambda: None)
    root = Path(root)
    final = root / checkpoint_name(step)
    tmp = root / f"{_TMP}{final.name}"
    if is_main:
        root.mkdir(parents=True, exist_ok=True)
        _sweep(root)  # leftovers of killed saves (this step's temp folder included)
    sync()
    try:
        write(tmp)
        sync()
        if is_main:
            tmp.mkdir(parents=True, exist_ok=True)  # a writer that had nothing to write still gets a folder
            atomic_write_text(tmp / STATE_FILE, json.dumps({"step": int(step), **_without_step(state)}, indent=2))
            replace_dir(tmp, final)
            prune_checkpoints(root, keep, protect=final)
    except BaseException:
        if is_main:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    sync()
    return final


def prune_checkpoints(root: str | os.PathLike, keep: int, protect: Path | None = None) -> list[Path]:
    """Delete all but the newest ``keep`` (at least 1) complete checkpoints; returns the ones deleted.

    Each is renamed to a hidden name before it is deleted, so it leaves the listing in one atomic step.
    ``protect`` (the checkpoint just written) is never deleted.
    """
    old = [p for p in list_checkpoints(root)[: -max(1, int(keep))] if p != protect]
    for p in old:
        doomed = p.with_name(f"{_DEL}{p.name}")
        if doomed.exists():  # left by a rotation a kill interrupted
            shutil.rmtree(doomed, ignore_errors=True)
        os.replace(p, doomed)
        shutil.rmtree(doomed, ignore_errors=True)
    return old


def _without_step(state: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (state or {}).items() if k != "step"}


def _sweep(root: Path) -> None:
    """Remove hidden folders that killed saves or rotations left behind: temp and doomed checkpoints, and the
    ``.step-N.old-PID`` copy :func:`basekit.atomic.replace_dir` keeps while it swaps a checkpoint of the same step."""
    for p in root.iterdir():
        n = p.name
        swapped = n.startswith("." + PREFIX) and ".old-" in n
        if p.is_dir() and (n.startswith((_TMP + PREFIX, _DEL + PREFIX)) or swapped):
            shutil.rmtree(p, ignore_errors=True)


__all__ = ["PREFIX", "STATE_FILE", "checkpoint_name", "checkpoint_step", "latest_checkpoint", "list_checkpoints",
           "prune_checkpoints", "read_state", "save_checkpoint"]
