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
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
import os
import re
import shutil
import zipfile
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import soundfile as sf

from basekit.atomic import atomic_path, atomic_write_text
from basekit.audio import peak_dbfs, resample
from basekit.errors import UserError
from tclap.bank import packages as pkgs
from tclap.bank.rcc import ResourceFile
from tclap.bank.sf2 import read_sf2, sample_audio
from tclap.bank.table import Source, Table, expand_braces, glob_regex, licence_known, load_table, parse_sf2_pattern
from tclap.data.banks import trim_silence

FORMAT = "tclap-bank/1"
READ_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3")
#: a SoundFont note shorter than this is played on its loop up to it.
SF2_MIN_SECONDS = 1.0
FADE_SECONDS = 0.05
PEAK = 10 ** (-1 / 20)  # -1 dBFS: 16-bit files never clip
HIGH_RATE = 48000
FINGERPRINT_SR = 4000
#: normalised cross-correlation at or above which one clip counts as a copy or excerpt of another.
NEAR_DUPLICATE = 0.97
#: every reason a recording is left out, in the order the summary lists them.
REJECT_REASONS = {
    "licence_unknown": "licence unknown",
    "unreadable": "cannot be decoded",
    "low_rate": "sample rate below the minimum",
    "silent": "silent",
    "too_short": "too short after trimming silence",
    "duplicate": "same audio as another recording",
    "ambiguous_label": "claimed by two classes",
    "class_too_small": "its class has too few recordings",
}
CONVERSIONS = {
    "high_rate": "resampled down from above 48 kHz",
    "deep_bits": "24-bit / 32-bit / float written at 16 bits",
    "stereo": "several channels mixed to mono",
    "stereo_cancel": "channels cancel when mixed: left channel kept",
    "looped": "SoundFont loop played to 1 s",
    "cropped": "cut to the longest clip length",
}


@dataclass(frozen=True)
class BuildConfig:
    """Settings of one bank build (the conversion ones are fixed for an output folder; the choice ones are not).

    Attributes:
        sr: sample rate of the written clips.
        min_rate: recordings below this rate are rejected.
        min_seconds: least sound left after trimming silence.
        max_seconds: longer recordings are cut (a clip bank holds events, not soundscapes).
        trim_db: leading/trailing 10 ms frames this far below the loudest frame are trimmed.
        silence_dbfs: a recording whose peak is below this is silent.
        min_per_class: classes with fewer usable recordings are dropped (at least ``min_heldout + 2``, so that
            training keeps two recordings).
        max_per_class: at most this many recordings per class are kept.
        heldout_fraction / min_heldout: held-out recordings per class: ``max(min_heldout, round(f * n))``.
    """

    sr: int = 32000
    min_rate: int = 16000
    min_seconds: float = 0.25
    max_seconds: float = 10.0
    trim_db: float = 40.0
    silence_dbfs: float = -60.0
    min_per_class: int = 6
    max_per_class: int = 60
    heldout_fraction: float = 0.2
    min_heldout: int = 2

    def conversion(self) -> dict:
        """The settings that change the converted clips (a resumed build must use the same)."""
        keys = ("sr", "min_rate", "min_seconds", "max_seconds", "trim_db", "silence_dbfs")
        return {"format": FORMAT, **{k: getattr(self, k) for k in keys}}

    def check(self) -> None:
        if self.sr < 8000:
            raise UserError(f"--sr {self.sr}: use at least 8000 Hz")
        if self.min_heldout < 1:
            raise UserError("--min-heldout must be at least 1")
        if self.min_per_class < self.min_heldout + 2:
            raise UserError(
                f"--min-per-class {self.min_per_class} must be at least --min-heldout + 2 = {self.min_heldout + 2} "
                "(held-out recordings plus two for training)"
            )
        if self.max_per_class < self.min_per_class:
            raise UserError(f"--max-per-class {self.max_per_class} is below --min-per-class {self.min_per_class}")
        if not 0 <= self.heldout_fraction < 1:
            raise UserError(f"--heldout-fraction {self.heldout_fraction} must be in [0, 1)")
        if not 0 < self.min_seconds < self.max_seconds:
            raise UserError("need 0 < --min-seconds < --max-seconds")


