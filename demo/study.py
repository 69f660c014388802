"""Study definition: systems × prompts, the rating tests, training / gold / attention clips, access, screening rules.

A study is a YAML or JSON file (UTF-8). Paths are relative to the study file. Example::

    name: tclap-vs-clap
    seed: 0
    access: signed                # open (default: ?rater=ID links) | signed (`mos links`) | crowd (Prolific, MTurk)
    systems:                      # each a folder of clips named by prompt id: <dir>/<prompt_id>.wav|flac|ogg
      - {name: audioldm-clap,  dir: gen/clap}
      - {name: audioldm-tclap, dir: gen/tclap}
    prompts:
      - {id: p001, text: "a dog barks followed by a man speaks"}
    tests: [acr, cmos, mushra]    # pages in this order; default: acr plus every comparison section given below
    clips_per_rater: 8            # ACR clips per rater
    min_ratings_per_clip: 5
    cmos:                         # A/B pages: two systems on one prompt, sides random, names hidden
      type: cmos                  # cmos: -3..+3 (B against A) | ab: forced choice A or B
      pairs: [[audioldm-clap, audioldm-tclap]]   # default: every pair of systems
      pages_per_rater: 4
    mushra:                       # one page per prompt: every system, a hidden reference and low anchor(s), 0-100
      reference: refs             # folder of reference clips <prompt_id>.wav
      anchors: [lowpass:3500]     # default; or {name: ..., dir: ...} folders of ready-made anchors
      pages_per_rater: 2
    loudness: {target_lufs: -23}  # clips are served at this BS.1770 loudness (peak ceiling -1 dBFS); `off`: as is
    completion: {code: C1A2B3, url: "https://app.prolific.com/submissions/complete?cc=C1A2B3"}
    training:                     # shown (not rated) on the training page
      - {file: train/good.wav, text: "a beep followed by a knock", note: "Excellent quality, right order: 5 / 5"}
    gold:                         # clips with a known answer; a rating outside `expect` fails the check
      - {id: g1, file: gold/swapped.wav, text: "a beep followed by a knock", expect: {mos_t: [1, 2]}}
    attention_checks:             # "select 2 on this clip"
      - {id: a1, file: gold/any.wav, text: "Attention check: select 2 on both scales.", expect: {mos_r: 2, mos_t: 2}}
    rater_password: null          # optional: raters must type it
    admin_password: null          # optional: enables the admin status endpoint
    allowed_raters: null          # optional list: only these rater ids may start
    screening: {attention: true, gold: true, zero_variance: true, min_consensus_corr: 0.2}

:func:`check_study` returns every problem (one line each) and runs one short named check per section;
:func:`load_study` raises :class:`UserError` when there is any. docs/mos.md explains the access modes.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from basekit.errors import UserError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
# A leading "." is refused too, so "." and ".." (path components) can never be rater ids.
RATER_ID_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$")
ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
ACCESS_MODES = ("open", "signed", "crowd")
TESTS = ("acr", "cmos", "mushra")
CMOS_TYPES = ("cmos", "ab")
# A page with more conditions than this cannot be compared by ear (BS.1534 advises at most 12 plus the reference).
MAX_MUSHRA_CONDITIONS = 15

# ITU-T P.800 absolute category rating labels (overall quality, MOS_r).
ACR_LABELS = {5: "Excellent", 4: "Good", 3: "Fair", 2: "Poor", 1: "Bad"}
# Temporal accuracy (MOS_t): how well the order of the sound events matches the text.
TEMPORAL_LABELS = {
    5: "All events in the described order",
    4: "Events in the described order, with small timing flaws",
    3: "Order partly right",
    2: "Order mostly wrong",
    1: "Order wrong or events missing",
}
# ITU-T P.800 comparison category rating (CMOS): the second sample (B) against the first (A).
CMOS_LABELS = {3: "B much better than A", 2: "B better", 1: "B slightly better", 0: "About the same",
               -1: "B slightly worse", -2: "B worse", -3: "B much worse than A"}
CMOS_QUESTION = "Compared with A, how good is B?"
AB_QUESTION = "Which one do you prefer?"
MUSHRA_QUESTION = ("Rate each sound against the reference (0-100): 100 = as good as the reference. "
                   "One of them is the reference itself.")


@dataclass(frozen=True)
class Scale:
    """One 1–5 rating scale shown under each clip."""

    name: str
    question: str
    labels: dict[int, str]


DEFAULT_SCALES = (
    Scale("mos_r", "Overall quality of the audio?", dict(ACR_LABELS)),
    Scale("mos_t", "Do the sound events happen in the order the text describes?", dict(TEMPORAL_LABELS)),
)


@dataclass(frozen=True)
class System:
    name: str
    dir: Path


@dataclass(frozen=True)
class Prompt:
    id: str
    text: str


@dataclass(frozen=True)
class TrainingExample:
    file: Path
    text: str
    note: str


@dataclass(frozen=True)
class CheckClip:
    """A gold clip or an attention check: ``expect`` maps scale name → accepted ratings."""

    id: str
    file: Path
    text: str
    expect: dict[str, tuple[int, ...]]


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


@dataclass(frozen=True)
class Loudness:
    """Clips are served at ``target_lufs`` (BS.1770); a gain never lifts the peak past ``ceiling_dbfs`` nor
    passes ``max_gain_db`` upwards (a clip then plays quieter; its served loudness is recorded)."""

    target_lufs: float = -23.0
    ceiling_dbfs: float = -1.0
    max_gain_db: float = 20.0


@dataclass(frozen=True)
class Completion:
    """Shown on the last page: a code to paste into the crowd platform and/or a link back to it."""

    code: str | None = None
    url: str | None = None


@dataclass(frozen=True)
class ScreeningRules:
    """Rater screening used by ``mos report`` (each rule can be switched off)."""

    attention: bool = True  # exclude raters who failed any attention check
    gold: bool = True  # exclude raters who failed more than `max_gold_failures` gold clips
    max_gold_failures: int = 0
    zero_variance: bool = True  # exclude raters who gave the same value to every clip on a scale ...
    zero_variance_min_clips: int = 8  # ... of at least this many clips (an honest rater may repeat one value on 4)
    min_consensus_corr: float | None = 0.2  # Pearson r of a rater's ratings vs the others' clip means
    consensus_alpha: float | None = 0.05  # exclude only when r is below the threshold at this level (Holm, Fisher z)
    min_ratings: int = 1  # a rater with fewer main-clip ratings than this is excluded


@dataclass(frozen=True)
class Study:
    name: str
    path: Path
    seed: int
    systems: tuple[System, ...]
    prompts: tuple[Prompt, ...]
    scales: tuple[Scale, ...]
    clips_per_rater: int
    min_ratings_per_clip: int
    training: tuple[TrainingExample, ...] = ()
    gold: tuple[CheckClip, ...] = ()
    attention_checks: tuple[CheckClip, ...] = ()
    rater_password: str | None = None
    admin_password: str | None = None
    allowed_raters: tuple[str, ...] | None = None
    consent_text: str = (
        "You will hear short generated audio clips and rate each one on two 1–5 scales. "
        "Your rater id, your ratings and the time you spend on each page are stored for research. "
        "Please use headphones in a quiet room."
    )
    screening: ScreeningRules = field(default_factory=ScreeningRules)
    tests: tuple[str, ...] = ("acr",)
    cmos: CmosTest | None = None
    mushra: MushraTest | None = None
    access: str = "open"
    completion: Completion | None = None
    loudness: Loudness | None = field(default_factory=Loudness)
    warnings: tuple[str, ...] = ()

    def clip_path(self, system: System, prompt: Prompt) -> Path | None:
        """The clip file of ``system`` for ``prompt`` (first existing extension), or None."""
        return find_clip(system.dir, prompt.id)

    @property
    def secret_path(self) -> Path:
        """The study secret that signs rater links (``access: signed``): ``<study file>.secret`` beside it."""
        return self.path.with_name(self.path.name + ".secret")

    def to_json(self) -> str:
        """The resolved study (paths as strings, passwords left out) for the database's meta table."""
        d = asdict(self)
        d.pop("rater_password"), d.pop("admin_password"), d.pop("warnings")
        return json.dumps(d, default=str, sort_keys=True)


