"""Rule-based negative captions: split a caption into event clauses at temporal connectors and reorder.

    "A man speaks followed by a dog barking."  ->  "A dog barks followed by a man speaking."
    "After a door closes, a woman laughs"       ->  "After a woman laughs, a door closes"
    "Birds chirp while a car passes"            ->  no negative: simultaneous events
    "A dog barks loudly"                        ->  no negative: single event

How it works:

1. A leading "After X, Y" / "Before X, Y" / "First ..." is recognised; otherwise the caption is cut at
   connectors ("followed by", "and then", ", then", "before", "after", "subsequently", ...).
2. Clauses joined by simultaneous connectors ("while", "as", "during", ...) stay together as one group:
   only the order *between* groups is swapped.
3. The groups fill the connector skeleton in reversed order, so "B after A" becomes "A after B" (the
   meaning reverses; the connector is never merely swapped).
4. Grammar fix-ups: a clause moved into a slot that needs another verb form is converted
   (finite "a dog barks" <-> gerund "a dog barking", as after "followed by"); the new first clause is
   capitalised and the old one lower-cased; the final punctuation is kept.

The result is checked by :func:`tclap.negatives.validate.validate_negative` like any LLM output.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tclap.data.captions import _unique_topological_order

DETERMINERS = frozenset("a an the some one two three four several many few his her their its my your our this that".split())
PLURAL_NOUNS = frozenset("people men women children feet geese mice sheep police".split())
PARTICLES = frozenset(
    """up down in out on off away by over under through around back again nearby outside inside far
    and or but with of to from at into onto for in the distance""".split()
)
NOT_VERBS = frozenset(
    """is was has this his its us as yes plus thus bus gas glass grass bass class
    lots always perhaps towards afterwards sometimes""".split()
)

# (kind, regex) in priority order: longer phrases first so ", and then" wins over "then".
_SPLITTERS: tuple[tuple[str, str], ...] = (
    ("forward", r",?\s+and\s+then\s+"),
    ("forward", r",?\s+followed\s+by\s+"),
    ("forward", r",?\s+after\s+(?:that|which|this)[,]?\s+"),
    ("forward", r",?\s+and\s+(?:later|afterwards?|subsequently|finally|eventually)[,]?\s+"),
    ("forward", r",\s*(?:then|afterwards?|subsequently|finally|later)[,]?\s+"),
    ("forward", r"\s+then\s+"),
    ("forward", r",?\s+before\s+"),
    ("forward", r",?\s+subsequently\s+"),
    ("backward", r",?\s+after\s+(?!a\s+while|some\s+time|a\s+moment|a\s+few\b|a\s+short\b|a\s+pause\b)"),
    ("backward", r",?\s+following\s+"),
    ("overlap", r",?\s+(?:while|whilst)\s+"),
    ("overlap", r",?\s+and\s+simultaneously\s+"),
    ("overlap", r",?\s+at\s+the\s+same\s+time\s+as\s+"),
    ("overlap", r"(?<!such)(?<!as well)\s+as\s+(?!well\b|if\b|though\b|a\s+result\b|much\b|many\b)"),
    ("overlap", r",?\s+during\s+"),
)
_SPLIT_RE = re.compile("|".join(f"(?P<k{i}>{p})" for i, (_, p) in enumerate(_SPLITTERS)), re.IGNORECASE)
_PREFIX_RE = re.compile(
    r"^(?P<word>after|once|as\s+soon\s+as|before|while|whilst|as|when)\s+(?P<x>[^,]+?),\s*(?P<y>.+)$", re.IGNORECASE
)
_FIRST_RE = re.compile(r"^(?P<word>first(?:ly)?|at\s+first|initially)[,]?\s+", re.IGNORECASE)


@dataclass
class Analysis:
    """A caption cut into groups of clauses.

    Attributes:
        groups: the clause groups in text order (simultaneous clauses stay in one group).
        links: the connector text between neighbouring groups (``len(groups) - 1``).
        kinds: ``"forward"`` / ``"backward"`` per link.
        order: indices of ``groups`` in time order, or None when it cannot be determined.
        reason: why there is no usable order ("" when there is one).
        prefix: a leading word kept in front ("First", or "After" for "After X, Y").
        pattern: ``"prefix"`` for "After X, Y" captions, ``"chain"`` otherwise.
        end: trailing punctuation.
    """

    groups: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    order: list[int] | None = None
    reason: str = ""
    prefix: str = ""
    pattern: str = "chain"
    end: str = ""

    def ordered_groups(self) -> list[str]:
        return [self.groups[i] for i in self.order] if self.order is not None else []


def _single_or_unordered(body: str) -> str:
    if re.search(r"\s(?:and|with|along with|together with)\s|,|;", body, re.IGNORECASE):
        return "no temporal order between the events (no order connector)"
    return "single event"


def analyse(caption: str) -> Analysis:
    """Cut ``caption`` into clause groups and find their time order (see :class:`Analysis`)."""
    text = " ".join(caption.strip().split())
    m_end = re.search(r"[.!?]+$", text)
    end = m_end.group(0) if m_end else ""
    body = text[: len(text) - len(end)].strip()
    a = Analysis(end=end)
    if not body:
        a.reason = "empty caption"
        return a
    m = _PREFIX_RE.match(body)
    if m:
        word = m.group("word")
        a.prefix, a.pattern = word, "prefix"
        a.groups = [m.group("x").strip(), m.group("y").strip()]
        w = word.lower()
        if w in ("while", "whilst", "as", "when"):
            a.reason = f"simultaneous events ('{w}')"
            return a
        # "After X, Y" / "Once X, Y": X happens first. "Before X, Y": Y happens first.
        a.kinds = ["backward" if w == "before" else "forward"]
        a.links = [", "]
        a.order = [1, 0] if w == "before" else [0, 1]
        return a
    m = _FIRST_RE.match(body)
    if m:
        a.prefix = m.group("word")
        body = body[m.end() :]
    pieces, links, kinds = [], [], []
    pos = 0
    for sm in _SPLIT_RE.finditer(body):
        kind = _SPLITTERS[int(sm.lastgroup[1:])][0]
        pieces.append(body[pos : sm.start()])
        links.append(sm.group(0))
        kinds.append(kind)
        pos = sm.end()
    pieces.append(body[pos:])
    if any(not p.strip() for p in pieces):
        a.reason = "could not split the caption into event clauses"
        return a
    # Merge clauses joined by simultaneous connectors into one group.
    groups, g_links, g_kinds = [pieces[0]], [], []
    for piece, link, kind in zip(pieces[1:], links, kinds):
        if kind == "overlap":
            groups[-1] = groups[-1] + link + piece
        else:
            groups.append(piece)
            g_links.append(link)
            g_kinds.append(kind)
    a.groups, a.links, a.kinds = [g.strip() for g in groups], g_links, g_kinds
    if len(groups) == 1:
        a.reason = (
            f"simultaneous events ('{links[0].strip(', ').lower()}')" if links else _single_or_unordered(body)
        )
        return a
    edges = {(i, i + 1) if k == "forward" else (i + 1, i) for i, k in enumerate(g_kinds)}
    a.order = _unique_topological_order(len(groups), edges)
    if a.order is None:
        a.reason = "ambiguous order (mixed 'before'/'after' connectors)"
    return a


# ----------------------------------------------------------------------------------------------------------
# Verb-form fix-ups (heuristics for English captions; failures leave the clause as it is).


def _is_det(w: str) -> bool:
    return w.lower() in DETERMINERS


def _syllables(w: str) -> int:
    return len(re.findall(r"[aeiouy]+", w.lower()))


def _is_cvc(w: str) -> bool:
    return len(w) >= 3 and bool(re.match(r".*[^aeiou][aeiouy][^aeiouwxy]$", w.lower())) and _syllables(w) == 1


def gerund(verb: str) -> str:
    """``"barks"`` / ``"bark"`` -> ``"barking"``; ``"closes"`` -> ``"closing"``; ``"hums"`` -> ``"humming"``."""
    v = verb.lower()
    if v.endswith("ies") and len(v) > 4:
        base = v[:-3] + "y"
    elif v.endswith("es") and re.search(r"(ss|x|z|ch|sh|o)$", v[:-2]):
        base = v[:-2]
    elif v.endswith("s") and not v.endswith("ss"):
        base = v[:-1]
    else:
        base = v
    if base.endswith("ie"):
        return base[:-2] + "ying"
    if base.endswith("e") and not base.endswith(("ee", "ye", "oe")) and len(base) > 2:
        return base[:-1] + "ing"
    if _is_cvc(base):
        return base + base[-1] + "ing"
    return base + "ing"


def base_from_gerund(g: str) -> str:
    """``"barking"`` -> ``"bark"``, ``"closing"`` -> ``"close"``, ``"humming"`` -> ``"hum"``."""
    s = g.lower()[:-3]
    if len(s) > 2 and s[-1] == s[-2] and s[-2:] not in ("ll", "ss", "zz", "ff") and _syllables(s) == 1:
        return s[:-1]
    if re.search(r"[^aeiou]l$", s) or re.search(r"(?:nc|rc|rg|dg|ng(?<=ang)|ls|rs|ns|v|z)$", s):
        return s + "e"
    if _is_cvc(s) and not s.endswith(("ng", "nk")):
        return s + "e"
    return s


def third_person(base: str) -> str:
    if re.search(r"(s|x|z|ch|sh|o)$", base):
        return base + "es"
    if re.search(r"[^aeiou]y$", base):
        return base[:-1] + "ies"
    return base + "s"


def _tokens(clause: str) -> list[str]:
    return clause.split(" ")


def _bare(w: str) -> str:
    return re.sub(r"[^A-Za-z'-]", "", w)


def verb_form(clause: str) -> str:
    """``"finite"`` ("a dog barks"), ``"gerund"`` ("a dog barking") or ``"np"`` (no verb found)."""
    if _find_finite(clause) is not None:
        return "finite"
    if _find_gerund(clause) is not None:
        return "gerund"
    return "np"


def _find_gerund(clause: str) -> int | None:
    toks = _tokens(clause)
    for i, t in enumerate(toks):
        w = _bare(t).lower()
        if i >= 1 and len(w) > 4 and w.endswith("ing") and not _is_det(_bare(toks[i - 1])):
            if _bare(toks[i - 1]).lower() in ("is", "are", "was", "were"):
                return None  # progressive: finite
            return i
    return None


def _find_finite(clause: str) -> tuple[int, str] | None:
    """Index and kind ("aux", "s", "base") of the finite verb, or None."""
    toks = _tokens(clause)
    for i, t in enumerate(toks):
        w = _bare(t).lower()
        if i == 0 or not w:
            continue
        prev = _bare(toks[i - 1]).lower()
        if w in ("is", "are", "was", "were"):
            return i, "aux"
        if _is_det(prev) or prev in ("and", "of", "with", "by", "in", "on", "to"):
            continue
        if w.endswith("s") and not w.endswith(("ss", "'s")) and w not in NOT_VERBS and len(w) > 2:
            return i, "s"
        plural_subject = (prev.endswith("s") and not prev.endswith("ss") and not _is_det(prev)) or prev in PLURAL_NOUNS
        if (
            plural_subject
            and w.isalpha()
            and not w.endswith(("ing", "ed", "ly"))
            and w not in DETERMINERS
            and w not in PARTICLES
        ):
            return i, "base"
        if w.endswith("ing"):
            return None  # a gerund comes first: not a finite clause
    return None


def _singular(subject: list[str]) -> bool:
    if not subject:
        return True
    head = _bare(subject[-1]).lower()
    first = _bare(subject[0]).lower()
    if first in ("a", "an", "one", "someone", "something", "somebody", "this", "that"):
        return True
    if head in PLURAL_NOUNS or (head.endswith("s") and not head.endswith("ss")):
        return False
    return True


def to_gerund(clause: str) -> str | None:
    """``"a dog barks loudly"`` -> ``"a dog barking loudly"``; None when no verb is found."""
    found = _find_finite(clause)
    if found is None:
        return None
    i, kind = found
    toks = _tokens(clause)
    if kind == "aux":
        nxt = _bare(toks[i + 1]).lower() if i + 1 < len(toks) else ""
        if nxt.endswith("ing"):
            return " ".join(toks[:i] + toks[i + 1 :])
        return " ".join(toks[:i] + ["being"] + toks[i + 1 :])  # "a door is opened" -> "a door being opened"
    word = toks[i]
    tail = word[len(_bare(word)) :]
    return " ".join(toks[:i] + [gerund(_bare(word)) + tail] + toks[i + 1 :])


def to_finite(clause: str) -> str | None:
    """``"a dog barking loudly"`` -> ``"a dog barks loudly"``; None when no gerund is found."""
    i = _find_gerund(clause)
    if i is None:
        return None
    toks = _tokens(clause)
    word = toks[i]
    bare = _bare(word)
    tail = word[len(bare) :]
    singular = _singular(toks[:i])
    if bare.lower() == "being":
        new = "is" if singular else "are"
    else:
        base = base_from_gerund(bare)
        new = third_person(base) if singular else base
    return " ".join(toks[:i] + [new + tail] + toks[i + 1 :])


def _convert(clause: str, want: str) -> str:
    have = verb_form(clause)
    if want == have or want == "np" or have == "np":
        return clause
    out = to_gerund(clause) if want == "gerund" else to_finite(clause)
    return out if out is not None else clause


def _lower_first(text: str) -> str:
    w = text.split(" ", 1)[0]
    # Keep "I" and acronyms ("TV") as they are; "A", "The", "Birds" were capitals of the sentence start.
    if w == "I" or (len(w) > 1 and w.isupper()):
        return text
    return text[:1].lower() + text[1:]


def _upper_first(text: str) -> str:
    return text[:1].upper() + text[1:]


@dataclass
class RuleResult:
    negative: str | None
    reason: str  # "" when a negative was made


def rule_negative(caption: str) -> RuleResult:
    """The order-swapped negative of ``caption`` by the clause rules, or ``None`` with the reason."""
    a = analyse(caption)
    if a.order is None:
        return RuleResult(None, a.reason or "no order found")
    n = len(a.groups)
    forms = [verb_form(g) for g in a.groups]
    for i in range(1, n):
        first = _bare(a.groups[i].split(" ", 1)[0]).lower()
        if (
            forms[i] == "np"
            and forms[0] == "finite"
            and re.search(r"\b(and|then)\b", a.links[i - 1], re.IGNORECASE)
            and not _is_det(first)
            and re.search(r"(s|ed|ing)$", first)
        ):
            # "An engine idles and then revs up": the second clause has no subject of its own.
            return RuleResult(None, "a clause shares the subject of another (cannot reorder it safely)")
    # Fill the same connector skeleton with the groups reversed; for chains whose connectors all point the
    # same way this reverses the time order, for mixed chains it gives another order (checked below).
    fill = list(range(n))[::-1]
    new_groups = [_convert(a.groups[src], forms[slot]) for slot, src in enumerate(fill)]
    new_groups = [_lower_first(g) for g in new_groups]
    if a.pattern == "prefix":
        text = f"{_upper_first(a.prefix.lower())} {new_groups[0]}, {new_groups[1]}"
    else:
        parts = [new_groups[0]]
        for link, g in zip(a.links, new_groups[1:]):
            parts.append(link + g)
        text = "".join(parts)
        if a.prefix:
            text = f"{a.prefix.lower()} {text}"
    text = _upper_first(text) + a.end
    # Time order of the new caption: slot order mapped back to the original groups.
    new_order = [fill[s] for s in a.order]
    if new_order == a.order:
        return RuleResult(None, "ambiguous order (reversing the clauses keeps the order)")
    return RuleResult(text, "")