class Rejected(Exception):
    """A recording that cannot enter the bank: ``reason`` (a key of REJECT_REASONS) and a detail line."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


@dataclass
class Candidate:
    """One recording a source names: where it is and how to read it as ``([C, T] float32, rate, notes)``."""

    label: str
    key: str  # stable identity: "apt:PKG:/path", "apt:PKG:/x.zip!member", "apt:PKG:/x.sf2#sample=N"
    package: str  # "apt:PKG", "local:FOLDER"
    path: str  # human-readable location inside the package
    licence: str
    attribution: str
    copyright: str | None
    read: Callable[[], tuple[np.ndarray, int, str, list[str]]]


# ---------------------------------------------------------------------------------------------- reading


def _decode(data: bytes | str, what: str) -> tuple[np.ndarray, int, str, list[str]]:
    try:
        src = io.BytesIO(data) if isinstance(data, bytes) else data
        x, rate = sf.read(src, dtype="float32", always_2d=True)
        if isinstance(data, bytes):
            src.seek(0)
        subtype = sf.info(src).subtype
    except Exception as exc:  # soundfile raises several types for corrupt input
        raise Rejected("unreadable", f"{what}: {str(exc).splitlines()[0][:100]}") from None
    if x.shape[0] == 0:
        raise Rejected("unreadable", f"{what}: no samples")
    return x.T.copy(), int(rate), subtype, []


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")[:60] or "clip"


def clip_name(c: Candidate) -> str:
    """``<package>_<stem>_<8 hex of the key>.wav``: readable, stable across builds, unique per key."""
    stem = re.split(r"[/!#]", c.path)[-1]
    stem = stem.rsplit(".", 1)[0] if "." in stem else stem
    pkg = c.package.split(":", 1)[1]
    return f"{_slug(pkg)}_{_slug(stem)}_{hashlib.sha1(c.key.encode()).hexdigest()[:8]}.wav"


class _Cache:
    """Open archives and fonts, shared by the rows that name the same container."""

    def __init__(self) -> None:
        self.zips: dict[str, zipfile.ZipFile] = {}
        self.rccs: dict[str, ResourceFile] = {}
        self.fonts: dict[str, object] = {}

    def zip(self, path: Path) -> zipfile.ZipFile:
        k = str(path)
        if k not in self.zips:
            if not path.is_file():
                raise UserError(f"archive not found: {path} (is its package fully installed?)")
            try:
                self.zips[k] = zipfile.ZipFile(path)
            except zipfile.BadZipFile:
                raise UserError(f"{path} is not a readable zip archive (re-install its package)") from None
        return self.zips[k]

    def rcc(self, path: Path) -> ResourceFile:
        k = str(path)
        if k not in self.rccs:
            self.rccs[k] = ResourceFile(path)
        return self.rccs[k]

    def font(self, path: Path):
        k = str(path)
        if k not in self.fonts:
            self.fonts[k] = read_sf2(path)
        return self.fonts[k]


def _in_package(place: pkgs.Place, manager: str, rel: str) -> Path:
    return place.base / rel.lstrip("/") if manager == "apt" else place.base / rel


def source_candidates(src: Source, place: pkgs.Place, cache: _Cache) -> Iterator[Candidate]:
    """The recordings one table row names, in a fixed order."""
    exclude = glob_regex(src.exclude) if src.exclude else None
    cp = str(place.copyright) if place.copyright else None

    def cand(key_path: str, shown: str, read) -> Candidate:
        return Candidate(src.label, f"{src.spec}:{key_path}", src.spec, shown, src.licence, src.attribution, cp, read)

    if src.kind == "file":
        base = str(place.base).rstrip("/")
        found = set()
        for alt in expand_braces(src.pattern):
            pat = alt if src.manager == "apt" else "/" + alt
            found.update(glob.glob(glob.escape(base) + pat, recursive=True))
        for f in sorted(found):
            shown = f[len(base):] if src.manager == "apt" else f[len(base) + 1 :]
            if not os.path.isfile(f) or not f.lower().endswith(READ_EXTENSIONS):
                continue
            if exclude and exclude.match(shown):
                continue
            yield cand(shown, shown, lambda f=f, shown=shown: _decode(f, shown))
        return
    container = _in_package(place, src.manager, src.container)
    if src.kind in ("zip", "rcc"):
        arc = cache.zip(container) if src.kind == "zip" else cache.rcc(container)
        names = arc.namelist() if src.kind == "zip" else arc.names()
        rx = glob_regex(src.pattern)
        for n in sorted(names):
            if not rx.match(n) or (exclude and exclude.match(n)) or not n.lower().endswith(READ_EXTENSIONS):
                continue
            shown = f"{src.container}!{n}"
            yield cand(shown, shown, lambda arc=arc, n=n, shown=shown: _decode(arc.read(n), shown))
        return
    # sf2
    font = cache.font(container)
    bank, progs, keys = parse_sf2_pattern(src.pattern, src.line)
    have = sorted({p.program for p in font.presets if p.bank == bank})
    programs = have if progs is None else [p for p in progs if p in have]
    if progs is not None and len(progs) == 1 and not programs:
        font.preset(bank, progs[0])  # one named program that the font lacks: say so
    seen: set[int] = set()
    for program in programs:
        for key in keys or (None,):
            for idx in font.sample_indices(bank, program, key):
                if idx in seen:
                    continue
                seen.add(idx)
                s = font.samples[idx]
                shown = f"{src.container}#{font.preset(bank, program).name}/{s.name}"

                def read(idx=idx):
                    x, rate, looped = sample_audio(font, idx, min_seconds=SF2_MIN_SECONDS)
                    return x[None, :], rate, "PCM_16", ["looped"] if looped else []

                yield cand(f"{src.container}#sample={idx}", shown, read)


def local_candidates(folder: Path, table_phrases: dict[str, str]) -> tuple[list[Candidate], dict[str, str]]:
    """Your own recordings: ``FOLDER/<label>/*.wav|flac|ogg|mp3`` with licences in ``FOLDER/licences.txt``.

    ``licences.txt`` lines are ``GLOB<TAB>LICENCE<TAB>ATTRIBUTION`` with globs relative to ``FOLDER``
    (``dog_bark/*.wav``); the first matching line gives a file its licence. A file that no line matches has an
    unknown licence and stays out of the bank. ``FOLDER/phrases.txt`` (``label<TAB>phrase``) names new classes'
    phrases; without one a class is captioned "a <label>".
    """
    from tclap.data.banks import _default_phrase, read_phrases

    if not folder.is_dir():
        raise UserError(f"--add folder not found: {folder} (give a folder with one sub-folder per class)")
    rules: list[tuple[re.Pattern, str, str]] = []
    lic = folder / "licences.txt"
    if lic.is_file():
        for lineno, line in enumerate(lic.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            cols = [c.strip() for c in line.split("\t")]
            if len(cols) < 2:
                raise UserError(f"{lic}:{lineno}: expected 'GLOB<TAB>LICENCE<TAB>ATTRIBUTION'")
            rules.append((glob_regex(cols[0]), cols[1], cols[2] if len(cols) > 2 else ""))
    phrases = read_phrases(folder / "phrases.txt") if (folder / "phrases.txt").is_file() else {}
    spec = f"local:{folder.name}"
    out, new_phrases = [], {}
    for d in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        label = d.name
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", label):
            raise UserError(f"class folder {d}: use letters, digits, '_' and '-' in class names")
        new_phrases[label] = phrases.get(label) or table_phrases.get(label) or _default_phrase(label)
        for f in sorted(p for p in d.iterdir() if p.is_file() and not p.name.startswith(".")):
            if not f.name.lower().endswith(READ_EXTENSIONS):
                continue
            rel = f"{label}/{f.name}"
            licence, attribution = next(((l, a) for rx, l, a in rules if rx.match(rel)), ("unknown", ""))
            out.append(Candidate(label, f"{spec}:{rel}", spec, rel, licence, attribution,
                                 str(lic) if lic.is_file() else None, lambda f=f, rel=rel: _decode(str(f), rel)))
    return out, new_phrases


# ---------------------------------------------------------------------------------------------- converting


def condition(x: np.ndarray, rate: int, cfg: BuildConfig) -> tuple[np.ndarray, list[str]]:
    """``[C, T]`` at ``rate`` -> mono float32 ``[T']`` at ``cfg.sr``, trimmed, cut, peak -1 dBFS; and notes.

    Raises :class:`Rejected` for a low rate, non-finite samples, silence, or too little sound.
    """
    notes: list[str] = []
    if rate < cfg.min_rate:
        raise Rejected("low_rate", f"{rate} Hz is below the minimum of {cfg.min_rate} Hz")
    if not np.all(np.isfinite(x)):
        raise Rejected("unreadable", "holds NaN or infinite samples")
    if x.shape[0] > 1:
        mono = x.mean(axis=0)
        # Out-of-phase channels (a "wide" effect) cancel in the mix: keep one channel rather than a residue.
        if np.mean(mono.astype(np.float64) ** 2) < 0.25 * np.mean(x.astype(np.float64) ** 2):
            mono = x[0]
            notes.append("stereo_cancel")
        else:
            notes.append("stereo")
    else:
        mono = x[0]
    level = peak_dbfs(mono)
    if level < cfg.silence_dbfs:
        shown = "no signal" if not np.any(mono) else f"peak {level:.1f} dBFS"
        raise Rejected("silent", f"{shown}, below {cfg.silence_dbfs:g} dBFS")
    if rate > HIGH_RATE:
        notes.append("high_rate")
    y = resample(mono, rate, cfg.sr) if rate != cfg.sr else mono.astype(np.float32)
    y = trim_silence(y, cfg.sr, cfg.trim_db)
    if len(y) < cfg.min_seconds * cfg.sr:
        raise Rejected("too_short", f"{len(y) / cfg.sr:.3f} s of sound after trimming silence (at least {cfg.min_seconds:g} s)")
    n_max = int(round(cfg.max_seconds * cfg.sr))
    if len(y) > n_max:
        y = y[:n_max].copy()
        fade = int(FADE_SECONDS * cfg.sr)
        y[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
        notes.append("cropped")
    y = (y * (PEAK / float(np.max(np.abs(y))))).astype(np.float32)
    return y, notes


def _pcm16(y: np.ndarray) -> np.ndarray:
    return np.clip(np.round(y * 32767.0), -32768, 32767).astype("<i2")


def convert(c: Candidate, work: Path, cfg: BuildConfig) -> dict:
    """Convert one candidate into ``work/<label>/<name>.wav``; its journal record (``status`` ok or rejected)."""
    rec = {"key": c.key, "label": c.label, "package": c.package, "path": c.path, "licence": c.licence,
           "attribution": c.attribution, "copyright": c.copyright, "name": clip_name(c)}
    try:
        if not licence_known(c.licence):
            raise Rejected("licence_unknown", "no licence is known for this file (add one to licences.txt or the table)")
        x, rate, subtype, notes = c.read()
        rec.update(orig_rate=rate, orig_channels=int(x.shape[0]), orig_subtype=subtype,
                   orig_seconds=round(x.shape[1] / rate, 4))
        y, more = condition(x, rate, cfg)
    except Rejected as r:
        return {**rec, "status": "rejected", "reason": r.reason, "detail": r.detail}
    if subtype not in ("PCM_16", "PCM_S8", "PCM_U8", "VORBIS", "OPUS", "MPEG_LAYER_III", "ULAW", "ALAW", "GSM610"):
        notes = notes + ["deep_bits"]
    pcm = _pcm16(y)
    out = work / c.label / rec["name"]
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out, suffix=".wav") as tmp:
        sf.write(str(tmp), pcm, cfg.sr, subtype="PCM_16")
    return {**rec, "status": "ok", "seconds": round(len(pcm) / cfg.sr, 4), "notes": notes + more,
            "sha1": hashlib.sha1(pcm.tobytes()).hexdigest()}


# ---------------------------------------------------------------------------------------------- choosing


def _rank(tag: str, key: str) -> str:
    return hashlib.sha1(f"{tag}:{key}".encode()).hexdigest()


@dataclass
class Choice:
    """What phase 2 decided: files per class (with split), and everything left out."""

    files: dict[str, list[dict]] = field(default_factory=dict)
    rejected: list[dict] = field(default_factory=list)
    dropped: list[dict] = field(default_factory=list)
    unused: dict[str, int] = field(default_factory=dict)


def match_score(a: np.ndarray, b: np.ndarray) -> float:
    """Largest normalised cross-correlation of the shorter clip against every position in the longer one.

    1.0 when one clip is a (scaled) excerpt of the other; a lossy re-encoding of the same recording stays close
    to 1 at low frequencies, where :func:`_fingerprint` looks. ``a``, ``b``: ``[T]`` float arrays.
    """
    from scipy.signal import fftconvolve

    if len(a) > len(b):
        a, b = b, a
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    na = float(np.sqrt(np.sum(a * a)))
    if na == 0 or len(a) == 0:
        return 0.0
    c = fftconvolve(b, a[::-1], mode="valid")
    csum = np.concatenate([[0.0], np.cumsum(b * b)])
    win = np.sqrt(np.maximum(csum[len(a):] - csum[: len(b) - len(a) + 1], 0.0))  # energy of each window of b
    ok = win > 1e-9 * na
    return float(np.max(np.abs(c[ok]) / (na * win[ok]))) if ok.any() else 0.0


def _fingerprint(y: np.ndarray, sr: int) -> np.ndarray:
    """The clip at 4 kHz: the band where lossy codecs keep the waveform."""
    return resample(y, sr, FINGERPRINT_SR) if sr != FINGERPRINT_SR else y


def choose(records: list[dict], cfg: BuildConfig, audio: Callable[[dict], np.ndarray] | None = None) -> Choice:
    """Duplicates, class sizes, the per-class cap and the hold-out, from the journal records (and their clips).

    Exact duplicates share the converted samples (``sha1``). With ``audio`` (record -> ``[T]`` clip at ``cfg.sr``)
    a recording that is a copy or an excerpt of an earlier one of its class (:func:`match_score` at least
    ``NEAR_DUPLICATE``: one package re-encoding or cutting another's file) is a duplicate too, so that no part of a
    held-out recording is trained on.
    """
    ch = Choice()
    by_label: dict[str, list[dict]] = defaultdict(list)
    seen_audio: dict[str, str] = {}
    for r in sorted(records, key=lambda r: r["key"]):
        if r["status"] != "ok":
            ch.rejected.append(r)
            continue
        if r["sha1"] in seen_audio:
            ch.rejected.append({**r, "status": "rejected", "reason": "duplicate", "detail": f"same audio as {seen_audio[r['sha1']]}"})
            continue
        seen_audio[r["sha1"]] = f"{r['package']} {r['path']}"
        by_label[r["label"]].append(r)
    if audio is not None:
        for label in sorted(by_label):
            kept: list[tuple[dict, np.ndarray]] = []
            for r in by_label[label]:
                fp = _fingerprint(audio(r), cfg.sr)
                hit = next(((k, sc) for k, kfp in kept if (sc := match_score(fp, kfp)) >= NEAR_DUPLICATE), None)
                if hit is None:
                    kept.append((r, fp))
                else:
                    ch.rejected.append({**r, "status": "rejected", "reason": "duplicate",
                                        "detail": f"copy or excerpt of {hit[0]['package']} {hit[0]['path']} (match {hit[1]:.3f})"})
            by_label[label] = [k for k, _ in kept]
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


# ---------------------------------------------------------------------------------------------- the build


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


def gather(table: Table | None, add: list[Path], root: str, npm_prefix: str, skip_missing: bool,
           do_install: bool, log: Callable[[str], None]) -> tuple[list[Candidate], dict[str, str], list[str], list[dict]]:
    """All candidates, phrases, missing packages (when skipped), and ambiguous-label rejections."""
    phrases: dict[str, str] = dict(table.phrases) if table else {}
    cands: list[Candidate] = []
    missing: list[str] = []
    if table is not None:
        need = table.packages()
        places = {mp: pkgs.locate(*mp, root=root, npm_prefix=npm_prefix) for mp in need}
        absent = [mp for mp, pl in places.items() if pl is None]
        if absent and do_install:
            pkgs.install(absent, npm_prefix=npm_prefix, log=log)
            places = {mp: pkgs.locate(*mp, root=root, npm_prefix=npm_prefix) for mp in need}
            absent = [mp for mp, pl in places.items() if pl is None]
        if absent and not skip_missing:
            cmds = "; ".join(pkgs.format_command(c) for c in pkgs.install_commands(absent, npm_prefix))
            raise UserError(
                f"the bank needs {len(absent)} package(s) that are not installed: {cmds} "
                "(re-run with --install to run it, or --skip-missing to build from what is here)"
            )
        missing = [f"{m}:{n}" for m, n in absent]
        cache = _Cache()
        for src in table.sources:
            place = places[(src.manager, src.package)]
            if place is not None:
                cands.extend(source_candidates(src, place, cache))
    for folder in add:
        more, ph = local_candidates(Path(folder), phrases)
        cands.extend(more)
        for k, v in ph.items():
            phrases.setdefault(k, v)
    labels_of: dict[str, set[str]] = defaultdict(set)
    for c in cands:
        labels_of[c.key].add(c.label)
    ambiguous = []
    unique: dict[str, Candidate] = {}
    for c in cands:
        if len(labels_of[c.key]) > 1:
            if c.key not in unique:
                ambiguous.append({"key": c.key, "label": "/".join(sorted(labels_of[c.key])), "package": c.package,
                                  "path": c.path, "licence": c.licence, "status": "rejected", "reason": "ambiguous_label",
                                  "detail": f"named by the classes {sorted(labels_of[c.key])}: fix the table"})
                unique[c.key] = c
            continue
        unique.setdefault(c.key, c)  # the same file named twice for one class is one recording
    keep = [c for c in unique.values() if len(labels_of[c.key]) == 1]
    return sorted(keep, key=lambda c: c.key), phrases, missing, ambiguous


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


# ---------------------------------------------------------------------------------------------- reports


def class_table(bank: dict) -> str:
    """The Markdown table of classes: phrase, recordings, held out, minutes, packages, licences."""
    rows = ["| class | phrase | recordings | held out | minutes | packages | licences |",
            "| --- | --- | ---: | ---: | ---: | --- | --- |"]
    for label, c in sorted(bank["classes"].items()):
        pk = ", ".join(p.split(":", 1)[1] for p in c["packages"])
        rows.append(f"| {label} | {c['phrase']} | {c['recordings']} | {c['heldout']} | {c['minutes']:.2f} | {pk} | {', '.join(c['licences'])} |")
    n = bank["counts"]
    rows.append(f"| **{n['classes']} classes** | | **{n['recordings']}** | **{n['heldout']}** | **{n['minutes']:.2f}** | | |")
    return "\n".join(rows) + "\n"


def _left_out_lines(bank: dict, limit: int) -> list[str]:
    lines = []
    by_reason = defaultdict(list)
    for r in bank["rejected"]:
        by_reason[r["reason"]].append(r)
    for reason, text in REJECT_REASONS.items():
        rs = by_reason.get(reason, [])
        if not rs:
            continue
        lines.append(f"- {text} ({reason}): {len(rs)}")
        for r in rs[:limit]:
            lines.append(f"  - {r['package']} {r['path']} [{r['label']}]: {r['detail']}")
        if len(rs) > limit:
            lines.append(f"  - ... and {len(rs) - limit} more (bank.json lists them all)")
    for d in bank["dropped_classes"]:
        lines.append(f"- class {d['label']} dropped: {d['detail']}")
    return lines


def _converted_lines(bank: dict, limit: int) -> list[str]:
    lines = []
    for note, text in CONVERSIONS.items():
        fs = bank["converted"].get(note, [])
        if fs:
            shown = ", ".join(fs[:limit]) + (f", ... ({len(fs) - limit} more)" if len(fs) > limit else "")
            lines.append(f"- {text} ({note}): {len(fs)}: {shown}")
    return lines


def summary_text(bank: dict, limit: int = 5) -> str:
    """The printed build summary: counts, classes, what was converted, what was left out and why."""
    n = bank["counts"]
    out = [f"bank: {n['classes']} classes, {n['recordings']} recordings ({n['heldout']} held out), {n['minutes']:.1f} minutes"]
    out.append(class_table(bank))
    conv = _converted_lines(bank, limit)
    if conv:
        out += ["converted:"] + conv
    left = _left_out_lines(bank, limit)
    out += [f"left out: {sum(n['rejected'].values())} recording(s), {n['dropped_classes']} class(es)"] + left
    if n["unused_over_cap"]:
        out.append(f"not used (over --max-per-class): {n['unused_over_cap']}")
    if bank["missing_packages"]:
        out.append(f"packages not installed (skipped): {', '.join(bank['missing_packages'])}")
    return "\n".join(out)


def readme_text(bank: dict) -> str:
    s = bank["settings"]
    lic = Counter(f["licence"] for f in bank["files"])
    pk = Counter(f["package"] for f in bank["files"])
    lines = [
        "# Clip bank of recorded sound events", "",
        f"Built by `tclap bank build`: mono {s['sr']} Hz 16-bit WAV, silence trimmed, at most {s['max_seconds']:g} s, "
        f"peak -1 dBFS. Held-out recordings (listed in `heldout.txt`, {s['min_heldout']} or more per class) are whole "
        "recordings that no training draw uses. `bank.json` gives every file's source package, path, licence and "
        "attribution.", "",
        class_table(bank),
        "## Licences", "",
        "| licence | recordings |", "| --- | ---: |",
        *[f"| {k} | {v} |" for k, v in sorted(lic.items())], "",
        "## Source packages", "",
        "| package | recordings |", "| --- | ---: |",
        *[f"| {k} | {v} |" for k, v in sorted(pk.items())], "",
        "## Converted", "", *(_converted_lines(bank, 3) or ["- nothing"]), "",
        "## Left out", "", *(_left_out_lines(bank, 3) or ["- nothing"]), "",
    ]
    return "\n".join(lines)


def needs(table: Table, root: str = "/", npm_prefix: str = ".") -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """``(installed, missing)`` ``(manager, package)`` pairs of the table."""
    have, miss = [], []
    for mp in table.packages():
        (have if pkgs.locate(*mp, root=root, npm_prefix=npm_prefix) else miss).append(mp)
    return have, miss


__all__ = ["BuildConfig", "BuildReport", "build_bank", "choose", "condition", "load_table", "needs", "summary_text",
           "class_table", "REJECT_REASONS", "CONVERSIONS"]
