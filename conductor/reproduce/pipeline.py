"""A resumable chain of stages, each finished when ``OUT/<stage>/DONE.json`` holds its current key.

A stage's key is the sha256 of its settings and of the ``output_id`` of every stage it depends on (a fresh
random id written when a stage finishes). So:

* a finished stage whose settings and inputs are unchanged is **skipped** (its outputs are not touched);
* a changed setting re-runs that stage, and the new ``output_id`` makes every later stage re-run too;
* a stage interrupted part-way (exception, Ctrl-C, a killed subprocess) has ``STARTED.json`` but no
  ``DONE.json``: the next run **resumes** it in place (the training, generation and scoring it calls
  resume from their own checkpoints and caches) when its key is the same, and clears its folder first
  when the key changed (stale checkpoints of other settings must not be resumed).

``DONE.json`` and ``STARTED.json`` are written atomically; ``DONE.json`` only after the stage returned.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from basekit.atomic import atomic_write_text
from basekit.errors import UserError

DONE_FILE = "DONE.json"
STARTED_FILE = "STARTED.json"
# Bump when a stage's outputs change meaning (forces a re-run of everything after an upgrade).
PIPELINE_VERSION = 1


@dataclass
class Stage:
    """One stage: ``run(stage_dir) -> summary`` (JSON-able; saved in ``DONE.json``).

    ``settings`` is everything that defines the stage's outputs (hashed into the key); ``deps`` names the
    earlier stages whose outputs it reads.
    """

    name: str
    run: Callable[[Path], dict]
    settings: Any = None
    deps: tuple[str, ...] = ()
    description: str = ""


@dataclass
class StageStatus:
    name: str
    action: str  # "skipped" | "ran" | "resumed"
    seconds: float = 0.0
    summary: dict = field(default_factory=dict)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def stage_key(stage: Stage, dep_ids: dict[str, str]) -> str:
    """sha256 over the stage name, its settings and its dependencies' output ids."""
    blob = json.dumps({"stage": stage.name, "settings": stage.settings, "deps": dep_ids,
                       "version": PIPELINE_VERSION}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def read_done(out: Path, name: str) -> dict | None:
    """The ``DONE.json`` record of stage ``name`` under ``out`` (None when the stage never finished)."""
    return _read_json(Path(out) / name / DONE_FILE)


class Pipeline:
    """Runs ``stages`` in order under ``out`` (see the module docstring for the skip / resume rules)."""

    def __init__(self, out: str | Path, stages: Sequence[Stage], log: Callable[[str], None] = print):
        self.out = Path(out)
        self.stages = list(stages)
        self.log = log
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names repeat: {names}")
        for i, s in enumerate(self.stages):
            for d in s.deps:
                if d not in names[:i]:
                    raise ValueError(f"stage {s.name} depends on {d}, which is not an earlier stage")

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.stages]

    def check_stage_names(self, given: Sequence[str], flag: str) -> None:
        for g in given:
            if g not in self.names:
                raise UserError(f"{flag} {g!r} is not a stage; stages are {', '.join(self.names)}")

    def run(self, force: Sequence[str] = (), from_stage: str | None = None) -> list[StageStatus]:
        """Run every stage that is not up to date; returns what happened to each.

        Args:
            force: stages to re-run even when up to date (later stages follow, as their input changed).
            from_stage: re-run this stage and every later one; the earlier ones must already be up to
                date (they are not run), so a changed setting upstream is reported instead of retraining.
        """
        self.check_stage_names(force, "--force-stage")
        if from_stage is not None:
            self.check_stage_names([from_stage], "--from-stage")
        forced = set(force)
        start = self.names.index(from_stage) if from_stage else 0
        forced |= set(self.names[start:]) if from_stage else set()
        self.out.mkdir(parents=True, exist_ok=True)
        ids: dict[str, str] = {}
        statuses: list[StageStatus] = []
        n = len(self.stages)
        for i, stage in enumerate(self.stages, 1):
            sdir = self.out / stage.name
            key = stage_key(stage, {d: ids[d] for d in stage.deps})
            done = read_done(self.out, stage.name)
            up_to_date = done is not None and done.get("key") == key
            if i - 1 < start:
                if not up_to_date:
                    why = "never finished" if done is None else "out of date (its settings or inputs changed)"
                    raise UserError(f"--from-stage {from_stage}: the earlier stage {stage.name} is {why}; "
                                    f"re-run without --from-stage")
            if up_to_date and stage.name not in forced:
                ids[stage.name] = done["output_id"]
                self.log(f"reproduce: [{i}/{n}] {stage.name}: up to date, skipped")
                statuses.append(StageStatus(stage.name, "skipped", 0.0, done.get("summary", {})))
                continue
            started = _read_json(sdir / STARTED_FILE)
            resuming = (started is not None and started.get("key") == key and done is None
                        and stage.name not in forced)
            if sdir.exists() and not resuming:
                # Outputs of other settings (or a forced re-run): start clean, never resume stale state.
                shutil.rmtree(sdir)
            sdir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(sdir / STARTED_FILE, json.dumps({"key": key, "started": time.time()}))
            verb = "resuming an interrupted run" if resuming else "running"
            self.log(f"reproduce: [{i}/{n}] {stage.name}: {verb}" + (f" ({stage.description})" if stage.description else ""))
            t0 = time.time()
            summary = stage.run(sdir) or {}
            secs = round(time.time() - t0, 1)
            record = {"stage": stage.name, "key": key, "output_id": uuid.uuid4().hex, "seconds": secs,
                      "finished": time.time(), "settings": stage.settings, "summary": summary}
            atomic_write_text(sdir / DONE_FILE, json.dumps(record, indent=2, sort_keys=True, default=str))
            ids[stage.name] = record["output_id"]
            self.log(f"reproduce: [{i}/{n}] {stage.name}: done in {secs:.1f} s")
            statuses.append(StageStatus(stage.name, "resumed" if resuming else "ran", secs, summary))
        return statuses
