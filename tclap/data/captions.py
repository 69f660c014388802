"""Order-phrase caption templates for mix-ups, and the parser that reads the event order back.

A mix-up caption joins short event phrases ("a beep", "a knock") with an order phrase. The negative caption
says the events happen in the *reversed* order: it is the same template filled with the events reversed,
so that the meaning flips even for templates that name the later event first:

    "a beep followed by a knock"  ->  "a knock followed by a beep"
    "a knock after a beep"        ->  "a beep after a knock"     (never "a knock before a beep", which keeps
                                                                    the meaning and only changes the connector)

Overlapping events ("a beep while a siren") have no order, hence no negative caption (they still train the
contrastive loss L_c).

:func:`parse_event_order` reads the order back from a caption made from these templates or from a plain
prompt ("a beep followed by a knock", "after the siren, a knock"): it finds the vocabulary's event mentions
and turns the connector between neighbouring mentions into precedence constraints.
"""

from __future__ import annotations

import re
from typing import Iterable, Literal, Mapping, Sequence

import numpy as np

Relation = Literal["sequence", "overlap"]

#: 2-event order templates; ``{0}`` happens first, ``{1}`` second.
SEQUENCE_TEMPLATES_2: tuple[str, ...] = (
    "{0} followed by {1}",
    "{0} and then {1}",
    "{0} before {1}",
    "{1} after {0}",
    "first {0}, then {1}",
    "{0}, then {1}",
    "{0} is followed by {1}",
    "{0} and later {1}",
    "{0}, after that {1}",
    "{1} following {0}",
)

#: 3-event chains; ``{0}`` -> ``{1}`` -> ``{2}`` in time.
SEQUENCE_TEMPLATES_3: tuple[str, ...] = (
    "{0} followed by {1} and then {2}",
    "{0}, then {1}, then {2}",
    "first {0}, then {1}, and finally {2}",
    "{0} before {1} before {2}",
    "{0} followed by {1} followed by {2}",
    "{0}, {1} and then {2}",
)

#: overlap templates (simultaneous events: no order, no negative).
OVERLAP_TEMPLATES: tuple[str, ...] = (
    "{0} while {1}",
    "{0} together with {1}",
    "{0} and {1} at the same time",
    "{0} mixed with {1}",
)


def capitalize_first(text: str) -> str:
    """Upper-case the first letter only (``"a beep"`` -> ``"A beep"``; the rest is kept)."""
    return text[:1].upper() + text[1:] if text else text


def make_caption(
    phrases: Sequence[str],
    relation: Relation,
    rng: np.random.Generator,
    capitalize: bool = True,
) -> tuple[str, str]:
    """A positive caption for events in ``phrases`` (time order) and its order-reversed negative.

    Args:
        phrases: event phrases in the order they happen (2 or 3 for ``sequence``, 2 for ``overlap``).
        relation: ``"sequence"`` (concatenated events) or ``"overlap"`` (simultaneous).
        rng: picks the template.
        capitalize: upper-case the first letter of both captions.

    Returns:
        ``(positive, negative)``; ``negative`` is ``""`` for ``overlap`` (no order to reverse). The negative
        uses the same template with the events reversed, so its meaning is the reversed order.
    """
    n = len(phrases)
    if relation == "overlap":
        if n != 2:
            raise ValueError(f"overlap captions take 2 events, got {n}")
        tpl = OVERLAP_TEMPLATES[int(rng.integers(len(OVERLAP_TEMPLATES)))]
        pos = tpl.format(*phrases)
        return (capitalize_first(pos) if capitalize else pos), ""
    if relation != "sequence":
        raise ValueError(f"unknown relation {relation!r}; use 'sequence' or 'overlap'")
    if n == 2:
        templates = SEQUENCE_TEMPLATES_2
    elif n == 3:
        templates = SEQUENCE_TEMPLATES_3
    else:
        raise ValueError(f"sequence captions take 2 or 3 events, got {n}")
    if len(set(phrases)) != n:
        raise ValueError(f"event phrases must differ so that the order is visible: {list(phrases)}")
    tpl = templates[int(rng.integers(len(templates)))]
    pos = tpl.format(*phrases)
    neg = tpl.format(*reversed(phrases))
    if capitalize:
        pos, neg = capitalize_first(pos), capitalize_first(neg)
    return pos, neg


# ----------------------------------------------------------------------------------------------------------
# Parsing the order back.

_ARTICLES = r"(?:a|an|the|some|one)"

# Connector classes. The text between two neighbouring event mentions (and the text before the first one)
# is matched against these rules in order, the most specific first ("after that" is forward although
# "after" alone is backward; "followed by" before "following"). "forward": the earlier-mentioned event
# happens first; "backward": the later-mentioned event happens first ("X after Y"); "overlap": simultaneous.
_CONNECTOR_RULES: tuple[tuple[str, str], ...] = (
    (r"after that|after which|afterwards?|after this", "forward"),
    (r"followed by|succeeded by", "forward"),
    (r"preceded by", "backward"),
    (r"then", "forward"),
    (
        r"while|whilst|as|together with|along with|with|at the same time|simultaneously|during|mixed with"
        r"|over|amid|accompanied by",
        "overlap",
    ),
    (r"before|later|next|subsequently|finally|precedes?|preceding|until|and finally", "forward"),
    (r"after|following|once|since", "backward"),
)


