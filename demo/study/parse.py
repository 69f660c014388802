"""Reading a study file (YAML or JSON, UTF-8) and the checker every section check writes its problems to.

:class:`Check` holds the raw mapping and collects problems, one line each, prefixed by the file name;
audio files are opened with soundfile (:func:`audio_problem`) so a corrupt clip is found before a rater
hears it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from basekit.errors import UserError
from demo.study.model import Prompt, find_clip


def read_raw(path: Path) -> dict:
    if not path.is_file():
        raise UserError(f"study file {path} does not exist; pass the path of a .yaml or .json study definition")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"study file {path} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                        "save it as UTF-8") from None
    try:
        if path.suffix.lower() == ".json":
            raw = json.loads(text)
        else:
            import yaml

            raw = yaml.safe_load(text)
    except Exception as exc:  # yaml.YAMLError / json.JSONDecodeError: report the parser's line, no traceback
        first = str(exc).strip().splitlines()
        raise UserError(f"study file {path} is not valid {path.suffix.lstrip('.').upper() or 'YAML'}: "
                        f"{' '.join(s.strip() for s in first)[:300]}") from None
    if not isinstance(raw, dict):
        raise UserError(f"study file {path} must hold a mapping (name, systems, prompts, ...), got {type(raw).__name__}")
    return raw


def audio_problem(p: Path) -> str | None:
    """None when ``p`` is a readable, non-empty audio file, else what is wrong with it."""
    import soundfile as sf

    if not p.is_file():
        return "is missing"
    try:
        info = sf.info(str(p))
    except Exception as exc:  # soundfile raises RuntimeError / LibsndfileError for corrupt files
        return f"is not readable audio ({str(exc).splitlines()[0][:120]})"
    if info.frames <= 0:
        return "is empty (0 samples)"
    return None


@dataclass
class Check:
    """The raw study mapping being checked and the problems found so far (one line each, prefixed by the file)."""

    raw: dict
    path: Path
    problems: list[str] = field(default_factory=list)

    @property
    def root(self) -> Path:
        return self.path.parent

    def add(self, message: str) -> None:
        self.problems.append(f"{self.path.name}: {message}")

    def int_field(self, key: str, default: int | None, minimum: int, section: dict | None = None,
                  prefix: str = "") -> int:
        v = (self.raw if section is None else section).get(key, default)
        if v is None:
            self.add(f"`{prefix}{key}` is required (an integer >= {minimum})")
            return minimum
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            self.add(f"`{prefix}{key}` must be an integer >= {minimum}, got {v!r}")
            return minimum
        return v

    def section(self, key: str) -> dict | None:
        """``raw[key]`` when it is a mapping; None (and a problem if it is something else) otherwise."""
        v = self.raw.get(key)
        if v is None:
            return None
        if not isinstance(v, dict):
            self.add(f"`{key}` must be a mapping, got {type(v).__name__}")
            return None
        return v

    def unknown(self, section: dict, known: set[str], name: str) -> None:
        for k in sorted(set(section) - known, key=str):
            self.add(f"unknown key `{name}.{k}` (known keys: {', '.join(sorted(known))})")

    def duplicates(self, names: list[str], what: str) -> None:
        for dup in sorted({n for n in names if names.count(n) > 1}):
            self.add(f"{what} {dup!r} is used twice; {what}s must be unique")


def parse_expect(raw: Any, scale_names: set[str], where: str, problems: list[str]) -> dict[str, tuple[int, ...]]:
    if not isinstance(raw, dict) or not raw:
        problems.append(f"{where}: `expect` must map a scale name to the accepted rating(s), e.g. {{mos_r: 2}}")
        return {}
    out = {}
    for scale, vals in raw.items():
        if scale not in scale_names:
            problems.append(f"{where}: `expect` names unknown scale {scale!r}; scales are {sorted(scale_names)}")
            continue
        vals = vals if isinstance(vals, list) else [vals]
        if not vals or any(isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 5 for v in vals):
            problems.append(f"{where}: `expect.{scale}` must be ratings 1-5, got {raw[scale]!r}")
            continue
        out[scale] = tuple(sorted(set(vals)))
    return out


def check_prompt_clips(c: Check, folder: Path, prompts: list[Prompt], owner: str) -> None:
    """Every prompt has a readable clip in ``folder`` (``owner`` names the folder's role in the message)."""
    for p in prompts:
        found = find_clip(folder, p.id)
        if found is None:
            c.add(f"{owner} has no clip for prompt {p.id!r}: expected {folder / (p.id + '.wav')} (or .flac/.ogg/.mp3)")
            continue
        bad = audio_problem(found)
        if bad:
            c.add(f"clip {found} {bad}; replace it or remove the prompt")
