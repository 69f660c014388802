"""What a model knows: the sound events an AudioLDM was trained on, stored beside it, and a check of prompts against it.

A model folder may hold ``events.json``::

    {"source": "where the events came from", "events": [{"label": "bark", "phrase": "a dog-like bark"}, ...]}

``audioldm-cond generate --list-events [--model NAME|DIR]`` prints the phrases, one per line; a folder without the
file is one line and exit 2. Before a model loads, ``generate`` warns about a prompt that names none of these events
(:func:`check_prompt`): such a prompt gets whatever the model makes of words it never heard, typically noise, yet a
CLAP score as high as for a prompt it knows.

The check is lexical, not semantic. A prompt is cut into event mentions (at order connectors: "followed by",
"then", "after", ...; and at "and", "with", "while", commas), and a mention names an event when it shares a key
word with it: the words of the event's label and phrase, lower-cased and reduced to a crude stem ("barks",
"barking" -> "bark"; "clapping" -> "clap"), without function words and generic modifiers ("a", "of", "like",
"low", "rising", ...). So "a dog barks" names ``bark`` ("a dog-like bark") and "a man speaks" names nothing in the
built-in bank.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Sequence

from basekit.atomic import atomic_write_text
from basekit.errors import UserError
from tclap.negatives.rule import analyse
from tclap.synth import EVENT_CLASSES, event_phrase

EVENTS_FILE = "events.json"

# Words that name no sound event: articles, prepositions, verbs of hearing, and modifiers that several events share.
_STOP = frozenset("""
a an the of some one two three several many few its it his her their this that these those
is are was were be being been can could heard hear hearing sound sounds followed by then and after before
while with as during in on at from to into of for someone something somebody
like low high loud soft quiet faint distant short long brief rise rising fall falling
""".split())
_CUT = re.compile(r",|;|\band\b|\bwith\b|\bwhile\b|\bwhilst\b|\bas\b", re.IGNORECASE)


def stem(word: str) -> str:
    """A crude English stem: ``barks``/``barking``/``barked`` -> ``bark``, ``clapping`` -> ``clap``, ``buzzer`` ->
    ``buzz``; the same rule on both sides of a comparison is all the check needs."""
    w = word.lower()
    for suf in ("ing", "ed", "er", "es", "s"):
        if w.endswith(suf) and len(w) - len(suf) >= 3:
            w = w[: -len(suf)]
            # a doubled final consonant from inflection (clapp-ing, humm-ed), but not roll / buzz / hiss
            if suf in ("ing", "ed", "er") and len(w) >= 2 and w[-1] == w[-2] and w[-1] not in "lsz":
                w = w[:-1]
            break
    return w


def key_words(text: str) -> set[str]:
    """Stems of the content words of ``text`` (labels split at ``_`` and ``-``)."""
    words = re.findall(r"[a-z]+", text.lower().replace("_", " ").replace("-", " "))
    return {stem(w) for w in words if w not in _STOP and len(w) > 1}


def event_mentions(prompt: str) -> list[str]:
    """The prompt cut into event mentions: at order connectors (via :func:`tclap.negatives.rule.analyse`), then at
    "and", "with", "while", "as" and commas. ``"a beep followed by a knock"`` -> ``["a beep", "a knock"]``."""

    groups = analyse(prompt).groups or [prompt]
    out = []
    for g in groups:
        out += [m.strip(" .!?") for m in _CUT.split(g) if m and m.strip(" .!?")]
    return out or [prompt.strip()]


def read_events(model_dir: str | os.PathLike) -> list[dict] | None:
    """The ``[{"label", "phrase"}]`` list of ``model_dir/events.json``, or None when the folder has none."""
    f = Path(model_dir) / EVENTS_FILE
    if not f.is_file():
        return None
    try:
        data = json.loads(f.read_text(encoding="utf-8"))
        events = data["events"] if isinstance(data, dict) else data
        out = []
        for e in events:
            if isinstance(e, str):
                e = {"label": e, "phrase": e}
            if not isinstance(e, dict) or not isinstance(e.get("phrase") or e.get("label"), str):
                raise TypeError(e)
            out.append({"label": str(e.get("label") or e["phrase"]), "phrase": str(e.get("phrase") or e["label"])})
    except (ValueError, KeyError, TypeError):
        raise UserError(f"{f} is not an event list ({{\"events\": [{{\"label\", \"phrase\"}}, ...]}}); fix or remove "
                        "it") from None
    return out


def write_events(model_dir: str | os.PathLike, events: Sequence[dict], source: str) -> Path:
    """Write ``model_dir/events.json`` (atomically) from ``[{"label", "phrase"}]``."""
    rows = [{"label": str(e["label"]), "phrase": str(e["phrase"])} for e in events]
    text = json.dumps({"source": source, "events": rows}, indent=2, ensure_ascii=False) + "\n"
    return atomic_write_text(Path(model_dir) / EVENTS_FILE, text)


def builtin_events() -> list[dict]:
    """The built-in procedural bank's events (``tclap.synth``), as the shipped tiny models were trained on them."""

    return [{"label": c, "phrase": event_phrase(c)} for c in EVENT_CLASSES]


def check_prompt(prompt: str, events: Sequence[dict]) -> tuple[list[str], list[str]]:
    """``(known, unknown)`` event mentions of ``prompt``: a mention is known when it shares a key word with an event
    (see the module docstring)."""
    keys = [key_words(f"{e['label']} {e['phrase']}") for e in events]
    known, unknown = [], []
    for m in event_mentions(prompt):
        words = key_words(m)
        (known if any(words & k for k in keys) else unknown).append(m)
    return known, unknown


__all__ = ["EVENTS_FILE", "builtin_events", "check_prompt", "event_mentions", "key_words", "read_events", "stem",
           "write_events"]