_TOP_KEYS = {
    "name", "seed", "systems", "prompts", "scales", "clips_per_rater", "min_ratings_per_clip", "training", "gold",
    "attention_checks", "rater_password", "admin_password", "allowed_raters", "consent_text", "screening",
    "tests", "cmos", "mushra", "access", "completion", "loudness",
}


def find_clip(folder: Path, prompt_id: str) -> Path | None:
    """``<folder>/<prompt_id>.<ext>`` for the first audio extension that exists, or None."""
    for ext in AUDIO_EXTENSIONS:
        p = folder / f"{prompt_id}{ext}"
        if p.is_file():
            return p
    return None


def _read_raw(path: Path) -> dict:
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


def _audio_problem(p: Path) -> str | None:
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
class _Check:
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


def _parse_expect(raw: Any, scale_names: set[str], where: str, problems: list[str]) -> dict[str, tuple[int, ...]]:
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


# ---- one check per section ------------------------------------------------------------------------------------
def _check_unknown_keys(c: _Check) -> None:
    for k in sorted(set(c.raw) - _TOP_KEYS, key=str):
        c.add(f"unknown key `{k}` (known keys: {', '.join(sorted(_TOP_KEYS))})")


def _check_scale(c: _Check, i: int, s: Any) -> Scale | None:
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


