"""User-facing errors for the MOS app (``demo`` stands alone, so it has its own copy of the pattern).

A :class:`UserError` is a mistake in what the user (study author, rater or API client) gave us. Its message
is one line naming the input and the fix. :func:`cli_entry` turns it into that line on stderr and exit 2.
"""

from __future__ import annotations

import functools
import sys
from typing import Callable, Sequence


class UserError(ValueError):
    """Bad input: one clear line naming the input and the fix."""


def cli_entry(func: Callable[[Sequence[str] | None], int | None]) -> Callable[[Sequence[str] | None], int]:
    """Wrap ``main(argv)`` so a :class:`UserError` prints ``mos: error: ...`` and returns 2 (130 on Ctrl-C)."""

    @functools.wraps(func)
    def wrapper(argv: Sequence[str] | None = None) -> int:
        try:
            rc = func(argv)
        except UserError as exc:
            print(f"mos: error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("mos: interrupted; every rating given so far is already in the database", file=sys.stderr)
            return 130
        return int(rc or 0)

    return wrapper
