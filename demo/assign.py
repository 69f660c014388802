"""Balanced, seeded clip orders per rater (Latin-square style across systems).

All ``S × P`` main clips are laid out on one cyclic sequence whose position ``c`` holds system ``c mod S``,
so any run of consecutive positions cycles through the systems and holds each system ``floor(n/S)`` or
``ceil(n/S)`` times. With ``L = lcm(S, P)`` and ``g = gcd(S, P)`` the sequence is ``g`` blocks of ``L``
positions; position ``r`` of block ``b`` holds prompt ``(r + b) mod P`` (in a seeded prompt order). Within a
block the pairs ``(r mod S, r mod P)`` are all different, and block ``b`` holds exactly the pairs with
``prompt − system ≡ b (mod g)``, so the ``g`` blocks visit every (system, prompt) cell exactly once. Rater
``k`` (registration order) takes the window of ``clips_per_rater`` positions starting at
``k · clips_per_rater``: consecutive raters tile the sequence, so every clip gets its first rating before any
gets a second one, and the numbers of ratings per clip never differ by more than one. Prompts advance by
one per position (by two across a block boundary), so when ``gcd(S, P) = 1`` a rater hears a prompt twice
only when ``clips_per_rater > P``; when ``g > 1`` the prompts jump by ``2 - g`` where the cycle wraps
around, and a window across that one point may hold a prompt twice (under different systems; a clip is
never repeated). Choosing a prompt count coprime to the number of systems avoids that.

The window is then shuffled with a seed derived from the study seed and the rater id (``random.Random`` seeded
with a string is stable across Python runs and processes), and the gold clips and attention checks are placed
at seeded positions, never first (a rater needs a clip or two to calibrate).

Comparison pages reuse the same window: CMOS / A-B pages are the cells ``(pair, prompt)`` of
``latin_window(n_pairs, n_prompts, ...)`` (each rater's pages spread over the pairs, every page answered
before any is answered twice), MUSHRA pages the prompts of ``latin_window(1, n_prompts, ...)``. The side of
each system on an A/B page and the order of the sounds on a MUSHRA page are drawn per rater and page
(:func:`page_layout`), so neither a position nor a label stands for a system.
"""

from __future__ import annotations

import math
import random


def latin_window(n_systems: int, n_prompts: int, clips_per_rater: int, rater_index: int,
                 seed: int = 0) -> list[tuple[int, int]]:
    """The ``(system_index, prompt_index)`` cells of rater ``rater_index``, before shuffling.

    ``clips_per_rater`` must be in ``[1, n_systems · n_prompts]``.
    """
    S, P = n_systems, n_prompts
    N = S * P
    if not 1 <= clips_per_rater <= N:
        raise ValueError(f"clips_per_rater must be in [1, {N}], got {clips_per_rater}")
    prompt_order = list(range(P))
    random.Random(f"prompts:{seed}").shuffle(prompt_order)
    L = S * P // math.gcd(S, P)
    start = (rater_index * clips_per_rater) % N
    cells = []
    for i in range(clips_per_rater):
        c = (start + i) % N
        b, r = divmod(c, L)
        cells.append((c % S, prompt_order[(r + b) % P]))
    return cells


def rater_order(main_items: list[str], check_items: list[str], rater_id: str, seed: int) -> list[str]:
    """Shuffle ``main_items`` and insert ``check_items`` (gold / attention) at seeded positions other than 0."""
    rng = random.Random(f"order:{seed}:{rater_id}")
    order = list(main_items)
    rng.shuffle(order)
    checks = list(check_items)
    rng.shuffle(checks)
    for item in checks:
        pos = rng.randint(1, len(order)) if order else 0
        order.insert(pos, item)
    return order


def page_layout(clips: list[str], rater_id: str, page_id: str, seed: int) -> list[str]:
    """The order in which ``rater_id`` sees the clips of a page: a seeded permutation (for two clips, a random
    side) drawn from the study seed, the rater and the page."""
    out = list(clips)
    random.Random(f"layout:{seed}:{rater_id}:{page_id}").shuffle(out)
    return out


def page_order(pages: list, rater_id: str, seed: int, test: str) -> list:
    """``pages`` of one test in a seeded order for ``rater_id``."""
    out = list(pages)
    random.Random(f"pages:{test}:{seed}:{rater_id}").shuffle(out)
    return out