def _check_scales(c: _Check) -> list[Scale]:
    raw = c.raw.get("scales")
    if raw is None:
        return list(DEFAULT_SCALES)
    if not isinstance(raw, list) or not raw:
        c.add("`scales` must be a non-empty list of {name, question, labels}")
        return []
    scales = [s for s in (_check_scale(c, i, s) for i, s in enumerate(raw)) if s is not None]
    c.duplicates([s.name for s in scales], "scale name")
    return scales


def _check_systems(c: _Check) -> list[System]:
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


def _check_prompts(c: _Check) -> list[Prompt]:
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


def _check_prompt_clips(c: _Check, folder: Path, prompts: list[Prompt], owner: str) -> None:
    """Every prompt has a readable clip in ``folder`` (``owner`` names the folder's role in the message)."""
    for p in prompts:
        found = find_clip(folder, p.id)
        if found is None:
            c.add(f"{owner} has no clip for prompt {p.id!r}: expected {folder / (p.id + '.wav')} (or .flac/.ogg/.mp3)")
            continue
        bad = _audio_problem(found)
        if bad:
            c.add(f"clip {found} {bad}; replace it or remove the prompt")


def _check_main_clips(c: _Check, systems: list[System], prompts: list[Prompt]) -> None:
    for s in systems:
        if s.dir.is_dir():
            _check_prompt_clips(c, s.dir, prompts, f"system {s.name!r}")


def _check_tests(c: _Check) -> tuple[str, ...]:
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


def _check_acr_counts(c: _Check, systems: list[System], prompts: list[Prompt], tests: tuple[str, ...]) -> int:
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


def _check_clip_list(c: _Check, key: str, scale_names: set[str]) -> list:
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
        bad = _audio_problem(f)
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
        expect = _parse_expect(item.get("expect"), scale_names, w, problems)
        for p in problems:
            c.add(p)
        out.append(CheckClip(cid, f, text, expect))
    return out


def _check_passwords(c: _Check) -> dict[str, str | None]:
    out = {}
    for k in ("rater_password", "admin_password"):
        v = c.raw.get(k)
        if v is not None and (not isinstance(v, str) or not v):
            c.add(f"`{k}` must be a non-empty string or left out")
            v = None
        out[k] = v
    return out


def _check_allowed_raters(c: _Check) -> tuple[str, ...] | None:
    allowed = c.raw.get("allowed_raters")
    if allowed is None:
        return None
    if not isinstance(allowed, list) or not all(isinstance(a, str) and RATER_ID_RE.match(a) for a in allowed):
        c.add("`allowed_raters` must be a list of rater ids (letters, digits, -_. ; <= 64)")
        return None
    return tuple(allowed)


