"""Checks that a proposed negative caption names the same events in another order.

A negative is accepted only when

1. it is not empty and not a copy of the caption (case, spaces and punctuation ignored),
2. its content words (stop words and order connectors removed, light stemming so that "barks",
   "barking" and "bark" agree) form the same multiset as the caption's: no event added or lost,
3. the events are in another order: when both captions can be split into ordered clauses
   (:func:`tclap.negatives.rule.analyse`), the clause order must differ (this rejects "A before B" ->
   "B after A", which swaps the words but keeps the meaning); otherwise the content-word sequence must
   differ.
"""

from __future__ import annotations

import re
from collections import Counter
from tclap.negatives.rule import analyse

STOPWORDS = frozenset(
    """a an the some one two three several many few this that these those its his her their our
    is are was were be been being am has have had do does did can could will would may might
    of in on at to from into onto by with without over under near for up down out off there here
    it he she they we you someone something somebody another other others very""".split()
)

#: order words that legitimately change between a caption and its negative.
CONNECTOR_WORDS = frozenset(
    """and then followed before after afterwards afterward first firstly finally later subsequently next
    while whilst as meanwhile eventually simultaneously same time once soon lastly second secondly
    succeeded preceded following until which""".split()
)


def stem(word: str) -> str:
    """A deliberately small stemmer: enough to equate finite / gerund / base forms of one verb."""
    w = word.lower()
    if len(w) > 5 and w.endswith("ing"):
        w = w[:-3]
        if len(w) > 2 and w[-1] == w[-2] and w[-2:] not in ("ll", "ss", "zz", "ff"):
            w = w[:-1]
    elif len(w) > 4 and w.endswith("ies"):
        w = w[:-3] + "y"
    elif w.endswith("es") and re.search(r"(s|x|z|ch|sh|o)$", w[:-2]):
        w = w[:-2]
    elif len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
        w = w[:-1]
    if len(w) > 3 and w.endswith("e"):
        w = w[:-1]
    return w


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+(?:['-][a-z0-9]+)*", text.lower())


def content_words(text: str) -> list[str]:
    """Stemmed content words of ``text`` in order (stop words and order connectors removed)."""
    return [stem(w) for w in words(text) if w not in STOPWORDS and w not in CONNECTOR_WORDS]


def _norm(text: str) -> str:
    return " ".join(words(text))


def validate_negative(caption: str, negative: str | None) -> str | None:
    """``None`` when ``negative`` is a valid order-swapped negative of ``caption``; else the reason."""
    if negative is None or not negative.strip():
        return "empty output"
    if _norm(negative) == _norm(caption):
        return "copy of the caption"
    a, b = content_words(caption), content_words(negative)
    if Counter(a) != Counter(b):
        missing = sorted((Counter(a) - Counter(b)).elements())
        extra = sorted((Counter(b) - Counter(a)).elements())
        parts = []
        if missing:
            parts.append("missing " + " ".join(missing[:5]))
        if extra:
            parts.append("extra " + " ".join(extra[:5]))
        return "different event words (" + "; ".join(parts) + ")"

    pa, pb = analyse(caption), analyse(negative)
    if pa.order is not None and pb.order is not None:
        if [Counter(content_words(g)) for g in pa.ordered_groups()] == [
            Counter(content_words(g)) for g in pb.ordered_groups()
        ]:
            return "same event order (only the connectors changed)"
        return None
    if a == b:
        return "same event order"
    return None
