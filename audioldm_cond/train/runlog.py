"""The run log of ``audioldm-cond train``: JSON Lines (always) and TensorBoard (when installed).

``<out>/log.jsonl`` holds one record per optimiser step (``{"step", "loss", "lr", ...}``), validation
records (``{"kind": "val", ...}``) and events (resume). After a resume the records past the checkpoint's
step are dropped, so the log reads like the one of an uninterrupted run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from basekit.atomic import atomic_write_text


class RunLog:
    """Append-only JSONL log with an optional TensorBoard mirror.

    Args:
        run_dir: the run directory; the log is ``run_dir/log.jsonl``, TensorBoard files ``run_dir/tb``.
        tensorboard: mirror scalars to TensorBoard when the package is importable.
    """

    def __init__(self, run_dir: Path, tensorboard: bool = True):
        self.path = Path(run_dir) / "log.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter  # noqa: PLC0415 (optional extra)
            except ImportError:  # tensorboard is an optional extra
                SummaryWriter = None
            if SummaryWriter is not None:
                self._tb = SummaryWriter(log_dir=str(Path(run_dir) / "tb"))

    def _append(self, rec: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec, sort_keys=True) + "\n")
            f.flush()

    def scalars(self, rec: dict[str, Any]) -> None:
        """One training-step record; numeric fields go to TensorBoard under ``train/``."""
        self._append({"kind": "train", **rec})
        if self._tb is not None:
            for k, v in rec.items():
                if k != "step" and isinstance(v, (int, float)):
                    self._tb.add_scalar(f"train/{k}", v, rec["step"])

    def validation(self, rec: dict[str, Any]) -> None:
        self._append({"kind": "val", **rec})
        if self._tb is not None:
            for k, v in _flatten(rec).items():
                if k != "step" and isinstance(v, (int, float)):
                    self._tb.add_scalar(f"val/{k}", v, rec["step"])

    def event(self, rec: dict[str, Any]) -> None:
        self._append({"kind": "event", **rec})

    def truncate_after(self, step: int) -> None:
        """Drop step and validation records past ``step`` (they belong to work the resume repeats)."""
        if not self.path.exists():
            return
        keep = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:  # a line cut by the interruption
                continue
            if rec.get("kind") in ("train", "val") and int(rec.get("step", 0)) > step:
                continue
            keep.append(line)
        atomic_write_text(self.path, "".join(k + "\n" for k in keep))

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def read_log(run_dir: Path, kind: str = "train") -> list[dict[str, Any]]:
    """The records of one kind from ``run_dir/log.jsonl``."""
    p = Path(run_dir) / "log.jsonl"
    if not p.exists():
        return []
    out = []
    for line in p.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if rec.get("kind") == kind:
            out.append(rec)
    return out


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "/"))
        else:
            out[key] = v
    return out
