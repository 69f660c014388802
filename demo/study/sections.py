"""One short named check per section of a study file: scales, systems, prompts and their clips, the tests
run, the ACR counts, training / gold / attention clips, loudness and screening.

Each takes the :class:`~demo.study.parse.Check`, adds a problem per fault and returns the parsed value (a
usable stand-in when the section is wrong, so the later checks still run). The access and completion
sections are in :mod:`demo.study.raters`, the comparison tests in :mod:`demo.study.comparisons`."""

from __future__ import annotations

import math
from typing import Any

from basekit.errors import UserError
from demo.study.model import (
    DEFAULT_SCALES,
    ID_RE,
    CheckClip,
    Loudness,
    Prompt,
    Scale,
    System,
    TrainingExample,
)
from demo.study.parse import Check, audio_problem, check_prompt_clips, parse_expect
from demo.study.screening import ScreeningRules, parse_screening

TESTS = ("acr", "cmos", "mushra")


def _check_scale(c: Check, i: int, s: Any) -> Scale | None:
    w = f"scales[{i}]"
    if not isinstance(s, dict) or not isinstance(s.get("name"), str) or not ID_RE.match(s.get("name", "")):
        c.add(f"{w}: needs a `name` made of letters, digits, '-', '_' or '.'")
        return None
    labels = s.get("labels")
    if labels is None:
        labels = {d.name: d.labels for d in DEFAULT_SCALES}.get(s["name"])
    try:
        labels = {int(k): str(v) for k, v in (labels or {}).items()}
    except (TypeError, ValueError, AttributeError):
        labels = {}
    if sorted(labels) != [1, 2, 3, 4, 5]:
        c.add(f"{w} ({s['name']}): `labels` must give a label for each of 1, 2, 3, 4, 5")
        return None
    return Scale(s["name"], str(s.get("question") or s["name"]), labels)


def check_scales(c: Check) -> list[Scale]:
    raw = c.raw.get("scales")
    if raw is None:
        return list(DEFAULT_SCALES)
    if not isinstance(raw, list) or not raw:
        c.add("`scales` must be a non-empty list of {name, question, labels}")
        return []
    scales = [s for s in (_check_scale(c, i, s) for i, s in enumerate(raw)) if s is not None]
    c.duplicates([s.name for s in scales], "scale name")
    return scales


def check_systems(c: Check) -> list[System]:
    raw = c.raw.get("systems")
    if not isinstance(raw, list) or not raw:
        c.add("`systems` must be a non-empty list of {name, dir}")
        return []
    systems = []
    for i, s in enumerate(raw):
        if not isinstance(s, dict) or not isinstance(s.get("name"), str) or not s["name"].strip():
            c.add(f"systems[{i}]: needs a `name` (the system's label in reports)")
            continue
        if not isinstance(s.get("dir"), str):
            c.add(f"systems[{i}] ({s['name']}): needs a `dir`, the folder of its clips named <prompt_id>.wav")
            continue
        d = (c.root / s["dir"]).resolve()
        if not d.is_dir():
            c.add(f"systems[{i}] ({s['name']}): folder {d} does not exist; fix `dir` (relative to the study file)")
        systems.append(System(s["name"].strip(), d))
    c.duplicates([s.name for s in systems], "system name")
    return systems


def check_prompts(c: Check) -> list[Prompt]:
    raw = c.raw.get("prompts")
    if not isinstance(raw, list) or not raw:
        c.add("`prompts` must be a non-empty list of {id, text}")
        return []
    prompts = []
    for i, p in enumerate(raw):
        pid = str(p.get("id")) if isinstance(p, dict) and p.get("id") is not None else ""
        if not ID_RE.match(pid):
            c.add(f"prompts[{i}]: needs an `id` of letters, digits, '-', '_' or '.' (it names the clip files)")
            continue
        if not isinstance(p.get("text"), str) or not p["text"].strip():
            c.add(f"prompts[{i}] ({pid}): needs the prompt `text` shown to raters")
            continue
        prompts.append(Prompt(pid, p["text"].strip()))
    c.duplicates([p.id for p in prompts], "prompt id")
    return prompts


def check_main_clips(c: Check, systems: list[System], prompts: list[Prompt]) -> None:
    for s in systems:
        if s.dir.is_dir():
            check_prompt_clips(c, s.dir, prompts, f"system {s.name!r}")