def classify_connector(connector: str) -> str | None:
    """``"forward"``, ``"backward"``, ``"overlap"`` or ``None`` (neutral: ``","``, ``"and"``, nothing)."""
    c = " " + re.sub(r"\s+", " ", re.sub(r"[^a-z' ]+", " ", connector.lower())) + " "
    for pattern, kind in _CONNECTOR_RULES:
        if re.search(rf" (?:{pattern}) ", c):
            return kind
    return None


_classify = classify_connector


def _vocabulary_patterns(vocabulary: Mapping[str, str] | Iterable[str]) -> list[tuple[str, re.Pattern]]:
    """One regex per label matching its phrase with or without the article, its label text, and plurals."""
    vocab = dict(vocabulary) if isinstance(vocabulary, Mapping) else {v: v for v in vocabulary}
    out = []
    for label, phrase in vocab.items():
        cores = set()
        for text in (phrase, label.replace("_", " ")):
            core = re.sub(rf"^{_ARTICLES}\s+", "", text.strip().lower())
            if core:
                cores.add(core)
        # Longest alternative first so that "rising chirp" wins over "chirp"-like shorter cores.
        alts = "|".join(re.escape(c) for c in sorted(cores, key=len, reverse=True))
        out.append((label, re.compile(rf"\b(?:{_ARTICLES}\s+)?(?:{alts})(?:e?s)?\b", re.IGNORECASE)))
    return out


def find_mentions(text: str, vocabulary: Mapping[str, str] | Iterable[str]) -> list[tuple[int, int, str]]:
    """Non-overlapping event mentions ``(start, end, label)`` in text order; longer matches win."""
    cands = []
    for label, pat in _vocabulary_patterns(vocabulary):
        for m in pat.finditer(text):
            cands.append((m.start(), m.end(), label))
    cands.sort(key=lambda c: (-(c[1] - c[0]), c[0]))
    taken: list[tuple[int, int, str]] = []
    for c in cands:
        if all(c[1] <= s or c[0] >= e for s, e, _ in taken):
            taken.append(c)
    return sorted(taken)


def _unique_topological_order(n: int, edges: set[tuple[int, int]]) -> list[int] | None:
    """The only order of ``0..n-1`` consistent with ``edges`` (a, b: a before b), or None if not unique."""
    indeg = [0] * n
    for _, b in edges:
        indeg[b] += 1
    order: list[int] = []
    ready = [i for i in range(n) if indeg[i] == 0]
    while ready:
        if len(ready) > 1:
            return None  # two events with no constraint between them: the order is not determined
        i = ready.pop()
        order.append(i)
        for a, b in edges:
            if a == i:
                indeg[b] -= 1
                if indeg[b] == 0:
                    ready.append(b)
    return order if len(order) == n else None  # a cycle ("A before B before A") -> None


def parse_event_order(text: str, vocabulary: Mapping[str, str] | Iterable[str] | None = None) -> list[str] | None:
    """The labels in the order ``text`` says they happen, or None when no order can be read.

    Args:
        text: a caption or prompt ("A knock after a beep", "first a siren, then a bell", ...).
        vocabulary: label -> phrase (default: the built-in bank's :data:`tclap.synth.EVENT_PHRASES`) or a
            list of labels. Mentions match the phrase with or without its article, the label with ``_`` as a
            space, and a plural ``s``.

    Returns:
        ``[label, ...]`` in time order; ``[label]`` for a single mention; ``None`` when no event is named,
        when events are simultaneous ("while", "with", "at the same time"), or when the connectors leave the
        order open ("a beep and a knock").

    Neutral separators ("," or "and" alone) take the direction of the next explicit connector in the chain
    ("a beep, a knock and then a bell"); a leading "first" makes a chain of neutral separators forward.
    """
    if vocabulary is None:
        from tclap.synth import EVENT_PHRASES  # noqa: PLC0415 (tclap.synth loads numpy; only the default vocabulary needs it)

        vocabulary = EVENT_PHRASES
    mentions = find_mentions(text, vocabulary)
    if not mentions:
        return None
    if len(mentions) == 1:
        return [mentions[0][2]]
    prefix = text[: mentions[0][0]]
    suffix = text[mentions[-1][1] :]
    connectors = [text[mentions[i][1] : mentions[i + 1][0]] for i in range(len(mentions) - 1)]
    if _classify(suffix) == "overlap" or _classify(prefix) == "overlap":
        return None
    kinds = [_classify(c) for c in connectors]
    if "overlap" in kinds:
        return None
    # "After X, Y": a backward word before the first mention with a neutral connector -> X happens first.
    pre = _classify(prefix)
    if pre == "backward" and len(mentions) == 2 and kinds[0] is None:
        kinds[0] = "forward"
    elif pre == "forward" and re.search(r"\bbefore\b", prefix.lower()) and len(mentions) == 2 and kinds[0] is None:
        kinds[0] = "backward"  # "Before X, Y": Y happens first
    # Neutral separators inherit the next explicit direction; with "first ..." at the start, forward.
    nxt = "forward" if re.search(r"\bfirst\b", prefix.lower()) else None
    for i in range(len(kinds) - 1, -1, -1):
        if kinds[i] is None:
            kinds[i] = nxt
        else:
            nxt = kinds[i]
    if any(k is None for k in kinds):
        # A trailing neutral chain after "first": use the explicit direction that came before.
        prev = None
        for i, k in enumerate(kinds):
            if k is None:
                kinds[i] = prev
            prev = kinds[i]
    if any(k is None for k in kinds):
        return None
    edges = {(i, i + 1) if k == "forward" else (i + 1, i) for i, k in enumerate(kinds)}
    order = _unique_topological_order(len(mentions), edges)
    if order is None:
        return None
    return [mentions[i][2] for i in order]
