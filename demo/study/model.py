"""The parts of a study: systems, prompts, the 1-5 rating scales, training and check clips, loudness, completion.

Plain frozen dataclasses, filled in by the section checks (:mod:`demo.study.sections`); clip files are found
by prompt id with :func:`find_clip`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")

# ITU-T P.800 absolute category rating labels (overall quality, MOS_r).
ACR_LABELS = {5: "Excellent", 4: "Good", 3: "Fair", 2: "Poor", 1: "Bad"}
# Temporal accuracy (MOS_t): how well the order of the sound events matches the text.
TEMPORAL_LABELS = {
    5: "All events in the described order",
    4: "Events in the described order, with small timing flaws",
    3: "Order partly right",
    2: "Order mostly wrong",
    1: "Order wrong or events missing",
}


@dataclass(frozen=True)
class Scale:
    """One 1–5 rating scale shown under each clip."""

    name: str
    question: str
    labels: dict[int, str]


DEFAULT_SCALES = (
    Scale("mos_r", "Overall quality of the audio?", dict(ACR_LABELS)),
    Scale("mos_t", "Do the sound events happen in the order the text describes?", dict(TEMPORAL_LABELS)),
)


@dataclass(frozen=True)
class System:
    name: str
    dir: Path


@dataclass(frozen=True)
class Prompt:
    id: str
    text: str


@dataclass(frozen=True)
class TrainingExample:
    file: Path
    text: str
    note: str


@dataclass(frozen=True)
class CheckClip:
    """A gold clip or an attention check: ``expect`` maps scale name → accepted ratings."""

    id: str
    file: Path
    text: str
    expect: dict[str, tuple[int, ...]]


@dataclass(frozen=True)
class Loudness:
    """Clips are served at ``target_lufs`` (BS.1770); a gain never lifts the peak past ``ceiling_dbfs`` nor
    passes ``max_gain_db`` upwards (a clip then plays quieter; its served loudness is recorded)."""

    target_lufs: float = -23.0
    ceiling_dbfs: float = -1.0
    max_gain_db: float = 20.0


@dataclass(frozen=True)
class Completion:
    """Shown on the last page: a code to paste into the crowd platform and/or a link back to it."""

    code: str | None = None
    url: str | None = None


def find_clip(folder: Path, prompt_id: str) -> Path | None:
    """``<folder>/<prompt_id>.<ext>`` for the first audio extension that exists, or None."""
    for ext in AUDIO_EXTENSIONS:
        p = folder / f"{prompt_id}{ext}"
        if p.is_file():
            return p
    return None
