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

One concept per module; every public name is importable from ``demo.study`` itself:

- :mod:`demo.study.model`: the parts (systems, prompts, scales, training / check clips, loudness, completion);
- :mod:`demo.study.parse`: reading the file and the problem collector the checks share;
- :mod:`demo.study.sections`: the check of each core section;
- :mod:`demo.study.raters`: rater ids, passwords, access modes, the completion code;
- :mod:`demo.study.comparisons`: CMOS / A/B and MUSHRA pages and their checks;
- :mod:`demo.study.screening`: the rater screening rules of ``mos report``;
- :mod:`demo.study.definition`: the :class:`Study` and :func:`check_study` / :func:`load_study`.
"""

from demo.study.comparisons import (
    AB_QUESTION,
    CMOS_LABELS,
    CMOS_QUESTION,
    CMOS_TYPES,
    MAX_MUSHRA_CONDITIONS,
    MUSHRA_QUESTION,
    Anchor,
    CmosTest,
    MushraTest,
)
from demo.study.definition import Study, check_study, load_study
from demo.study.model import (
    ACR_LABELS,
    AUDIO_EXTENSIONS,
    DEFAULT_SCALES,
    ID_RE,
    TEMPORAL_LABELS,
    CheckClip,
    Completion,
    Loudness,
    Prompt,
    Scale,
    System,
    TrainingExample,
    find_clip,
)
from demo.study.raters import ACCESS_MODES, RATER_ID_RE, validate_rater_id
from demo.study.screening import ScreeningRules, parse_screening
from demo.study.sections import TESTS

__all__ = [
    "AB_QUESTION",
    "ACCESS_MODES",
    "ACR_LABELS",
    "AUDIO_EXTENSIONS",
    "CMOS_LABELS",
    "CMOS_QUESTION",
    "CMOS_TYPES",
    "DEFAULT_SCALES",
    "ID_RE",
    "MAX_MUSHRA_CONDITIONS",
    "MUSHRA_QUESTION",
    "RATER_ID_RE",
    "TEMPORAL_LABELS",
    "TESTS",
    "Anchor",
    "CheckClip",
    "CmosTest",
    "Completion",
    "Loudness",
    "MushraTest",
    "Prompt",
    "Scale",
    "ScreeningRules",
    "Study",
    "System",
    "TrainingExample",
    "check_study",
    "find_clip",
    "load_study",
    "parse_screening",
    "validate_rater_id",
]
