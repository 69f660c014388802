"""The comparison tests of a study and their checks: CMOS and A/B pages (two systems on one prompt) and
MUSHRA pages (ITU-R BS.1534: every system, a hidden reference and low anchors on 0-100 sliders)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from demo.study.model import ID_RE, Prompt, System, find_clip
from demo.study.parse import Check, audio_problem, check_prompt_clips

CMOS_TYPES = ("cmos", "ab")
# A page with more conditions than this cannot be compared by ear (BS.1534 advises at most 12 plus the reference).
MAX_MUSHRA_CONDITIONS = 15

# ITU-T P.800 comparison category rating (CMOS): the second sample (B) against the first (A).
CMOS_LABELS = {3: "B much better than A", 2: "B better", 1: "B slightly better", 0: "About the same",
               -1: "B slightly worse", -2: "B worse", -3: "B much worse than A"}
CMOS_QUESTION = "Compared with A, how good is B?"
AB_QUESTION = "Which one do you prefer?"
MUSHRA_QUESTION = ("Rate each sound against the reference (0-100): 100 = as good as the reference. "
                   "One of them is the reference itself.")


@dataclass(frozen=True)
class CmosTest:
    """A/B pages: ``type`` cmos (-3..+3, B against A) or ab (choose A or B); ``pairs`` of system names."""

    type: str
    pairs: tuple[tuple[str, str], ...]
    pages_per_rater: int
    question: str


@dataclass(frozen=True)
class Anchor:
    """A MUSHRA low anchor: the reference low-passed at ``lowpass_hz``, or ready-made clips in ``dir``."""

    name: str
    lowpass_hz: int | None = None
    dir: Path | None = None


@dataclass(frozen=True)
class MushraTest:
    """MUSHRA pages (ITU-R BS.1534): per prompt the open reference, then ``systems``, the hidden reference and
    the anchors in a random order, each on a 0-100 slider."""

    reference_dir: Path
    anchors: tuple[Anchor, ...]
    systems: tuple[str, ...]
    pages_per_rater: int
    question: str

    def reference_path(self, prompt_id: str) -> Path | None:
        return find_clip(self.reference_dir, prompt_id)


def _check_pairs(c: Check, raw: Any, names: list[str]) -> tuple[tuple[str, str], ...]:
    if raw is None or raw == "all":
        return tuple((a, b) for i, a in enumerate(names) for b in names[i + 1:])
    pairs: list[tuple[str, str]] = []
    if not isinstance(raw, list) or not raw:
        c.add("`cmos.pairs` must be `all` or a list of [system, system] pairs")
        return ()
    for i, pr in enumerate(raw):
        if (not isinstance(pr, list) or len(pr) != 2 or not all(isinstance(x, str) for x in pr)
                or pr[0] == pr[1]):
            c.add(f"cmos.pairs[{i}]: must name two different systems, e.g. [{', '.join(names[:2])}]")
            continue
        unknown = [x for x in pr if x not in names]
        if unknown:
            c.add(f"cmos.pairs[{i}]: unknown system(s) {unknown}; systems are {names}")
            continue
        pairs.append((pr[0], pr[1]))
    keys = [" vs ".join(sorted(p)) for p in pairs]
    c.duplicates(keys, "cmos pair")
    return tuple(pairs)


def check_cmos(c: Check, systems: list[System], prompts: list[Prompt]) -> CmosTest | None:
    sec = c.section("cmos")
    if sec is None:
        return None
    c.unknown(sec, {"type", "pairs", "pages_per_rater", "question"}, "cmos")
    kind = sec.get("type", "cmos")
    if kind not in CMOS_TYPES:
        c.add(f"`cmos.type` must be cmos (-3..+3) or ab (choose A or B), got {kind!r}")
        kind = "cmos"
    names = [s.name for s in systems]
    if len(names) < 2:
        c.add("`cmos` compares two systems; the study needs at least two")
    pairs = _check_pairs(c, sec.get("pairs"), names)
    ppr = c.int_field("pages_per_rater", None, 1, sec, "cmos.")
    n_pages = len(pairs) * len(prompts)
    if n_pages and ppr > n_pages:
        c.add(f"`cmos.pages_per_rater` is {ppr} but there are only {n_pages} pages ({len(pairs)} pairs x "
              f"{len(prompts)} prompts); lower it")
    question = str(sec.get("question") or (CMOS_QUESTION if kind == "cmos" else AB_QUESTION))
    return CmosTest(kind, pairs, ppr, question)


def _check_anchor(c: Check, i: int, raw: Any, ref_dir: Path, prompts: list[Prompt]) -> Anchor | None:
    w = f"mushra.anchors[{i}]"
    if isinstance(raw, str):
        m = re.fullmatch(r"lowpass:(\d+)", raw.strip())
        if not m or int(m.group(1)) < 100:
            c.add(f"{w}: {raw!r} is not an anchor; write lowpass:HZ (e.g. lowpass:3500) or {{name, dir}}")
            return None
        hz = int(m.group(1))
        import soundfile as sf

        for p in prompts:
            ref = find_clip(ref_dir, p.id)
            if ref is not None and audio_problem(ref) is None and hz >= sf.info(str(ref)).samplerate / 2:
                c.add(f"{w}: lowpass:{hz} is not below the Nyquist frequency of {ref}; choose a lower cut-off")
                break
        return Anchor(f"anchor-lp{hz}", lowpass_hz=hz)
    if not isinstance(raw, dict) or not isinstance(raw.get("dir"), str) or not isinstance(raw.get("name"), str) \
            or not ID_RE.match(raw["name"]):
        c.add(f"{w}: needs `name` (letters, digits, -_.) and `dir` (a folder of <prompt_id>.wav anchors)")
        return None
    d = (c.root / raw["dir"]).resolve()
    if not d.is_dir():
        c.add(f"{w}: folder {d} does not exist; fix `dir` (relative to the study file)")
        return None
    check_prompt_clips(c, d, prompts, f"anchor {raw['name']!r}")
    return Anchor(raw["name"], dir=d)


def check_mushra(c: Check, systems: list[System], prompts: list[Prompt]) -> MushraTest | None:
    sec = c.section("mushra")
    if sec is None:
        return None
    c.unknown(sec, {"reference", "anchors", "systems", "pages_per_rater", "question"}, "mushra")
    ref = sec.get("reference")
    ref_dir = (c.root / ref).resolve() if isinstance(ref, str) else c.root
    if not isinstance(ref, str) or not ref_dir.is_dir():
        c.add(f"`mushra.reference` must be the folder of reference clips <prompt_id>.wav, got {ref!r}")
    else:
        check_prompt_clips(c, ref_dir, prompts, "the MUSHRA reference folder")
    names = [s.name for s in systems]
    chosen = sec.get("systems", "all")
    if chosen == "all":
        chosen = names
    elif not isinstance(chosen, list) or not chosen or any(x not in names for x in chosen):
        c.add(f"`mushra.systems` must be `all` or a list of system names from {names}, got {chosen!r}")
        chosen = names
    raw_anchors = sec.get("anchors", ["lowpass:3500"])
    if not isinstance(raw_anchors, list):
        c.add("`mushra.anchors` must be a list, e.g. [lowpass:3500]")
        raw_anchors = []
    anchors = [a for a in (_check_anchor(c, i, a, ref_dir, prompts) for i, a in enumerate(raw_anchors)) if a]
    c.duplicates([a.name for a in anchors] + ["reference"] + list(chosen), "MUSHRA condition name")
    if len(chosen) + 1 + len(anchors) > MAX_MUSHRA_CONDITIONS:
        c.add(f"a MUSHRA page would hold {len(chosen) + 1 + len(anchors)} sounds; at most {MAX_MUSHRA_CONDITIONS} "
              "can be compared by ear: list fewer `mushra.systems`")
    ppr = c.int_field("pages_per_rater", None, 1, sec, "mushra.")
    if prompts and ppr > len(prompts):
        c.add(f"`mushra.pages_per_rater` is {ppr} but there are only {len(prompts)} prompts (one page each)")
    return MushraTest(ref_dir, tuple(anchors), tuple(chosen), ppr, str(sec.get("question") or MUSHRA_QUESTION))
