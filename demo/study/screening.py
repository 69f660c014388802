"""Rater screening rules for ``mos report``: the study's ``screening:`` section or a ``--rules`` file.

Each rule can be switched off; docs/mos-statistics.md explains them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from basekit.errors import UserError


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
