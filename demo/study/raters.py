"""Who may rate: rater ids, passwords, the allowed list, the access mode and the crowd completion code."""

from __future__ import annotations

import re
from typing import Any

from basekit.errors import UserError
from demo.study.model import Completion
from demo.study.parse import Check

# A leading "." is refused too, so "." and ".." (path components) can never be rater ids.
RATER_ID_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$")
ACCESS_MODES = ("open", "signed", "crowd")


def validate_rater_id(rater_id: Any) -> str:
    """The rater id, stripped; :class:`UserError` when it is not 1-64 letters, digits, '-', '_' or '.'."""
    if not isinstance(rater_id, str) or not RATER_ID_RE.match(rater_id.strip()):
        shown = repr(rater_id)[:80]
        raise UserError(f"rater id {shown} is not allowed: use 1-64 letters, digits, '-', '_' or '.', not starting with '.' "
                        "(no spaces, slashes or other path characters)")
    return rater_id.strip()


def check_passwords(c: Check) -> dict[str, str | None]:
    out = {}
    for k in ("rater_password", "admin_password"):
        v = c.raw.get(k)
        if v is not None and (not isinstance(v, str) or not v):
            c.add(f"`{k}` must be a non-empty string or left out")
            v = None
        out[k] = v
    return out


def check_allowed_raters(c: Check) -> tuple[str, ...] | None:
    allowed = c.raw.get("allowed_raters")
    if allowed is None:
        return None
    if not isinstance(allowed, list) or not all(isinstance(a, str) and RATER_ID_RE.match(a) for a in allowed):
        c.add("`allowed_raters` must be a list of rater ids (letters, digits, -_. ; <= 64)")
        return None
    return tuple(allowed)


def check_access(c: Check) -> tuple[str, tuple[str, ...]]:
    """The access mode and its warnings: a study that names none stays open, as studies did before modes."""
    mode = c.raw.get("access")
    if mode is None:
        return "open", (f"{c.path.name} names no access mode, so it is `access: open`: anyone who knows or guesses a "
                        "rater id can rate as that rater; set `access: open` to keep it (a lab study), or `signed` "
                        "/ `crowd` (see docs/mos.md)",)
    if mode not in ACCESS_MODES:
        c.add(f"`access` must be one of {', '.join(ACCESS_MODES)}, got {mode!r}")
        return "open", ()
    if mode == "crowd" and c.raw.get("allowed_raters") is not None:
        c.add("`allowed_raters` cannot be used with `access: crowd` (the platform decides who comes); remove it")
    return mode, ()


def check_completion(c: Check) -> Completion | None:
    sec = c.section("completion")
    if sec is None:
        return None
    c.unknown(sec, {"code", "url"}, "completion")
    code, url = sec.get("code"), sec.get("url")
    if code is not None and (not isinstance(code, (str, int)) or isinstance(code, bool) or not str(code).strip()):
        c.add(f"`completion.code` must be a non-empty text, got {code!r}")
        code = None
    if url is not None and (not isinstance(url, str) or not re.match(r"^https?://\S+$", url)):
        c.add(f"`completion.url` must be an http(s) URL without spaces, got {url!r}")
        url = None
    if sec.get("code") is None and sec.get("url") is None:
        c.add("`completion` needs a `code`, a `url` or both")
    return Completion(str(code).strip() if code is not None else None, url)
