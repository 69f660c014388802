"""The whole study: the :class:`Study` and :func:`check_study` / :func:`load_study`, which read the file and
run one check per section (:mod:`demo.study.sections`, :mod:`demo.study.raters`,
:mod:`demo.study.comparisons`), then build the study only when no check found a problem."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from basekit.errors import UserError
from demo.study.comparisons import CmosTest, MushraTest, check_cmos, check_mushra
from demo.study.model import (
    CheckClip,
    Completion,
    Loudness,
    Prompt,
    Scale,
    System,
    TrainingExample,
    find_clip,
)
from demo.study.parse import Check, read_raw
from demo.study.raters import (
    check_access,
    check_allowed_raters,
    check_completion,
    check_passwords,
)
from demo.study.screening import ScreeningRules
from demo.study.sections import (
    check_acr_counts,
    check_clip_list,
    check_loudness,
    check_main_clips,
    check_prompts,
    check_scales,
    check_screening,
    check_systems,
    check_tests,
)


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


def check_unknown_keys(c: Check) -> None:
    for k in sorted(set(c.raw) - _TOP_KEYS, key=str):
        c.add(f"unknown key `{k}` (known keys: {', '.join(sorted(_TOP_KEYS))})")


def check_study(path: str | Path) -> tuple[Study | None, list[str]]:
    """Parse and check a study file. Returns ``(study, problems)``; ``study`` is None when there are problems.

    Every problem is one line naming the field (and file) and what to do. Audio files are opened with soundfile,
    so a corrupt clip is found here and not in front of a rater. Warnings (no access mode named) are in
    ``study.warnings``.
    """
    path = Path(path).resolve()
    c = Check(read_raw(path), path)
    check_unknown_keys(c)
    scales = check_scales(c)
    systems = check_systems(c)
    prompts = check_prompts(c)
    check_main_clips(c, systems, prompts)
    tests = check_tests(c)
    clips_per_rater = check_acr_counts(c, systems, prompts, tests)
    min_ratings = c.int_field("min_ratings_per_clip", 1, 1)
    scale_names = {s.name for s in scales}
    training = check_clip_list(c, "training", scale_names)
    gold = check_clip_list(c, "gold", scale_names)
    attention = check_clip_list(c, "attention_checks", scale_names)
    passwords = check_passwords(c)
    allowed = check_allowed_raters(c)
    access, warnings = check_access(c)
    completion = check_completion(c)
    cmos = check_cmos(c, systems, prompts)
    mushra = check_mushra(c, systems, prompts)
    loudness = check_loudness(c)
    screening = check_screening(c)
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


def load_study(path: str | Path) -> Study:
    """The checked study; :class:`UserError` naming the first problem (and how many) otherwise."""
    study, problems = check_study(path)
    if problems:
        more = f" (and {len(problems) - 1} more; run `mos validate {path}` to list them)" if len(problems) > 1 else ""
        raise UserError(problems[0] + more)
    assert study is not None
    return study
