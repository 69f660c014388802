"""Phase 2 of a build: which converted recordings enter the bank, and which are held out (:func:`choose`).

A pure function of the journal records (and their clips), so that its result does not depend on where a build
was interrupted: duplicates go (:mod:`tclap.bank.duplicates`), classes with fewer than ``min_per_class`` usable
recordings are dropped, at most ``max_per_class`` are kept per class and ``max(min_heldout, round(heldout_fraction
* n))`` whole recordings are held out, both picked by a hash of each recording's key (stable across builds and
independent of the order recordings were converted in).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from tclap.bank.config import BuildConfig
from tclap.bank.duplicates import split_duplicates


def _rank(tag: str, key: str) -> str:
    return hashlib.sha1(f"{tag}:{key}".encode()).hexdigest()


@dataclass
class Choice:
    """What phase 2 decided: files per class (with split), and everything left out."""

    files: dict[str, list[dict]] = field(default_factory=dict)
    rejected: list[dict] = field(default_factory=list)
    dropped: list[dict] = field(default_factory=list)
    unused: dict[str, int] = field(default_factory=dict)


def choose(records: list[dict], cfg: BuildConfig, audio: Callable[[dict], np.ndarray] | None = None) -> Choice:
    """Duplicates, class sizes, the per-class cap and the hold-out, from the journal records (and their clips).

    Exact duplicates share the converted samples (``sha1``). With ``audio`` (record -> ``[T]`` clip at ``cfg.sr``)
    a recording that is a copy or an excerpt of an earlier one of its class (:func:`~tclap.bank.duplicates.match_score` at least
    ``NEAR_DUPLICATE``: one package re-encoding or cutting another's file) is a duplicate too, so that no part of a
    held-out recording is trained on.
    """
    ch = Choice()
    by_label, ch.rejected = split_duplicates(records, cfg.sr, audio)
    for label in sorted({r["label"] for r in records}):
        rs = by_label.get(label, [])
        if len(rs) < cfg.min_per_class:
            ch.dropped.append({"label": label, "recordings": len(rs),
                               "detail": f"{len(rs)} usable recording(s); at least {cfg.min_per_class} are needed"})
            for r in rs:
                ch.rejected.append({**r, "status": "rejected", "reason": "class_too_small",
                                    "detail": f"class {label!r} has {len(rs)} usable recording(s), fewer than {cfg.min_per_class}"})
            continue
        keep = sorted(rs, key=lambda r: _rank("pick", r["key"]))[: cfg.max_per_class]
        if len(rs) > len(keep):
            ch.unused[label] = len(rs) - len(keep)
        n_held = max(cfg.min_heldout, int(round(cfg.heldout_fraction * len(keep))))
        held = {r["key"] for r in sorted(keep, key=lambda r: _rank("heldout", r["key"]))[:n_held]}
        ch.files[label] = [{**r, "split": "heldout" if r["key"] in held else "train"} for r in sorted(keep, key=lambda r: r["name"])]
    return ch
