"""Comparison answers in long form with the system names, for ``mos export``.

``comparisons_long.csv`` (CMOS and A/B pages): one row per answer. ``value`` is B against A as the rater
answered (CMOS -3..+3; A/B -1 for A, +1 for B); since the sides are random, ``value_second_vs_first`` turns it
into the pair's own orientation: ``second`` (the pair's second system in the study file) against ``first``.
``mushra_long.csv``: one row per sound and rater, ``condition`` being the system, ``reference`` (the hidden
reference) or the anchor's name. Both carry the listening time and plays of the sounds when answered.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from basekit.atomic import atomic_write_text
from basekit.errors import UserError
from demo.store import Store

COMPARISON_COLUMNS = ["rater_id", "page_id", "test", "prompt_id", "first", "second", "system_a", "system_b", "value",
                      "value_second_vs_first", "listen_s_a", "listen_s_b", "plays_a", "plays_b", "created_at"]
MUSHRA_COLUMNS = ["rater_id", "page_id", "prompt_id", "condition", "kind", "value", "listen_s", "plays",
                  "created_at", "clip_id"]


def oriented(record: dict, systems: dict[str, str]) -> dict:
    """A comparison record with ``first`` / ``second`` (the pair in study order) and ``value_second_vs_first``.

    ``systems`` maps clip id → system name for the page's clips; ``record["page_clips"]`` lists them in study
    order, so the answer flips sign when the second system was shown as A.
    """
    first_clip, second_clip = json.loads(record["page_clips"])
    v = record["value"]
    return dict(record, first=systems[first_clip], second=systems[second_clip],
                value_second_vs_first=v if record["clip_b"] == second_clip else -v)


def _csv(rows: list[dict], columns: list[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def export_comparative(db: str | Path, out_dir: str | Path) -> list[str]:
    """Write ``comparisons_long.csv`` and ``mushra_long.csv`` into ``out_dir`` where the study has such answers.
    Returns the files written."""
    store = Store.open_readonly(db)
    try:
        comparisons = store.comparison_records()
        mushra = store.mushra_records()
    finally:
        store.close()
    out, written = Path(out_dir), []
    if comparisons:
        systems = {r["clip_a"]: r["system_a"] for r in comparisons} | {r["clip_b"]: r["system_b"] for r in comparisons}
        text = _csv([oriented(r, systems) for r in comparisons], COMPARISON_COLUMNS)
        written.append(_write(out / "comparisons_long.csv", text))
    if mushra:
        written.append(_write(out / "mushra_long.csv", _csv(mushra, MUSHRA_COLUMNS)))
    return written


def _write(path: Path, text: str) -> str:
    try:
        atomic_write_text(path, text)
    except OSError as exc:
        raise UserError(f"cannot write {path} ({exc.strerror or exc}); pass an --out folder you can write to") \
            from None
    return str(path)
