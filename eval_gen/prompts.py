"""Read the prompts of generated clips: JSON Lines ``{"id"|"file": stem, "prompt": text}`` or a CSV
``file,prompt`` (header optional). An optional ``"negative_prompt"`` (JSONL) or third CSV column gives the
order-reversed caption explicitly for free-form prompts outside the built-in vocabulary.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

from basekit.errors import UserError


@dataclass(frozen=True)
class Prompt:
    stem: str
    text: str
    negative: str | None = None


def read_prompts(path: str | os.PathLike) -> dict[str, Prompt]:
    """``stem -> Prompt``. Duplicate stems, empty prompts and malformed lines are one-line errors."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"prompts file not found: {p} (give a .jsonl or .csv file)")
    out: dict[str, Prompt] = {}

    def add(stem: str, text: str, neg: str | None, where: str) -> None:
        stem = Path(str(stem).strip()).stem
        if not stem or not str(text).strip():
            raise UserError(f"{where}: a prompt line needs both a file/id and a non-empty prompt")
        if stem in out:
            raise UserError(f"{where}: clip {stem!r} has two prompts; keep one line per clip")
        out[stem] = Prompt(stem, str(text).strip(), (str(neg).strip() or None) if neg else None)

    text = p.read_text(encoding="utf-8")
    if p.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{p}:{n}: not valid JSON ({exc.msg}); one object per line is expected") from None
            stem = d.get("id", d.get("file")) if isinstance(d, dict) else None
            if stem is None or "prompt" not in d:
                raise UserError(f"{p}:{n}: each line needs \"id\" (or \"file\") and \"prompt\"")
            add(stem, d["prompt"], d.get("negative_prompt"), f"{p}:{n}")
    elif p.suffix.lower() in (".csv", ".tsv"):
        rows = list(csv.reader(text.splitlines(), delimiter="\t" if p.suffix.lower() == ".tsv" else ","))
        if rows and [c.strip().lower() for c in rows[0][:2]] in (["file", "prompt"], ["id", "prompt"]):
            rows = rows[1:]
        for n, row in enumerate(rows, 1):
            if not row or not any(c.strip() for c in row):
                continue
            if len(row) < 2:
                raise UserError(f"{p}: row {n} has {len(row)} column(s); expected file,prompt[,negative_prompt]")
            add(row[0], row[1], row[2] if len(row) > 2 else None, f"{p}: row {n}")
    else:
        raise UserError(f"prompts file {p} must be .jsonl or .csv")
    if not out:
        raise UserError(f"prompts file {p} holds no prompts")
    return out
