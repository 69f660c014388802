"""Build a clip bank of real recordings from installed registry packages (and your own folders).

Output (``OUT`` is owned by the build; the folder-per-class layout every bank reader takes)::

    OUT/<label>/<name>.wav   one whole recording per file: mono, 16-bit, ``sr`` Hz, silence trimmed, peak -1 dBFS
    OUT/bank.json            every file's class, split, length, source package, path inside it, licence and
                             attribution; every rejected file with its reason; dropped classes; counts; settings
    OUT/heldout.txt          the held-out recordings (``label/name.wav``), read by every bank reader
    OUT/phrases.txt          ``label<TAB>phrase``, read by the folder reader for captions
    OUT/README.md            the table of classes, recordings, minutes and licences
    OUT/.work/               converted clips and the journal that lets an interrupted build resume

Two phases:

1. **Convert** each candidate recording (a file, an archive member, or a SoundFont sample) once, in a fixed order,
   into ``OUT/.work/<label>/<name>.wav`` and append its record to ``OUT/.work/journal.jsonl``. A re-run skips the
   recordings the journal holds (finished or rejected), so an interrupted build resumes where it stopped; other
   conversion settings on the same ``OUT`` are refused (one line).
2. **Choose** (a pure function of the journal, so its result does not depend on where a build was interrupted):
   drop later duplicates (same converted samples), drop classes left with fewer than ``min_per_class``
   recordings, keep at most ``max_per_class`` per class (by a hash of each recording's key), hold out
   ``max(min_heldout, round(heldout_fraction * n))`` whole recordings per class (again by a hash of the key), and
   hard-link the chosen clips into ``OUT/<label>/`` (a copy where links are not possible).

Bad input is handled, counted and listed (``bank.json`` ``rejected`` / ``dropped_classes`` / ``converted``, and the
printed summary): a licence nobody knows (never enters a bank), an unreadable file, a sample rate under
``min_rate`` (an 8 kHz telephone recording has nothing above 4 kHz; next to full-band clips a model could tell
the class by bandwidth alone), a silent file (peak under ``silence_dbfs`` before any gain), under ``min_seconds``
of sound once silence is trimmed, the same audio twice, a file that two classes claim, and a class with too few
recordings. Rates above 48 kHz are resampled (listed), 24-bit and float files are written at 16 bits (listed),
stereo is mixed to mono (listed; when the channels cancel in the mix, the left channel is kept instead), clips
longer than ``max_seconds`` are cut with a short fade (listed), and a SoundFont sample shorter than 1 s has its
sustain loop played to 1 s (listed), as a synthesiser plays the note.

Modules: :mod:`tclap.bank.config` (settings, reasons), :mod:`tclap.bank.sources` (what the table and your folders
name), :mod:`tclap.bank.convert` (phase 1), :mod:`tclap.bank.duplicates` and :mod:`tclap.bank.choice` (phase 2),
:mod:`tclap.bank.report` (summary and README); this module drives them, resumes, and writes ``OUT``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf

from basekit.atomic import atomic_path, atomic_write_text
from basekit.errors import UserError
from tclap.bank.choice import Choice, choose
from tclap.bank.config import FORMAT, BuildConfig
from tclap.bank.convert import convert
from tclap.bank.report import readme_text, summary_text
from tclap.bank.sources import gather
from tclap.bank.table import Table


@dataclass
class BuildReport:
    out: Path
    bank: dict
    converted_now: int = 0

    def summary(self) -> str:
        return summary_text(self.bank)


def _journal(work: Path) -> dict[str, dict]:
    j = work / "journal.jsonl"
    out: dict[str, dict] = {}
    if j.is_file():
        for line in j.read_text(encoding="utf-8").splitlines():
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by an interruption: that recording is converted again
            out[r["key"]] = r
    return out


def _check_settings(work: Path, cfg: BuildConfig) -> None:
    p = work / "settings.json"
    want = cfg.conversion()
    if p.is_file():
        have = json.loads(p.read_text(encoding="utf-8"))
        if have != want:
            diff = ", ".join(f"{k} {have.get(k)!r} -> {want[k]!r}" for k in want if have.get(k) != want[k])
            raise UserError(f"{work.parent} was built with other conversion settings ({diff}); use another --out or the same settings")
    else:
        work.mkdir(parents=True, exist_ok=True)
        atomic_write_text(p, json.dumps(want, indent=1) + "\n")


def _place_file(src: Path, dst: Path) -> None:
    if dst.exists():
        if os.path.samefile(src, dst):
            return
        dst.unlink()
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        with atomic_path(dst, suffix=".wav") as tmp:
            shutil.copyfile(src, tmp)


def build_bank(
    out: str | os.PathLike,
    cfg: BuildConfig = BuildConfig(),
    table: Table | None = None,
    add: list[str | os.PathLike] = (),
    root: str = "/",
    npm_prefix: str = ".",
    skip_missing: bool = False,
    do_install: bool = False,
    log: Callable[[str], None] = print,
) -> BuildReport:
    """Build (or resume) the bank in ``out``; ``table=None`` reads only the ``add`` folders."""
    cfg.check()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / ".work").is_dir():
        raise UserError(f"--out {out} is a non-empty folder that no bank build made; give a new or empty folder")
    if table is None and not add:
        raise UserError("nothing to build from: use the packaged table, or --add FOLDER with your own recordings")
    cands, phrases, missing, ambiguous = gather(table, [Path(a) for a in add], root, npm_prefix, skip_missing, do_install, log)
    if not cands and not ambiguous:
        raise UserError("no recordings found: are the packages installed (see 'tclap bank needs') and the --add folders filled?")
    work = out / ".work"
    _check_settings(work, cfg)
    journal = _journal(work)
    todo = [c for c in cands if not (c.key in journal and (journal[c.key]["status"] != "ok"
                                                           or (work / c.label / journal[c.key]["name"]).is_file()))]
    log(f"{len(cands)} recordings named, {len(cands) - len(todo)} already converted, {len(todo)} to convert")
    with (work / "journal.jsonl").open("a", encoding="utf-8") as jf:
        for i, c in enumerate(todo, 1):
            rec = convert(c, work, cfg)
            journal[c.key] = rec
            jf.write(json.dumps(rec) + "\n")
            jf.flush()
            if i % 200 == 0:
                log(f"  converted {i}/{len(todo)}")
    live = {c.key for c in cands}
    log("choosing: duplicates, class sizes, hold-out")

    def audio(r: dict) -> np.ndarray:
        return sf.read(str(work / r["label"] / r["name"]), dtype="float32")[0]

    choice = choose([r for k, r in journal.items() if k in live], cfg, audio=audio)
    bank = _finish(out, work, cfg, choice, phrases, missing, ambiguous)
    return BuildReport(out, bank, converted_now=len(todo))


def _finish(out: Path, work: Path, cfg: BuildConfig, ch: Choice, phrases: dict[str, str],
            missing: list[str], ambiguous: list[dict]) -> dict:
    files = []
    for label, rs in ch.files.items():
        for r in rs:
            _place_file(work / label / r["name"], out / label / r["name"])
            files.append({"file": f"{label}/{r['name']}", "label": label, "split": r["split"], "seconds": r["seconds"],
                          "package": r["package"], "path": r["path"], "licence": r["licence"],
                          "attribution": r["attribution"], "copyright": r["copyright"], "orig_rate": r["orig_rate"],
                          "orig_channels": r["orig_channels"], "orig_subtype": r["orig_subtype"], "notes": r["notes"]})
    # Anything else in the class folders is from an earlier choice (other caps, a class since dropped).
    for d in sorted(p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")):
        chosen = {r["name"] for r in ch.files.get(d.name, [])}
        for f in d.iterdir():
            if f.suffix == ".wav" and f.name not in chosen:
                f.unlink()
        if not any(d.iterdir()):
            d.rmdir()
    rejected = ambiguous + ch.rejected
    rej_list = [{"label": r["label"], "package": r["package"], "path": r["path"], "reason": r["reason"],
                 "detail": r["detail"]} for r in rejected]
    conv: dict[str, list[str]] = defaultdict(list)
    for f in files:
        for n in f["notes"]:
            conv[n].append(f["file"])
    classes = {}
    for label, rs in ch.files.items():
        mine = [f for f in files if f["label"] == label]
        classes[label] = {
            "phrase": phrases.get(label, label), "recordings": len(rs),
            "heldout": sum(r["split"] == "heldout" for r in rs), "minutes": round(sum(r["seconds"] for r in rs) / 60, 3),
            "packages": sorted({f["package"] for f in mine}), "licences": sorted({f["licence"] for f in mine}),
            "unused_over_cap": ch.unused.get(label, 0),
        }
    bank = {
        "format": FORMAT,
        "settings": asdict(cfg),
        "classes": classes,
        "files": files,
        "heldout": sorted(f["file"] for f in files if f["split"] == "heldout"),
        "rejected": rej_list,
        "dropped_classes": ch.dropped,
        "converted": {k: sorted(v) for k, v in sorted(conv.items())},
        "missing_packages": missing,
        "counts": {
            "classes": len(classes), "recordings": len(files),
            "heldout": sum(f["split"] == "heldout" for f in files),
            "minutes": round(sum(f["seconds"] for f in files) / 60, 2),
            "rejected": dict(sorted(Counter(r["reason"] for r in rej_list).items())),
            "converted": {k: len(v) for k, v in sorted(conv.items())},
            "unused_over_cap": sum(ch.unused.values()),
            "dropped_classes": len(ch.dropped),
        },
    }
    atomic_write_text(out / "heldout.txt", "".join(f"{h}\n" for h in bank["heldout"]))
    atomic_write_text(out / "phrases.txt", "".join(f"{k}\t{classes[k]['phrase']}\n" for k in sorted(classes)))
    atomic_write_text(out / "README.md", readme_text(bank))
    atomic_write_text(out / "bank.json", json.dumps(bank, indent=1) + "\n")
    return bank


__all__ = ["BuildReport", "build_bank"]
