"""User-facing errors.

A :class:`UserError` is a mistake in what the user gave us (a missing file, a corrupt clip, an unknown
label, a wrong shape). Its message is one line that names the input and says what to do. CLIs catch it,
print it and exit with status 2; library callers get an ordinary ``ValueError`` subclass.
"""

from __future__ import annotations

import functools
import sys
from typing import Callable, Sequence


class UserError(ValueError):
    """Bad input from the user: one clear line naming the input and the fix."""


def cli_entry(func: Callable[[Sequence[str] | None], int | None]) -> Callable[[Sequence[str] | None], int]:
    """Wrap a ``main(argv)`` so a :class:`UserError` prints one line and returns exit status 2.

    ``KeyboardInterrupt`` returns 130 (long jobs resume on the next run).
    """

    @functools.wraps(func)
    def wrapper(argv: Sequence[str] | None = None) -> int:
        prog = getattr(func, "__module__", "tclap").split(".")[0]
        try:
            rc = func(argv)
        except UserError as exc:
            print(f"{prog}: error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"{prog}: interrupted; re-run the same command to resume", file=sys.stderr)
            return 130
        return int(rc or 0)

    return wrapper
