"""Clip banks: where the events of a mix-up come from.

Three kinds, one interface (:class:`ClipBank`):

- ``builtin``: the procedural bank of :mod:`tclap.synth` (infinite instances; one in five held out).
- a folder per class: ``BANK/<label>/*.wav|flac|ogg|mp3`` (any rate, mono or stereo; loaded with
  :func:`basekit.audio.load_audio` at the target rate), also written ``bank:BANK``. Held-out files: those
  that ``BANK/heldout.txt`` lists (``label/file`` per line, as ``tclap bank build`` writes it: whole
  recordings chosen per class); without that file, those whose ``crc32("<label>/<file>") % 5 == 4`` (stable,
  about one in five, independent of the other files). Either way ``--split heldout`` builds an evaluation set
  from clips that no training mix used.
- an ESC-50-style CSV (``filename, fold, target, category``) with the audio in ``audio/`` next to the CSV's
  folder (ESC-50 keeps ``meta/esc50.csv`` and ``audio/``) or next to the CSV itself. The ``test_folds``
  (default fold 5) form the held-out split; training mixes never use them. A ``heldout.txt`` next to the CSV
  (one ``filename`` per line) replaces the folds as the hold-out list.

Caption phrases for folder/CSV banks are ``"a <label with _ as space>"`` ("an" before a vowel) unless a
phrases file maps labels to phrases (JSON object, or lines ``label<TAB>phrase``); a folder bank's own
``BANK/phrases.txt`` (written by ``tclap bank build``) is read when no phrases file is given.

Bad files (unreadable, empty, shorter than 0.25 s) are skipped when the bank is scanned, counted and
reported in :attr:`ClipBank.skipped` (or raise with ``strict=True``). A bank left with fewer than two
classes for the requested split cannot make an ordered mix-up and raises :class:`UserError`.

Several banks as one (:class:`UnionBank`): the CLIs take ``--bank`` more than once (``--bank builtin --bank DIR``);
a single spec joins banks with ``+`` (``builtin+DIR``, ``bank:builtin+DIR`` as a stream source), which
:func:`split_bank_spec` reads by one rule: a spec that names an existing file or folder as a whole is that one bank
(a folder whose name holds ``+`` keeps working alone); otherwise it is split at every ``+`` and each part must be
``builtin`` or an existing bank; a spec that reads both ways is refused as ambiguous. The union's classes are the
members' classes: a class name (or a caption phrase) found in two banks is an error naming both, never a silent
merge, because one label would then stand for two different sounds (a procedural "bell" and a recorded one) and
the captions could not tell them apart. Each member keeps its own train / held-out split, so held-out recordings
never reach a training mix-up; a mix-up may pair events of different banks.
"""

from __future__ import annotations

import csv
import functools
import json
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile as sf

from basekit.audio import AUDIO_EXTENSIONS, load_audio
from basekit.errors import UserError
from tclap.synth import EVENT_PHRASES, instance_for_split, render_event

BUILTIN = "builtin"
UNION_SEP = "+"  # joins banks in one spec: builtin+DIR
MIN_CLIP_SECONDS = 0.25
#: frames quieter than this (dB below the clip's loudest 10 ms frame) are trimmed from both ends.
TRIM_DB = 40.0


