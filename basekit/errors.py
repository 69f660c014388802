"""User-facing errors.

A :class:`UserError` is a mistake in what the user gave us (a missing file, a corrupt clip, an unknown
label, a wrong shape). Its message is one line that names the input and says what to do. CLIs catch it,
print it and exit with status 2; library callers get an ordinary ``ValueError`` subclass.
"""

from __future__ import annotations

import functools
import sys
from typing import Callable, Sequence

Main = Callable[[Sequence[str] | None], int | None]


class UserError(ValueError):
    """Bad input from the user: one clear line naming the input and the fix."""


def cli_entry(
    func: Main | None = None, *, prog: str | None = None,
    interrupted: str = "interrupted; re-run the same command to resume",
) -> Callable[[Sequence[str] | None], int] | Callable[[Main], Callable[[Sequence[str] | None], int]]:
    """Wrap a ``main(argv)`` so a :class:`UserError` prints ``PROG: error: <line>`` and returns exit status 2.

    ``KeyboardInterrupt`` prints ``PROG: <interrupted>`` and returns 130. ``prog`` is the command's own name as the
    user typed it (``audioldm-cond``, not the module ``audioldm_cond``); without it, the module's top package.
    Use as ``@cli_entry`` or ``@cli_entry(prog="audioldm-cond")``.
    """

    def wrap(f: Main) -> Callable[[Sequence[str] | None], int]:
        name = prog or getattr(f, "__module__", "tclap").split(".")[0]

        @functools.wraps(f)
        def wrapper(argv: Sequence[str] | None = None) -> int:
            try:
                rc = f(argv)
            except UserError as exc:
                print(f"{name}: error: {exc}", file=sys.stderr)
                return 2
            except KeyboardInterrupt:
                print(f"{name}: {interrupted}", file=sys.stderr)
                return 130
            return int(rc or 0)

        return wrapper

    return wrap(func) if func is not None else wrap


__all__ = ["UserError", "cli_entry"]
