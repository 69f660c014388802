"""Study definition: systems × prompts, the two rating scales, training / gold / attention clips, screening rules.

A study is a YAML or JSON file. Paths are relative to the study file. Example::

    name: tclap-vs-clap
    seed: 0
    systems:                      # each a folder of clips named by prompt id: <dir>/<prompt_id>.wav|flac|ogg
      - {name: audioldm-clap,  dir: gen/clap}
      - {name: audioldm-tclap, dir: gen/tclap}
    prompts:
      - {id: p001, text: "a dog barks followed by a man speaks"}
    clips_per_rater: 8
    min_ratings_per_clip: 5
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

:func:`check_study` returns every problem (one line each); :func:`load_study` raises :class:`UserError` when
there is any.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from basekit.errors import UserError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
# A leading "." is refused too, so "." and ".." (path components) can never be rater ids.
RATER_ID_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$")
ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")

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

    def clip_path(self, system: System, prompt: Prompt) -> Path | None:
        """The clip file of ``system`` for ``prompt`` (first existing extension), or None."""
        for ext in AUDIO_EXTENSIONS:
            p = system.dir / f"{prompt.id}{ext}"
            if p.is_file():
                return p
        return None

    def to_json(self) -> str:
        """The resolved study (paths as strings, passwords left out) for the database's meta table."""
        d = asdict(self)
        d.pop("rater_password"), d.pop("admin_password")
        return json.dumps(d, default=str, sort_keys=True)


_TOP_KEYS = {
    "name", "seed", "systems", "prompts", "scales", "clips_per_rater", "min_ratings_per_clip", "training", "gold",
    "attention_checks", "rater_password", "admin_password", "allowed_raters", "consent_text", "screening",
}


def _read_raw(path: Path) -> dict:
    if not path.is_file():
        raise UserError(f"study file {path} does not exist; pass the path of a .yaml or .json study definition")
    text = path.read_text(encoding="utf-8")
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


def _int_field(raw: dict, key: str, default: int | None, problems: list[str], where: str, minimum: int) -> int:
    v = raw.get(key, default)
    if v is None:
        problems.append(f"{where}: `{key}` is required (an integer >= {minimum})")
        return minimum
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        problems.append(f"{where}: `{key}` must be an integer >= {minimum}, got {v!r}")
        return minimum
    return v


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


