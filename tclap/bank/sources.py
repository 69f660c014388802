"""The recordings a build reads: table rows resolved to files, archive members and SoundFont samples, and your folders.

A :class:`Candidate` is one recording, not yet read: its class, a stable ``key`` (the journal's identity), where
it lives, its licence, and a ``read`` callable giving ``([C, T] float32, rate, subtype, notes)``. :func:`gather`
locates (and, when asked, installs) the packages a table names, lists every row's candidates in a fixed order
(:func:`source_candidates`), adds ``--add`` folders (:func:`local_candidates`), and sets aside a recording that
two classes claim. Nothing here decodes audio until a candidate's ``read`` is called.
"""

from __future__ import annotations

import glob
import hashlib
import io
import os
import re
import zipfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import soundfile as sf

from basekit.errors import UserError
from tclap.bank import packages as pkgs
from tclap.bank.config import Rejected
from tclap.bank.rcc import ResourceFile
from tclap.bank.sf2 import read_sf2, sample_audio
from tclap.bank.table import Source, Table, expand_braces, glob_regex, parse_sf2_pattern
from tclap.data.banks import _default_phrase, read_phrases

READ_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3")
#: a SoundFont note shorter than this is played on its loop up to it.
SF2_MIN_SECONDS = 1.0


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
