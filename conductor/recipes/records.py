"""What a recipe records about a shipped model, made portable: no folder of the machine that made it.

A shipped model's ``recipe.json`` names the command that made it (``--out DIR``) and the stages' paths relative to
that run folder (``DIR/...``) or to the repository root (``audioldm_cond/assets/models/...``), so that it reads the
same on every checkout and names nobody's home directory (tests/test_shipped_records.py).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Sequence

LDM_PATHS_NOTE = ("DIR: the command's --out folder; audioldm_cond/...: relative to the repository root (--vae "
                  "tiny-tclap names the shipped model's folder); VAE_DIR / CLAP_DIR in a reused VAE's trained_by: the "
                  "--out folders of the runs that trained it and the CLAPs it was conditioned on")


BANK_NOTE = ("BANK_DIR, BANK_DIR2, ...: the clip bank folders (or ESC-50 CSVs) outside the repository that the "
             "command's --bank named, in order; 'banks' says what each held")


def portable_banks(banks: Sequence[str]) -> dict[str, str]:
    """Each bank spec -> how a record names it: ``builtin`` and relative paths as given, a path inside the repository
    relative to its root, any other absolute path ``BANK_DIR``, ``BANK_DIR2``, ... in order of appearance (a
    ``+``-joined spec should be split first, :func:`tclap.data.banks.bank_parts`)."""
    root = Path(__file__).resolve().parents[2]
    out: dict[str, str] = {}
    n = 0
    for spec in banks:
        p = Path(spec.removeprefix("bank:"))
        if not p.is_absolute():
            out[spec] = spec
        elif p.resolve().is_relative_to(root):
            out[spec] = str(p.resolve().relative_to(root))
        else:
            n += 1
            out[spec] = "BANK_DIR" if n == 1 else f"BANK_DIR{n}"
    return out


def portable(record: Any, out: str | os.PathLike) -> Any:
    """``record`` with every path of this machine made portable: the run folder ``out`` -> ``DIR`` (as the
    command's ``--out`` is then written), the repository root -> paths relative to it. Strings anywhere in nested
    dicts and lists are rewritten, commands included; nothing else changes."""
    root = str(Path(__file__).resolve().parents[2]) + os.sep
    # The absolute run folder anywhere, only as a whole path ("/r/x" is not in "/r/x2"); a relative spelling
    # (``--out runs/x``) only as a whole string or its start, so a word such as "vae" is never taken for it.
    absolute, given = str(Path(out).resolve()), str(out).rstrip(os.sep)
    pattern = re.compile(rf"(?<![\w./-]){re.escape(absolute)}(?=[/\s,=]|$)"
                         + ("" if Path(given).is_absolute() else rf"|^{re.escape(given)}(?=/|$)"))

    def fix(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: fix(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [fix(x) for x in v]
        if isinstance(v, str):
            return pattern.sub("DIR", v).replace(root, "")
        return v

    return fix(record)