def _check_access(c: _Check) -> tuple[str, tuple[str, ...]]:
    """The access mode and its warnings: a study that names none stays open, as studies did before modes."""
    mode = c.raw.get("access")
    if mode is None:
        return "open", (f"{c.path.name} names no access mode, so it is `access: open`: anyone who knows or guesses a "
                        "rater id can rate as that rater; set `access: open` to keep it (a lab study), or `signed` "
                        "/ `crowd` (see docs/mos.md)",)
    if mode not in ACCESS_MODES:
        c.add(f"`access` must be one of {', '.join(ACCESS_MODES)}, got {mode!r}")
        return "open", ()
    if mode == "crowd" and c.raw.get("allowed_raters") is not None:
        c.add("`allowed_raters` cannot be used with `access: crowd` (the platform decides who comes); remove it")
    return mode, ()


def _check_completion(c: _Check) -> Completion | None:
    sec = c.section("completion")
    if sec is None:
        return None
    c.unknown(sec, {"code", "url"}, "completion")
    code, url = sec.get("code"), sec.get("url")
    if code is not None and (not isinstance(code, (str, int)) or isinstance(code, bool) or not str(code).strip()):
        c.add(f"`completion.code` must be a non-empty text, got {code!r}")
        code = None
    if url is not None and (not isinstance(url, str) or not re.match(r"^https?://\S+$", url)):
        c.add(f"`completion.url` must be an http(s) URL without spaces, got {url!r}")
        url = None
    if sec.get("code") is None and sec.get("url") is None:
        c.add("`completion` needs a `code`, a `url` or both")
    return Completion(str(code).strip() if code is not None else None, url)


def _check_pairs(c: _Check, raw: Any, names: list[str]) -> tuple[tuple[str, str], ...]:
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


def _check_cmos(c: _Check, systems: list[System], prompts: list[Prompt]) -> CmosTest | None:
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


def _check_anchor(c: _Check, i: int, raw: Any, ref_dir: Path, prompts: list[Prompt]) -> Anchor | None:
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
            if ref is not None and _audio_problem(ref) is None and hz >= sf.info(str(ref)).samplerate / 2:
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
    _check_prompt_clips(c, d, prompts, f"anchor {raw['name']!r}")
    return Anchor(raw["name"], dir=d)


def _check_mushra(c: _Check, systems: list[System], prompts: list[Prompt]) -> MushraTest | None:
    sec = c.section("mushra")
    if sec is None:
        return None
    c.unknown(sec, {"reference", "anchors", "systems", "pages_per_rater", "question"}, "mushra")
    ref = sec.get("reference")
    ref_dir = (c.root / ref).resolve() if isinstance(ref, str) else c.root
    if not isinstance(ref, str) or not ref_dir.is_dir():
        c.add(f"`mushra.reference` must be the folder of reference clips <prompt_id>.wav, got {ref!r}")
    else:
        _check_prompt_clips(c, ref_dir, prompts, "the MUSHRA reference folder")
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


def _check_loudness(c: _Check) -> Loudness | None:
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


def _check_screening(c: _Check) -> ScreeningRules:
    if c.raw.get("screening") is None:
        return ScreeningRules()
    try:
        return parse_screening(c.raw["screening"])
    except UserError as exc:
        c.add(str(exc))
        return ScreeningRules()


