"""A small synthetic study (tone clips + study file) for trying the app, tests and benchmarks.

``write_synthetic_study(out_dir)`` writes ``<out_dir>/study.yaml`` and short WAV clips for every
system × prompt, training examples, gold clips and attention checks. The file names carry the system names
on purpose: the blinding tests check that none of them ever reaches a page, URL or API response.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _tone(freq: float, seconds: float, sr: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    env = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.01)  # 10 ms fades, no clicks
    return (0.3 * np.sin(2 * np.pi * freq * t) * env + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def write_synthetic_study(out_dir: str | Path, systems: tuple[str, ...] = ("system-alpha", "system-beta"),
                          n_prompts: int = 4, clips_per_rater: int = 4, seconds: float = 0.25, sr: int = 16000,
                          n_gold: int = 1, n_attention: int = 1, n_training: int = 1, min_ratings_per_clip: int = 3,
                          extra: dict | None = None, reference: bool = False) -> Path:
    """Write the study and its clips under ``out_dir``; returns the study file path.

    ``reference=True`` also writes ``clips/reference/<prompt_id>.wav`` (a tone with broadband noise, so a low-pass
    anchor differs audibly) for MUSHRA pages; ``extra`` updates the study mapping (e.g. ``{"mushra": {...}}``).
    """
    import soundfile as sf
    import yaml

    out = Path(out_dir)
    prompts = [{"id": f"p{j:03d}", "text": f"a tone number {j} followed by silence"} for j in range(n_prompts)]
    sys_entries = []
    for i, name in enumerate(systems):
        d = out / "clips" / name
        d.mkdir(parents=True, exist_ok=True)
        for j, p in enumerate(prompts):
            sf.write(d / f"{p['id']}.wav", _tone(220.0 * (1 + i) + 20 * j, seconds, sr, 100 * i + j), sr)
        sys_entries.append({"name": name, "dir": f"clips/{name}"})
    if reference:
        d = out / "clips" / "reference"
        d.mkdir(parents=True, exist_ok=True)
        for j, p in enumerate(prompts):
            x = _tone(200.0 + 20 * j, seconds, sr, 900 + j)
            x += 0.05 * np.random.default_rng(950 + j).standard_normal(x.size).astype(np.float32)
            sf.write(d / f"{p['id']}.wav", x, sr)
    extra_dir = out / "clips" / "checks"
    extra_dir.mkdir(parents=True, exist_ok=True)

    def _clip(name: str, f: float) -> str:
        sf.write(extra_dir / name, _tone(f, seconds, sr, int(f)), sr)
        return f"clips/checks/{name}"

    study = {
        "name": "synthetic-study",
        "seed": 0,
        "systems": sys_entries,
        "prompts": prompts,
        "clips_per_rater": clips_per_rater,
        "min_ratings_per_clip": min_ratings_per_clip,
        "training": [{"file": _clip(f"training-{k}.wav", 300 + k), "text": "a tone followed by silence",
                      "note": "Clean tone, right order: rate 5 on both scales."} for k in range(n_training)],
        "gold": [{"id": f"gold{k}", "file": _clip(f"gold-{k}.wav", 500 + k), "text": "silence followed by a tone",
                  "expect": {"mos_t": [1, 2]}} for k in range(n_gold)],
        "attention_checks": [{"id": f"attn{k}", "file": _clip(f"attention-{k}.wav", 700 + k),
                              "text": "Attention check: select 2 on both scales for this clip.",
                              "expect": {"mos_r": 2, "mos_t": 2}} for k in range(n_attention)],
    }
    study.update(extra or {})
    path = out / "study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False), encoding="utf-8")
    return path