def check_tests(c: Check) -> tuple[str, ...]:
    raw = c.raw.get("tests")
    if raw is None:
        return ("acr",) + tuple(t for t in ("cmos", "mushra") if c.raw.get(t) is not None)
    if not isinstance(raw, list) or not raw or any(t not in TESTS for t in raw) or len(set(raw)) != len(raw):
        c.add(f"`tests` must be a list of distinct test names from {list(TESTS)}, got {raw!r}")
        return ("acr",)
    for t in ("cmos", "mushra"):
        if t in raw and c.raw.get(t) is None:
            c.add(f"`tests` lists {t} but the study has no `{t}` section; add one (see docs/mos.md)")
        if t not in raw and c.raw.get(t) is not None:
            c.add(f"the study has a `{t}` section but `tests` does not list {t}; add it or remove the section")
    return tuple(raw)


def check_acr_counts(c: Check, systems: list[System], prompts: list[Prompt], tests: tuple[str, ...]) -> int:
    """``clips_per_rater``: required for ACR pages, at most the number of system × prompt clips."""
    if "acr" not in tests:
        if c.raw.get("clips_per_rater") is not None:
            c.add("`clips_per_rater` counts ACR clips but `tests` has no acr; remove it or add acr")
        for k in ("gold", "attention_checks"):
            if c.raw.get(k):
                c.add(f"`{k}` clips are rated on ACR pages but `tests` has no acr; remove them or add acr")
        return 0
    n_main = len(systems) * len(prompts)
    cpr = c.int_field("clips_per_rater", None, 1)
    if n_main and cpr > n_main:
        c.add(f"`clips_per_rater` is {cpr} but the study has only {n_main} clips "
              f"({len(systems)} systems x {len(prompts)} prompts); lower it")
    return cpr


def check_clip_list(c: Check, key: str, scale_names: set[str]) -> list:
    """``training`` (files with a text and a note) or ``gold`` / ``attention_checks`` (with ``expect``)."""
    items = c.raw.get(key) or []
    if not isinstance(items, list):
        c.add(f"`{key}` must be a list")
        return []
    out, seen = [], set()
    kind = {"attention_checks": "attention"}.get(key, key)
    for i, item in enumerate(items):
        w = f"{key}[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("file"), str):
            c.add(f"{w}: needs a `file` (audio path relative to the study file)")
            continue
        f = (c.root / item["file"]).resolve()
        bad = audio_problem(f)
        if bad:
            c.add(f"{w}: {f} {bad}")
        text = str(item.get("text") or "").strip()
        if key == "training":
            out.append(TrainingExample(f, text, str(item.get("note") or "").strip()))
            continue
        cid = str(item.get("id") or f"{kind}{i}")
        if not ID_RE.match(cid) or cid in seen:
            c.add(f"{w}: `id` {cid!r} must be unique and made of letters, digits, '-', '_' or '.'")
        seen.add(cid)
        if not text:
            c.add(f"{w}: needs the `text` shown with the clip")
        problems: list[str] = []
        expect = parse_expect(item.get("expect"), scale_names, w, problems)
        for p in problems:
            c.add(p)
        out.append(CheckClip(cid, f, text, expect))
    return out


def check_loudness(c: Check) -> Loudness | None:
    raw = c.raw.get("loudness")
    if raw in ("off", False):
        return None
    if raw is None:
        return Loudness()
    if not isinstance(raw, dict):
        c.add(f"`loudness` must be `off` or a mapping like {{target_lufs: -23}}, got {raw!r}")
        return Loudness()
    c.unknown(raw, {"target_lufs", "ceiling_dbfs", "max_gain_db"}, "loudness")
    d = Loudness()
    vals = {}
    for k, lo, hi in (("target_lufs", -70.0, -5.0), ("ceiling_dbfs", -30.0, 0.0), ("max_gain_db", 0.0, 60.0)):
        v = raw.get(k, getattr(d, k))
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
            c.add(f"`loudness.{k}` must be a number in [{lo:g}, {hi:g}], got {v!r}")
            v = getattr(d, k)
        vals[k] = float(v)
    if vals["ceiling_dbfs"] >= 0:
        c.add("`loudness.ceiling_dbfs` must be below 0 dBFS (full scale), e.g. -1")
    return Loudness(**vals)


def check_screening(c: Check) -> ScreeningRules:
    if c.raw.get("screening") is None:
        return ScreeningRules()
    try:
        return parse_screening(c.raw["screening"])
    except UserError as exc:
        c.add(str(exc))
        return ScreeningRules()