def check_study(path: str | Path) -> tuple[Study | None, list[str]]:
    """Parse and check a study file. Returns ``(study, problems)``; ``study`` is None when there are problems.

    Every problem is one line naming the field (and file) and what to do. Audio files are opened with soundfile,
    so a corrupt clip is found here and not in front of a rater. Warnings (no access mode named) are in
    ``study.warnings``.
    """
    path = Path(path).resolve()
    c = _Check(_read_raw(path), path)
    _check_unknown_keys(c)
    scales = _check_scales(c)
    systems = _check_systems(c)
    prompts = _check_prompts(c)
    _check_main_clips(c, systems, prompts)
    tests = _check_tests(c)
    clips_per_rater = _check_acr_counts(c, systems, prompts, tests)
    min_ratings = c.int_field("min_ratings_per_clip", 1, 1)
    scale_names = {s.name for s in scales}
    training = _check_clip_list(c, "training", scale_names)
    gold = _check_clip_list(c, "gold", scale_names)
    attention = _check_clip_list(c, "attention_checks", scale_names)
    passwords = _check_passwords(c)
    allowed = _check_allowed_raters(c)
    access, warnings = _check_access(c)
    completion = _check_completion(c)
    cmos = _check_cmos(c, systems, prompts)
    mushra = _check_mushra(c, systems, prompts)
    loudness = _check_loudness(c)
    screening = _check_screening(c)
    seed = c.int_field("seed", 0, 0)
    if c.problems:
        return None, c.problems
    extra = {"consent_text": str(c.raw["consent_text"])} if c.raw.get("consent_text") else {}
    study = Study(
        name=str(c.raw.get("name") or path.stem), path=path, seed=seed, systems=tuple(systems),
        prompts=tuple(prompts), scales=tuple(scales), clips_per_rater=clips_per_rater,
        min_ratings_per_clip=min_ratings, training=tuple(training), gold=tuple(gold), attention_checks=tuple(attention),
        rater_password=passwords["rater_password"], admin_password=passwords["admin_password"],
        allowed_raters=allowed, screening=screening, tests=tests, cmos=cmos, mushra=mushra, access=access,
        completion=completion, loudness=loudness, warnings=warnings, **extra,
    )
    return study, []


def parse_screening(raw: Any) -> ScreeningRules:
    """Screening rules from a mapping (study `screening:` section or a `mos report --rules` file)."""
    if not isinstance(raw, dict):
        raise UserError("`screening` must be a mapping, e.g. {attention: true, min_consensus_corr: 0.2}")
    known = set(ScreeningRules.__dataclass_fields__)
    unknown = sorted(set(raw) - known)
    if unknown:
        raise UserError(f"`screening` has unknown rule(s) {unknown}; known rules: {sorted(known)}")
    try:
        rules = ScreeningRules(**raw)
    except TypeError as exc:
        raise UserError(f"`screening` is malformed: {exc}") from None
    for k in ("attention", "gold", "zero_variance"):
        if not isinstance(getattr(rules, k), bool):
            raise UserError(f"`screening.{k}` must be true or false")
    c = rules.min_consensus_corr
    if c is not None and (isinstance(c, bool) or not isinstance(c, (int, float)) or not -1 <= c <= 1):
        raise UserError(f"`screening.min_consensus_corr` must be a number in [-1, 1] or null, got {c!r}")
    a = rules.consensus_alpha
    if a is not None and (isinstance(a, bool) or not isinstance(a, (int, float)) or not 0 < a < 1):
        raise UserError(f"`screening.consensus_alpha` must be a number in (0, 1) or null, got {a!r}")
    for k in ("max_gold_failures", "min_ratings", "zero_variance_min_clips"):
        v = getattr(rules, k)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise UserError(f"`screening.{k}` must be an integer >= 0, got {v!r}")
    return rules


def load_study(path: str | Path) -> Study:
    """The checked study; :class:`UserError` naming the first problem (and how many) otherwise."""
    study, problems = check_study(path)
    if problems:
        more = f" (and {len(problems) - 1} more; run `mos validate {path}` to list them)" if len(problems) > 1 else ""
        raise UserError(problems[0] + more)
    assert study is not None
    return study


def validate_rater_id(rater_id: Any) -> str:
    """The rater id, stripped; :class:`UserError` when it is not 1-64 letters, digits, '-', '_' or '.'."""
    if not isinstance(rater_id, str) or not RATER_ID_RE.match(rater_id.strip()):
        shown = repr(rater_id)[:80]
        raise UserError(f"rater id {shown} is not allowed: use 1-64 letters, digits, '-', '_' or '.', not starting with '.' "
                        "(no spaces, slashes or other path characters)")
    return rater_id.strip()
