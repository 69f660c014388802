"""The curated table of where each class's recordings live, and which packages hold them.

Two tab-separated files ship with the package (``#`` starts a comment line):

- ``classes.txt``: ``label<TAB>phrase`` — the caption phrase of each class ("a dog barks").
- ``sources.txt``: ``label<TAB>package<TAB>where<TAB>pattern<TAB>licence<TAB>attribution[<TAB>exclude]``

``package`` is a Debian package name, or ``pip:NAME`` / ``npm:NAME`` for a PyPI distribution or an npm package.
``where`` says how ``pattern`` is read:

- ``file``: a glob of paths inside the package (absolute Debian paths such as ``/usr/share/...``; for pip/npm
  relative to the installed package's folder). ``*`` stays inside one folder, ``**`` crosses folders.
- ``zip:PATH``: members of the zip archive ``PATH`` (0 A.D. keeps its sounds in ``public.zip``).
- ``rcc:PATH``: members of the Qt resource file ``PATH`` (GCompris keeps its sounds in ``.rcc`` files).
- ``sf2:PATH``: samples of SoundFont presets, ``BANK:PROGRAMS`` or ``BANK:PROGRAMS:KEY[,KEY...]`` (a drum kit's
  keys); ``PROGRAMS`` is one program, a list of programs and ranges (``0-19,32``), or ``*`` for every preset of
  the bank. Each distinct sample is one recording.

A file goes into a class only when its own name, folder or preset name says what it is; the table is where that
judgement is written down, one line per group of files, with the licence read from the package's copyright file.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from basekit.errors import UserError

WHERE_KINDS = ("file", "zip", "rcc", "sf2")
MANAGERS = ("apt", "pip", "npm")
#: licence values that mean nobody knows: such files never enter a bank.
UNKNOWN_LICENCES = {"", "unknown", "?", "none", "n/a", "unspecified"}


@dataclass(frozen=True)
class Source:
    """One row of ``sources.txt``."""

    label: str
    manager: str
    package: str
    kind: str
    container: str
    pattern: str
    licence: str
    attribution: str
    exclude: str = ""
    line: str = ""  # "file:lineno" for messages

    @property
    def spec(self) -> str:
        """``apt:NAME`` / ``pip:NAME`` / ``npm:NAME``."""
        return f"{self.manager}:{self.package}"


@dataclass(frozen=True)
class Table:
    phrases: dict[str, str]
    sources: list[Source]

    def packages(self) -> list[tuple[str, str]]:
        """``(manager, package)`` pairs the table reads, in first-use order."""
        seen: dict[tuple[str, str], None] = {}
        for s in self.sources:
            seen.setdefault((s.manager, s.package), None)
        return list(seen)


def expand_braces(pattern: str) -> list[str]:
    """Shell brace alternatives: ``"a/{b,c}*.ogg"`` -> ``["a/b*.ogg", "a/c*.ogg"]`` (several groups multiply)."""
    m = re.search(r"\{([^{}]*)\}", pattern)
    if not m:
        return [pattern]
    head, tail = pattern[: m.start()], pattern[m.end() :]
    return [x for alt in m.group(1).split(",") for x in expand_braces(head + alt + tail)]


def glob_regex(pattern: str) -> re.Pattern:
    """``*`` (one folder level), ``**`` (any depth), ``?``, ``[...]`` and ``{a,b}`` as in shell globs, as a full-match regex."""
    alts = expand_braces(pattern)
    if len(alts) > 1:
        return re.compile("|".join(f"(?:{glob_regex(a).pattern})" for a in alts))
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            j = pattern.find("]", i + 1)
            if j < 0:
                out.append(re.escape(c))
                i += 1
            else:
                body = pattern[i + 1 : j]
                out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
                i = j + 1
        else:
            out.append(re.escape(c))
            i += 1
    return re.compile("".join(out) + r"\Z")


def _rows(text: str, origin: str) -> list[tuple[str, list[str]]]:
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        rows.append((f"{origin}:{lineno}", [c.strip() for c in line.rstrip("\n").split("\t")]))
    return rows


def parse_classes(text: str, origin: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for where, cols in _rows(text, origin):
        if len(cols) < 2 or not cols[0] or not cols[1]:
            raise UserError(f"{where}: expected 'label<TAB>phrase'")
        if not re.fullmatch(r"[a-z0-9][a-z0-9_]*", cols[0]):
            raise UserError(f"{where}: label {cols[0]!r} must be lower-case letters, digits and '_'")
        if cols[0] in out:
            raise UserError(f"{where}: class {cols[0]!r} is listed twice")
        out[cols[0]] = cols[1]
    return out


def parse_sources(text: str, origin: str, phrases: dict[str, str]) -> list[Source]:
    out = []
    for where, cols in _rows(text, origin):
        if len(cols) not in (6, 7):
            raise UserError(
                f"{where}: expected 6 or 7 tab-separated columns "
                "(label, package, where, pattern, licence, attribution[, exclude]), got {len(cols)}"
            )
        label, package, kind, pattern, licence, attribution = cols[:6]
        if label not in phrases:
            raise UserError(f"{where}: class {label!r} has no phrase in the classes file (add 'label<TAB>phrase')")
        manager, _, name = package.rpartition(":")
        manager = manager or "apt"
        if manager not in MANAGERS or not name:
            raise UserError(f"{where}: package {package!r} must be a Debian name, pip:NAME or npm:NAME")
        kind, _, container = kind.partition(":")
        if kind not in WHERE_KINDS or (kind != "file") != bool(container):
            raise UserError(f"{where}: where {cols[2]!r} must be 'file', 'zip:PATH', 'rcc:PATH' or 'sf2:PATH'")
        if kind == "sf2":
            parse_sf2_pattern(pattern, where)
        if not pattern:
            raise UserError(f"{where}: empty pattern")
        out.append(Source(label, manager, name, kind, container, pattern, licence, attribution,
                          cols[6] if len(cols) == 7 else "", where))
    return out


def parse_sf2_pattern(pattern: str, where: str = "") -> tuple[int, tuple[int, ...] | None, tuple[int, ...] | None]:
    """``"BANK:PROGRAMS[:KEY,...]"`` -> ``(bank, programs or None for '*', keys or None)``."""
    m = re.fullmatch(r"(\d+):(\*|\d+(?:-\d+)?(?:,\d+(?:-\d+)?)*)(?::(\d+(?:,\d+)*))?", pattern)
    if not m:
        raise UserError(
            f"{where}: SoundFont pattern {pattern!r} must be BANK:PROGRAMS or BANK:PROGRAMS:KEY[,KEY...] "
            "(PROGRAMS: '*', or numbers and ranges like 0-19,32)"
        )
    progs = None
    if m.group(2) != "*":
        progs = []
        for part in m.group(2).split(","):
            lo, _, hi = part.partition("-")
            if int(hi or lo) < int(lo):
                raise UserError(f"{where}: program range {part!r} runs backwards")
            progs.extend(range(int(lo), int(hi or lo) + 1))
        progs = tuple(progs)
    keys = tuple(int(k) for k in m.group(3).split(",")) if m.group(3) else None
    return int(m.group(1)), progs, keys


def load_table(classes_file: str | os.PathLike | None = None, sources_file: str | os.PathLike | None = None) -> Table:
    """The packaged table, or the given files (a sources file alone takes the packaged classes)."""

    def read(path, name):
        if path is None:
            return resources.files("tclap.bank").joinpath(name).read_text(encoding="utf-8"), f"tclap/bank/{name}"
        p = Path(path)
        if not p.is_file():
            raise UserError(f"bank table file not found: {p}")
        return p.read_text(encoding="utf-8"), str(p)

    text, origin = read(classes_file, "classes.txt")
    phrases = parse_classes(text, origin)
    text, origin = read(sources_file, "sources.txt")
    return Table(phrases, parse_sources(text, origin, phrases))


def licence_known(licence: str) -> bool:
    return licence.strip().lower() not in UNKNOWN_LICENCES
