"""Who may rate: signed rater links (``access: signed``) and crowd-platform links (``access: crowd``).

- ``signed``: ``mos links`` prints one URL per rater, ``?rater=ID&sig=S`` with ``S`` an HMAC-SHA256 of the rater id
  under the study secret. The secret is a file beside the study file (``<study file>.secret``), created on first
  use with permissions 0600 (owner only) and never written into the database or any response; whoever holds it can
  mint links, so it stays on the study owner's machine. Without a valid signature no rater can start or resume,
  and the refusal is the same for every id, so it tells nothing about which ids exist.
- ``crowd``: Prolific sends ``PROLIFIC_PID``, ``STUDY_ID`` and ``SESSION_ID``; MTurk sends ``workerId``,
  ``assignmentId`` and ``hitId`` (and ``assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE`` in a HIT preview). The
  participant id becomes the rater id; the platform ids are stored with the rater.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import tempfile
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlencode, urlsplit

from basekit.errors import UserError
from demo.study import RATER_ID_RE, validate_rater_id

PROLIFIC_KEYS = ("PROLIFIC_PID", "STUDY_ID", "SESSION_ID")
MTURK_KEYS = ("workerId", "assignmentId", "hitId")
MTURK_PREVIEW = "ASSIGNMENT_ID_NOT_AVAILABLE"
_PLATFORM_VALUE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
BAD_LINK = ("this study link is not valid: open the exact link you were given (it carries your rater id and a "
            "signature), or ask the study owner for a new one")


def study_secret(path: str | Path) -> bytes:
    """The secret in ``path``, created first (64 hex digits, mode 0600) when the file does not exist.

    Created as a private temp file and hard-linked into place, so two first uses at once (``mos links`` and
    ``mos serve``) end with one secret, and no reader ever sees a half-written file. (``basekit.atomic`` writes
    with the umask's permissions and replaces existing files; a secret needs neither.)
    """
    p = Path(path)
    if not p.exists():
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=str(p.parent))  # mkstemp: mode 0600
        try:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32) + "\n")
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, p)  # fails when the file exists: the first writer's secret stays
            except FileExistsError:
                pass
        finally:
            os.unlink(tmp)
    text = p.read_text(encoding="ascii", errors="replace").strip()
    if not re.fullmatch(r"[0-9a-f]{32,}", text):
        raise UserError(f"study secret {p} is damaged; delete it and send every rater a new link from `mos links`")
    return text.encode()


def link_signature(secret: bytes, rater_id: str) -> str:
    """The ``sig`` of rater ``rater_id``'s link: HMAC-SHA256 under the study secret, 128 bits in hex."""
    return hmac.new(secret, b"rater-link\x00" + rater_id.encode(), hashlib.sha256).hexdigest()[:32]


def signature_ok(secret: bytes, rater_id: Any, sig: Any) -> bool:
    if not isinstance(rater_id, str) or not isinstance(sig, str):
        return False
    return hmac.compare_digest(link_signature(secret, rater_id), sig.strip().lower())


def signed_links(secret: bytes, rater_ids: list[str], base_url: str) -> list[str]:
    """One URL per rater: ``base_url`` with ``rater`` and ``sig`` added to its query."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UserError(f"--base-url {base_url!r} is not an http(s) URL; give the address raters open, "
                        "e.g. https://mos.example.org/")
    sep = "&" if parts.query else ("" if base_url.endswith("?") else "?")
    return [f"{base_url}{sep}{urlencode({'rater': r, 'sig': link_signature(secret, r)})}" for r in rater_ids]


def rater_ids_from(spec: str, prefix: str = "r") -> list[str]:
    """``--raters``: a count N (ids ``r001`` … in order) or a file with one rater id per line."""
    if re.fullmatch(r"\d+", spec.strip()):
        n = int(spec)
        if not 1 <= n <= 100000:
            raise UserError(f"--raters {spec} must be 1-100000 (or a file of rater ids, one per line)")
        return [f"{prefix}{i:0{max(3, len(str(n)))}d}" for i in range(1, n + 1)]
    p = Path(spec)
    if not p.is_file():
        raise UserError(f"--raters {spec!r} is neither a number nor a file of rater ids (one per line)")
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise UserError(f"--raters file {p} is not UTF-8 text; save it as UTF-8") from None
    ids = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    for i, r in enumerate(ids):
        if not RATER_ID_RE.match(r):
            raise UserError(f"--raters file {p}: {r[:40]!r} (entry {i + 1}) is not a rater id: use 1-64 letters, "
                            "digits, '-', '_' or '.'")
    dup = sorted({r for r in ids if ids.count(r) > 1})
    if dup:
        raise UserError(f"--raters file {p} lists {dup[0]!r} twice; rater ids must be unique")
    if not ids:
        raise UserError(f"--raters file {p} holds no rater id")
    return ids


def crowd_ids(link: Mapping[str, Any]) -> tuple[str, dict[str, str]]:
    """The participant id (the rater id) and the platform ids of a crowd link; :class:`UserError` otherwise."""
    for platform, keys in (("prolific", PROLIFIC_KEYS), ("mturk", MTURK_KEYS)):
        if link.get(keys[0]):
            if platform == "mturk" and link.get("assignmentId") == MTURK_PREVIEW:
                raise UserError("this is a preview of the HIT: accept the HIT to start the listening test")
            ids = {"platform": platform}
            for k in keys:
                v = link.get(k)
                if v is None:
                    continue
                if not isinstance(v, str) or not _PLATFORM_VALUE_RE.match(v):
                    raise UserError(f"the link's {k} is malformed; open the study from the {platform} page again")
                ids[k] = v
            return validate_rater_id(ids[keys[0]]), ids
    raise UserError("this study is run on a crowd platform: open it from the Prolific or MTurk page, whose link "
                    "carries your participant id (PROLIFIC_PID or workerId)")