@dataclass
class ClipBank:
    """A labelled set of clips split into ``train`` / ``heldout``.

    Attributes:
        name: short name used in manifests (``"source": "mixup:<name>"``).
        phrases: label -> caption phrase.
        clips: split -> label -> list of clip keys (builtin: empty; instances are drawn on the fly).
        skipped: ``(file, reason)`` for every clip left out while scanning.
    """

    name: str
    phrases: dict[str, str]
    clips: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def labels(self, split: str) -> list[str]:
        """Labels that have at least one clip in ``split``, sorted."""
        return sorted(lab for lab, keys in self.clips.get(split, {}).items() if keys)

    def check_split(self, split: str) -> list[str]:
        """The labels of ``split``; raises when fewer than two classes can be mixed."""
        if split not in ("train", "heldout"):
            raise UserError(f"unknown split {split!r}; use 'train' or 'heldout'")
        labs = self.labels(split)
        if len(labs) < 2:
            found = ", ".join(labs) if labs else "none"
            extra = f"; {len(self.skipped)} file(s) were skipped as unreadable or too short" if self.skipped else ""
            raise UserError(
                f"clip bank {self.name!r} has {len(labs)} usable class(es) for split {split!r} ({found}){extra}; "
                "a temporal mix-up needs at least 2 classes: add class folders / rows"
            )
        return labs

    def draw(self, label: str, split: str, rng: np.random.Generator) -> str:
        """A random clip key of ``label`` in ``split``."""
        keys = self.clips[split][label]
        return keys[int(rng.integers(len(keys)))]

    def keys(self, label: str, split: str, limit: int | None = None) -> list[str]:
        """The clip keys of ``label`` in ``split`` in a fixed order (by path), at most ``limit`` of them."""
        keys = sorted(self.clips.get(split, {}).get(label, []))
        return keys if limit is None else keys[:limit]

    def load(self, key: str, sr: int) -> np.ndarray:
        """The clip behind ``key`` as float32 mono ``[T]`` at ``sr``, silence trimmed, peak 1.

        File clips come at any level (ESC-50 varies by 40 dB); the mix-up applies its own random gain.
        """
        x = _load_trimmed(key, sr)
        return (x / np.max(np.abs(x))).astype(np.float32)


class BuiltinBank(ClipBank):
    """The procedural bank of :mod:`tclap.synth`; clip keys are ``"<label>#<instance>"``."""

    def __init__(self) -> None:

        super().__init__(name="builtin", phrases=dict(EVENT_PHRASES))

    def labels(self, split: str) -> list[str]:
        return list(self.phrases)

    def draw(self, label: str, split: str, rng: np.random.Generator) -> str:

        # 10**6 instances per split and class: far more than any mix-up set needs, all distinct.
        return f"{label}#{instance_for_split(int(rng.integers(10**6)), split)}"

    def keys(self, label: str, split: str, limit: int | None = None) -> list[str]:
        """Instances ``0 .. limit - 1`` of ``split`` (the procedural bank has no end: ``limit`` is required)."""

        if limit is None:
            raise UserError("the built-in bank has unlimited instances: give a number of clips per class")
        return [f"{label}#{instance_for_split(j, split)}" for j in range(limit)]

    def load(self, key: str, sr: int) -> np.ndarray:

        label, inst = key.rsplit("#", 1)
        return render_event(label, int(inst), sr)