def check_study(path: str | Path) -> tuple[Study | None, list[str]]:
    """Parse and check a study file. Returns ``(study, problems)``; ``study`` is None when there are problems.

    Every problem is one line naming the field (and file) and what to do. Audio files are opened with soundfile,
    so a corrupt clip is found here and not in front of a rater.
    """
    path = Path(path).resolve()
    raw = _read_raw(path)
    root = path.parent
    where = path.name
    problems: list[str] = []

    for k in sorted(set(raw) - _TOP_KEYS):
        problems.append(f"{where}: unknown key `{k}` (known keys: {', '.join(sorted(_TOP_KEYS))})")

    name = str(raw.get("name") or path.stem)
    seed = _int_field(raw, "seed", 0, problems, where, 0)

    # scales
    scales: list[Scale] = []
    if raw.get("scales") is None:
        scales = list(DEFAULT_SCALES)
    elif not isinstance(raw["scales"], list) or not raw["scales"]:
        problems.append(f"{where}: `scales` must be a non-empty list of {{name, question, labels}}")
    else:
        for i, s in enumerate(raw["scales"]):
            w = f"{where}: scales[{i}]"
            if not isinstance(s, dict) or not isinstance(s.get("name"), str) or not ID_RE.match(s.get("name", "")):
                problems.append(f"{w}: needs a `name` made of letters, digits, '-', '_' or '.'")
                continue
            labels = s.get("labels")
            default = {d.name: d.labels for d in DEFAULT_SCALES}.get(s["name"])
            if labels is None and default is not None:
                labels = default
            try:
                labels = {int(k): str(v) for k, v in (labels or {}).items()}
            except (TypeError, ValueError, AttributeError):
                labels = {}
            if sorted(labels) != [1, 2, 3, 4, 5]:
                problems.append(f"{w} ({s['name']}): `labels` must give a label for each of 1, 2, 3, 4, 5")
                continue
            scales.append(Scale(s["name"], str(s.get("question") or s["name"]), labels))
        names = [s.name for s in scales]
        for dup in sorted({n for n in names if names.count(n) > 1}):
            problems.append(f"{where}: scale name {dup!r} is used twice; scale names must be unique")
    scale_names = {s.name for s in scales}

    # systems
    systems: list[System] = []
    if not isinstance(raw.get("systems"), list) or not raw.get("systems"):
        problems.append(f"{where}: `systems` must be a non-empty list of {{name, dir}}")
    else:
        for i, s in enumerate(raw["systems"]):
            w = f"{where}: systems[{i}]"
            if not isinstance(s, dict) or not isinstance(s.get("name"), str) or not s["name"].strip():
                problems.append(f"{w}: needs a `name` (the system's label in reports)")
                continue
            if not isinstance(s.get("dir"), str):
                problems.append(f"{w} ({s['name']}): needs a `dir`, the folder of its clips named <prompt_id>.wav")
                continue
            d = (root / s["dir"]).resolve()
            if not d.is_dir():
                problems.append(f"{w} ({s['name']}): folder {d} does not exist; fix `dir` (relative to the study file)")
            systems.append(System(s["name"].strip(), d))
        names = [s.name for s in systems]
        for dup in sorted({n for n in names if names.count(n) > 1}):
            problems.append(f"{where}: system name {dup!r} is used twice; system names must be unique")

    # prompts
    prompts: list[Prompt] = []
    if not isinstance(raw.get("prompts"), list) or not raw.get("prompts"):
        problems.append(f"{where}: `prompts` must be a non-empty list of {{id, text}}")
    else:
        for i, p in enumerate(raw["prompts"]):
            w = f"{where}: prompts[{i}]"
            pid = str(p.get("id")) if isinstance(p, dict) and p.get("id") is not None else ""
            if not ID_RE.match(pid):
                problems.append(f"{w}: needs an `id` of letters, digits, '-', '_' or '.' (it names the clip files)")
                continue
            if not isinstance(p.get("text"), str) or not p["text"].strip():
                problems.append(f"{w} ({pid}): needs the prompt `text` shown to raters")
                continue
            prompts.append(Prompt(pid, p["text"].strip()))
        ids = [p.id for p in prompts]
        for dup in sorted({n for n in ids if ids.count(n) > 1}):
            problems.append(f"{where}: prompt id {dup!r} is used twice; prompt ids must be unique")

    # every system × prompt clip
    for s in systems:
        if not s.dir.is_dir():
            continue
        for p in prompts:
            found = None
            for ext in AUDIO_EXTENSIONS:
                if (s.dir / f"{p.id}{ext}").is_file():
                    found = s.dir / f"{p.id}{ext}"
                    break
            if found is None:
                problems.append(f"{where}: system {s.name!r} has no clip for prompt {p.id!r}: expected "
                                f"{s.dir / (p.id + '.wav')} (or .flac/.ogg/.mp3)")
                continue
            bad = _audio_problem(found)
            if bad:
                problems.append(f"{where}: clip {found} {bad}; replace it or remove the prompt")

    n_main = len(systems) * len(prompts)
    clips_per_rater = _int_field(raw, "clips_per_rater", None, problems, where, 1)
    if n_main and clips_per_rater > n_main:
        problems.append(f"{where}: `clips_per_rater` is {clips_per_rater} but the study has only {n_main} clips "
                        f"({len(systems)} systems x {len(prompts)} prompts); lower it")
    min_ratings = _int_field(raw, "min_ratings_per_clip", 1, problems, where, 1)

    def _clip_list(key: str, kind: str) -> list:
        out = []
        items = raw.get(key) or []
        if not isinstance(items, list):
            problems.append(f"{where}: `{key}` must be a list")
            return out
        seen = set()
        for i, c in enumerate(items):
            w = f"{where}: {key}[{i}]"
            if not isinstance(c, dict) or not isinstance(c.get("file"), str):
                problems.append(f"{w}: needs a `file` (audio path relative to the study file)")
                continue
            f = (root / c["file"]).resolve()
            bad = _audio_problem(f)
            if bad:
                problems.append(f"{w}: {f} {bad}")
            text = str(c.get("text") or "").strip()
            if kind == "training":
                out.append(TrainingExample(f, text, str(c.get("note") or "").strip()))
                continue
            cid = str(c.get("id") or f"{kind}{i}")
            if not ID_RE.match(cid) or cid in seen:
                problems.append(f"{w}: `id` {cid!r} must be unique and made of letters, digits, '-', '_' or '.'")
            seen.add(cid)
            if not text:
                problems.append(f"{w}: needs the `text` shown with the clip")
            out.append(CheckClip(cid, f, text, _parse_expect(c.get("expect"), scale_names, w, problems)))
        return out

    training = _clip_list("training", "training")
    gold = _clip_list("gold", "gold")
    attention = _clip_list("attention_checks", "attention")

    pw = {}
    for k in ("rater_password", "admin_password"):
        v = raw.get(k)
        if v is not None and (not isinstance(v, str) or not v):
            problems.append(f"{where}: `{k}` must be a non-empty string or left out")
            v = None
        pw[k] = v

    allowed = raw.get("allowed_raters")
    if allowed is not None:
        if not isinstance(allowed, list) or not all(isinstance(a, str) and RATER_ID_RE.match(a) for a in allowed):
            problems.append(f"{where}: `allowed_raters` must be a list of rater ids (letters, digits, -_. ; <= 64)")
            allowed = None
        else:
            allowed = tuple(allowed)

    screening = ScreeningRules()
    if raw.get("screening") is not None:
        try:
            screening = parse_screening(raw["screening"])
        except UserError as exc:
            problems.append(f"{where}: {exc}")

    if problems:
        return None, problems
    kwargs = {}
    if raw.get("consent_text"):
        kwargs["consent_text"] = str(raw["consent_text"])
    study = Study(
        name=name, path=path, seed=seed, systems=tuple(systems), prompts=tuple(prompts), scales=tuple(scales),
        clips_per_rater=clips_per_rater, min_ratings_per_clip=min_ratings, training=tuple(training),
        gold=tuple(gold), attention_checks=tuple(attention), rater_password=pw["rater_password"],
        admin_password=pw["admin_password"], allowed_raters=allowed, screening=screening, **kwargs,
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
