"""Short, safe renderings of values that users sent, for one-line error messages.

A rating of ``1e308`` is a float that ``is_integer()``; turned into an ``int`` and echoed with ``repr`` it becomes a
309-digit number, and a JSON integer or string can be arbitrarily long. :func:`short_value` keeps every message one
short line whatever the input.
"""

from __future__ import annotations

import math
from typing import Any

MAX_CHARS = 40


def short_value(v: Any, max_chars: int = MAX_CHARS) -> str:
    """``v`` as at most about ``max_chars`` characters: numbers in ``%g`` style, everything else a cut ``repr``.

    >>> short_value(1e308), short_value(10 ** 400), short_value(4), short_value("x" * 100)[:6]
    ('1e+308', '1e+400', '4', "'xxxxx")
    """
    if isinstance(v, bool):
        return repr(v)
    if isinstance(v, int):
        if abs(v) < 10 ** 15:
            return str(v)
        # float(v) overflows beyond ~1.8e308 and str(v) is refused past 4300 digits; math.log10 takes any int.
        lg = math.log10(abs(v))
        e = math.floor(lg)
        return f"{'-' if v < 0 else ''}{10 ** (lg - e):.6g}e+{e}"
    if isinstance(v, float):
        return repr(v) if not math.isfinite(v) else f"{v:.6g}"
    s = repr(v)
    return s if len(s) <= max_chars else s[: max_chars - 1] + "…"


__all__ = ["short_value"]