def trim_silence(wav: np.ndarray, sr: int, db: float = TRIM_DB) -> np.ndarray:
    """Cut leading/trailing 10 ms frames more than ``db`` below the loudest frame (``[T]`` -> ``[T']``).

    File clips (ESC-50 pads its 5 s clips with silence) must start with their sound so that the onsets in
    a manifest are where the event is heard.
    """
    hop = max(1, int(round(0.01 * sr)))
    n_frames = -(-len(wav) // hop)
    padded = np.pad(wav.astype(np.float64), (0, n_frames * hop - len(wav)))
    rms = np.sqrt(np.mean(padded.reshape(n_frames, hop) ** 2, axis=1))
    peak = rms.max()
    if peak <= 0:
        return wav[:0]
    active = np.nonzero(rms >= peak * 10 ** (-db / 20))[0]
    return wav[active[0] * hop : min(len(wav), (active[-1] + 1) * hop)]


@functools.lru_cache(maxsize=512)
def _load_trimmed(path: str, sr: int) -> np.ndarray:
    wav = load_audio(path, sr=sr, mono=True)
    out = trim_silence(wav, sr)
    if len(out) < MIN_CLIP_SECONDS * sr:
        raise UserError(
            f"clip {path} holds {len(out) / sr:.3f} s of sound after trimming silence; "
            f"at least {MIN_CLIP_SECONDS} s is needed (remove it)"
        )
    out = out.copy()
    out.flags.writeable = False  # shared by the cache
    return out


def _default_phrase(label: str) -> str:
    text = label.replace("_", " ").strip()
    article = "an" if text[:1].lower() in "aeiou" else "a"
    return f"{article} {text}"


def read_phrases(path: str | os.PathLike) -> dict[str, str]:
    """Label -> phrase from a JSON object file or lines ``label<TAB>phrase`` (``#`` comments allowed)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"phrases file not found: {p}")
    text = p.read_text(encoding="utf-8")
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserError(f"phrases file {p} is not valid JSON ({exc.msg})") from None
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise UserError(f"phrases file {p} must hold a JSON object label -> phrase")
        return {str(k): v.strip() for k, v in data.items()}
    out = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if "\t" not in line:
            raise UserError(f"{p}:{lineno}: expected 'label<TAB>phrase'")
        k, v = line.split("\t", 1)
        out[k.strip()] = v.strip()
    return out


def _scan_file(path: Path) -> str | None:
    """Why ``path`` cannot be used (None when it can); reads the header only."""
    try:
        if path.stat().st_size == 0:
            return "empty file (0 bytes)"
        info = sf.info(str(path))
    except Exception as exc:  # soundfile raises several types for corrupt input
        return f"cannot decode ({str(exc).splitlines()[0][:80]})"
    if info.frames <= 0 or info.samplerate <= 0:
        return "no samples"
    if info.frames / info.samplerate < MIN_CLIP_SECONDS:
        return f"shorter than {MIN_CLIP_SECONDS} s ({info.frames / info.samplerate:.3f} s)"
    return None


def _add(bank: ClipBank, path: Path, label: str, split: str, strict: bool) -> None:
    reason = _scan_file(path)
    if reason is not None:
        if strict:
            raise UserError(f"bad clip in bank {bank.name!r}: {path}: {reason} (remove it or drop --strict)")
        bank.skipped.append((str(path), reason))
        return
    bank.clips.setdefault(split, {}).setdefault(label, []).append(str(path))


HELDOUT_FILE = "heldout.txt"
PHRASES_FILE = "phrases.txt"


def folder_split(label: str, filename: str) -> str:
    """Held-out rule of folder banks without a hold-out list: ``crc32("<label>/<filename>") % 5 == 4`` -> ``"heldout"``."""
    return "heldout" if zlib.crc32(f"{label}/{filename}".encode("utf-8")) % 5 == 4 else "train"


def read_heldout(path: str | os.PathLike) -> set[str]:
    """The entries of a hold-out list (one per line, ``#`` comments and blank lines skipped); empty when absent."""
    p = Path(path)
    if not p.is_file():
        return set()
    return {ln.strip() for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip() and not ln.lstrip().startswith("#")}


def folder_bank(root: str | os.PathLike, phrases: dict[str, str] | None = None, strict: bool = False) -> ClipBank:
    """A bank from ``root/<label>/*.wav|flac|ogg|mp3``; ``root/heldout.txt`` (if present) is its hold-out list."""
    r = Path(root)
    if not r.is_dir():
        raise UserError(f"clip bank folder not found: {r} (give a folder with one sub-folder per class)")
    class_dirs = sorted(d for d in r.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise UserError(f"clip bank {r} has no class sub-folders (lay it out as {r}/<label>/*.wav)")
    heldout_list = (r / HELDOUT_FILE).is_file()
    heldout = read_heldout(r / HELDOUT_FILE)
    if phrases is None and (r / PHRASES_FILE).is_file():
        phrases = read_phrases(r / PHRASES_FILE)
    bank = ClipBank(name=r.name, phrases={})
    found: set[str] = set()
    for d in class_dirs:
        files = sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
        if not files:
            bank.skipped.append((str(d), "class folder holds no wav/flac/ogg/mp3 files"))
            continue
        for f in files:
            key = f"{d.name}/{f.name}"
            found.add(key)
            split = ("heldout" if key in heldout else "train") if heldout_list else folder_split(d.name, f.name)
            _add(bank, f, d.name, split, strict)
        bank.phrases[d.name] = (phrases or {}).get(d.name) or _default_phrase(d.name)
    for key in sorted(heldout - found):
        # A listed clip that is gone must not silently shrink the evaluation set.
        if strict:
            raise UserError(f"{r / HELDOUT_FILE} lists {key}, which is not in the bank (rebuild the bank or fix the list)")
        bank.skipped.append((str(r / key), f"listed in {HELDOUT_FILE} but not found"))
    for split in ("train", "heldout"):
        bank.clips.setdefault(split, {})
    return bank


def esc50_bank(
    csv_path: str | os.PathLike,
    test_folds: tuple[int, ...] = (5,),
    phrases: dict[str, str] | None = None,
    strict: bool = False,
) -> ClipBank:
    """A bank from an ESC-50-style CSV; rows of ``test_folds`` form the held-out split."""
    p = Path(csv_path)
    if not p.is_file():
        raise UserError(f"clip bank CSV not found: {p}")
    audio_dir = next((d for d in (p.parent / "audio", p.parent.parent / "audio") if d.is_dir()), None)
    if audio_dir is None:
        raise UserError(f"no audio/ folder next to {p} or its parent (ESC-50 keeps meta/esc50.csv and audio/)")
    with p.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        cols = set(reader.fieldnames or [])
        missing = {"filename", "fold", "category"} - cols
        if missing:
            raise UserError(f"{p} lacks column(s) {sorted(missing)}; an ESC-50 CSV has filename, fold, target, category")
        rows = list(reader)
    if not rows:
        raise UserError(f"clip bank CSV {p} has no rows")
    bank = ClipBank(name=p.stem, phrases={})
    heldout_list = (p.parent / HELDOUT_FILE).is_file()
    heldout = read_heldout(p.parent / HELDOUT_FILE)
    for k, row in enumerate(rows, 2):
        try:
            fold = int(row["fold"])
        except (TypeError, ValueError):
            raise UserError(f"{p}:{k}: fold {row['fold']!r} is not an integer") from None
        label = row["category"].strip()
        if not label:
            raise UserError(f"{p}:{k}: empty category")
        f = audio_dir / row["filename"]
        if not f.is_file():
            if strict:
                raise UserError(f"{p}:{k}: audio file not found: {f}")
            bank.skipped.append((str(f), "listed in the CSV but not found"))
            continue
        held = row["filename"] in heldout if heldout_list else fold in test_folds
        _add(bank, f, label, "heldout" if held else "train", strict)
        bank.phrases.setdefault(label, (phrases or {}).get(label) or _default_phrase(label))
    for split in ("train", "heldout"):
        bank.clips.setdefault(split, {})
    return bank


def _strip_prefix(spec: str) -> str:
    return spec.removeprefix("bank:")


def _names_a_bank(part: str) -> bool:
    return part == BUILTIN or Path(part).exists()


def split_bank_spec(spec: str) -> list[str]:
    """The banks one spec names, ``bank:`` prefixes removed: ``"builtin+DIR"`` -> ``["builtin", "DIR"]``.

    A spec that names an existing file or folder as a whole is that one bank (``+`` inside a folder name stays);
    otherwise it is split at every ``+``, and every part must be ``builtin`` or an existing bank. When both readings
    name existing banks the spec is refused (one line): pass the banks one per ``--bank`` instead.
    """
    whole = _strip_prefix(spec)
    if not whole:
        raise UserError("'bank:' needs a folder: bank:DIR" if spec else
                        "empty clip bank; use builtin, a folder per class, or an ESC-50 CSV")
    if UNION_SEP not in whole:
        return [whole]
    parts = [_strip_prefix(p) for p in whole.split(UNION_SEP)]
    one = Path(whole).exists()
    if one and all(p and _names_a_bank(p) for p in parts):
        raise UserError(f"clip bank {spec!r} is ambiguous: it names a file or folder and also the banks "
                        f"{' + '.join(parts)}; give each bank its own --bank (or rename the folder)")
    if one:
        return [whole]
    if not all(parts):
        raise UserError(f"clip bank {spec!r} has an empty part between '+' signs; join banks as builtin+DIR")
    missing = [p for p in parts if not _names_a_bank(p)]
    if missing:
        raise UserError(f"clip bank not found: {missing[0]!r} in {spec!r} ('+' joins banks: builtin+DIR; "
                        "use 'builtin', a folder per class, or an ESC-50 CSV)")
    return parts


def bank_parts(spec: str | os.PathLike | Sequence[str]) -> list[str]:
    """Every bank a spec or a list of specs (repeated ``--bank``) names, in order (see :func:`split_bank_spec`)."""
    specs = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
    if not specs:
        raise UserError("no clip bank given; use --bank builtin, a folder per class, or an ESC-50 CSV")
    return [p for s in specs for p in split_bank_spec(str(s))]


def bank_setting(values: str | Sequence[str]) -> str | tuple[str, ...]:
    """What a config records for ``--bank`` values: a single bank as it was written (so sets built before unions
    existed keep their settings), several as the tuple of their parts (one spelling for ``--bank A --bank B``
    and ``--bank A+B``)."""
    values = [values] if isinstance(values, str) else list(values)
    parts = bank_parts(values)
    return values[0] if len(values) == 1 and len(parts) == 1 else tuple(parts)


def bank_label(spec: str | Sequence[str]) -> str:
    """A bank setting as a user writes it on one line: ``builtin+DIR``."""
    return spec if isinstance(spec, str) else UNION_SEP.join(spec)


class UnionBank(ClipBank):
    """Several banks read as one: the union of their classes, each class drawn from (and held out by) its own bank.

    Clip keys are the members' own keys (built-in ``"<label>#<instance>"``, files their paths), so a manifest's
    ``clips`` name the recordings as a single-bank set would.
    """

    def __init__(self, members: Sequence[ClipBank], phrases: dict[str, str] | None = None) -> None:
        """``phrases``: label -> phrase for some classes of the members (a phrases file), over their own."""
        super().__init__(name=UNION_SEP.join(m.name for m in members), phrases={})
        self.members = list(members)
        self._owner: dict[str, ClipBank] = {}  # label -> its bank
        phrase_owner: dict[str, tuple[str, ClipBank]] = {}
        for m in self.members:
            for label, own in m.phrases.items():
                phrase = (phrases or {}).get(label) or own
                if label in self._owner:
                    raise UserError(f"class {label!r} is in both clip bank {self._owner[label].name!r} and clip bank "
                                    f"{m.name!r}; a class must come from one bank (rename one class folder, or "
                                    "leave one bank out)")
                seen = phrase_owner.get(phrase.strip().lower())
                if seen is not None and seen[1] is not m:  # within one bank its own list decides
                    raise UserError(f"class {seen[0]!r} of clip bank {seen[1].name!r} and class {label!r} of clip bank "
                                    f"{m.name!r} have the same caption phrase {phrase!r}; captions could not tell "
                                    "them apart (give one a phrases.txt line with another phrase)")
                self._owner[label] = m
                phrase_owner[phrase.strip().lower()] = (label, m)
                self.phrases[label] = phrase
            for split, by_label in m.clips.items():
                for label, keys in by_label.items():
                    self.clips.setdefault(split, {})[label] = list(keys)
            self.skipped += m.skipped
        for split in ("train", "heldout"):
            self.clips.setdefault(split, {})
        # File keys -> their bank; the built-in bank's keys are made on demand, so they are recognised by form.
        self._file_owner = {k: m for m in self.members for by_label in m.clips.values()
                            for keys in by_label.values() for k in keys}
        self._builtin = next((m for m in self.members if isinstance(m, BuiltinBank)), None)

    def owner(self, label: str) -> ClipBank:
        """The member bank that holds class ``label``."""
        if label not in self._owner:
            raise UserError(f"class {label!r} is in none of the clip banks {self.name!r}")
        return self._owner[label]

    def labels(self, split: str) -> list[str]:
        return sorted({lab for m in self.members for lab in m.labels(split)})

    def draw(self, label: str, split: str, rng: np.random.Generator) -> str:
        return self.owner(label).draw(label, split, rng)

    def keys(self, label: str, split: str, limit: int | None = None) -> list[str]:
        return self.owner(label).keys(label, split, limit)

    def load(self, key: str, sr: int) -> np.ndarray:
        bank = self._file_owner.get(key)
        if bank is None and self._builtin is not None and key.rsplit("#", 1)[0] in self._builtin.phrases:
            bank = self._builtin
        if bank is None:
            raise UserError(f"clip {key!r} belongs to none of the clip banks {self.name!r}")
        return bank.load(key, sr)


def _open_one(spec: str, test_folds: tuple[int, ...], phrases: dict[str, str] | None, strict: bool) -> ClipBank:
    """One bank: ``"builtin"``, a folder per class, or an ESC-50-style ``.csv`` (``bank:`` already removed)."""
    if spec == BUILTIN:
        bank: ClipBank = BuiltinBank()
        if phrases:
            unknown = set(phrases) - set(bank.phrases)
            if unknown:
                raise UserError(f"phrases file names unknown built-in label(s) {sorted(unknown)}")
            bank.phrases.update(phrases)
        return bank
    p = Path(spec)
    if p.suffix.lower() == ".csv":
        return esc50_bank(p, test_folds=test_folds, phrases=phrases, strict=strict)
    if not p.exists():
        raise UserError(f"clip bank not found: {spec} (use 'builtin', a folder per class, or an ESC-50 CSV)")
    if p.is_file():
        raise UserError(f"clip bank {spec} is a file but not a .csv (use 'builtin', a folder per class, or an ESC-50 CSV)")
    return folder_bank(p, phrases=phrases, strict=strict)


def open_bank(
    spec: str | Sequence[str],
    test_folds: tuple[int, ...] = (5,),
    phrases_file: str | os.PathLike | None = None,
    strict: bool = False,
) -> ClipBank:
    """``"builtin"``, a folder per class (``DIR`` or ``bank:DIR``), an ESC-50-style ``.csv``, or several of them.

    Several banks (a list, as repeated ``--bank`` gives, or one spec joined by ``+``) make a :class:`UnionBank`. With
    a union, ``phrases_file`` sets the phrases of the classes it names (each must be a class of some member; the
    others keep their bank's phrase), and ``test_folds`` / ``strict`` apply to every member.
    """
    parts = bank_parts(spec)
    phrases = read_phrases(phrases_file) if phrases_file else None
    if len(parts) == 1:
        return _open_one(parts[0], test_folds, phrases, strict)
    seen: dict[str, str] = {}
    for part in parts:
        ident = part if part == BUILTIN else str(Path(part).resolve())
        if ident in seen:
            raise UserError(f"clip bank {part!r} is named twice ({seen[ident]!r} and {part!r}); name each bank once")
        seen[ident] = part
    members = [_open_one(part, test_folds, None, strict) for part in parts]
    if phrases:
        unknown = sorted(set(phrases) - {lab for m in members for lab in m.phrases})
        if unknown:
            raise UserError(f"phrases file {phrases_file} names class(es) {unknown} that none of the banks "
                            f"{UNION_SEP.join(m.name for m in members)!r} holds; fix the labels")
    return UnionBank(members, phrases)
