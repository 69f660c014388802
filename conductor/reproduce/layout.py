"""The reproduction's output layout: the two systems and where every stage writes (shared by stages and report)."""

from __future__ import annotations

import json
from pathlib import Path

# system name -> (CLAP recipe export folder, label in the paper's notation); a smoke run's folders are named
# smoke-baseline / smoke-tclap instead (:func:`model_prefix`), never like the shipped models.
SYSTEMS = {"baseline": ("tiny-baseline", "AudioLDM_L"), "tclap": ("tiny-tclap", "AudioLDM_T")}


def model_prefix(preset: str) -> str:
    """The name prefix of a run's trained models: ``smoke`` for the ``quick`` preset (a few optimiser steps: not
    models, a check that the pipeline runs), ``tiny`` otherwise."""
    return "smoke" if preset == "quick" else "tiny"
CLAP_LABELS = {"baseline": "baseline CLAP", "tclap": "T-CLAP"}


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(ln) for ln in Path(path).read_text(encoding="utf-8").splitlines() if ln.strip()]


class Paths:
    """Where each stage puts its outputs (one place, so that stages and the report agree)."""

    def __init__(self, out: Path, prefix: str = "tiny"):
        self.out = Path(out)
        self.prefix = prefix  # of the CLAP folders: tiny-baseline / tiny-tclap, or smoke-* for a smoke run

    @property
    def prompts(self) -> Path:
        return self.out / "data" / "prompts.jsonl"

    @property
    def references(self) -> Path:
        return self.out / "data" / "heldout" / "audio"

    @property
    def heldout_manifest(self) -> Path:
        return self.out / "data" / "heldout" / "manifest.jsonl"

    @property
    def ldm_train(self) -> Path:
        return self.out / "data" / "ldm_train_pairs.jsonl"

    def clap(self, seed: int, system: str) -> Path:
        return self.out / "clap" / f"seed{seed}" / SYSTEMS[system][0].replace("tiny", self.prefix, 1)

    def clap_eval(self, seed: int, system: str) -> Path:
        return self.out / "clap_eval" / f"seed{seed}" / system

    def vae(self) -> Path:
        return self.out / "ldm" / "vae"

    def ldm(self, seed: int, system: str) -> Path:
        return self.out / "ldm" / f"seed{seed}" / system

    def generated(self, seed: int, system: str) -> Path:
        return self.out / "generate" / f"seed{seed}" / system

    def scores(self, seed: int, system: str) -> Path:
        return self.out / "score" / f"seed{seed}" / system

    def probe(self, seed: int, system: str) -> Path:
        return self.out / "score" / f"seed{seed}" / f"{system}-probe"

    @property
    def ceiling(self) -> Path:
        return self.out / "score" / "ceiling"

    @property
    def study(self) -> Path:
        return self.out / "study" / "study.yaml"
