"""Reading a study database: the owner's live counts, and the records ``mos report`` / ``mos export`` read
(ACR ratings, comparison and MUSHRA answers, the gold / attention expectations, whole tables).

The export readers also read an older database (schema version 0/1) opened read-only: a table it lacks gives
no rows, a column it lacks no field."""

from __future__ import annotations

import json
from typing import Any

from demo.store.database import Database
from demo.store.schema import TABLES


class StudyReads(Database):
    """The reading methods of :class:`demo.store.Store` (also on a :meth:`~Database.open_readonly` store)."""

    # ---- the study owner's view ---------------------------------------------------------------------------
    def admin_counts(self) -> dict[str, Any]:
        """Raters, completed raters, ACR rating rows, pages answered, and raters per ACR main clip."""
        q = self.query
        per_clip = q("SELECT c.clip_id, (SELECT COUNT(DISTINCT r.rater_id) FROM ratings r WHERE r.item_id = c.clip_id)"
                     " AS n FROM clips c WHERE c.kind = 'main' AND c.test = 'acr'")
        return {
            "raters": q("SELECT COUNT(*) AS n FROM raters")[0]["n"],
            "completed": q("SELECT COUNT(*) AS n FROM raters WHERE completed_at IS NOT NULL")[0]["n"],
            "ratings": q("SELECT COUNT(*) AS n FROM ratings")[0]["n"],
            "pages_answered": q("SELECT COUNT(*) AS n FROM page_assignments WHERE submitted_at IS NOT NULL")[0]["n"],
            "per_clip": [r["n"] for r in per_clip],
        }

    # ---- comparison answers for `mos export` --------------------------------------------------------------
    def comparison_records(self) -> list[dict]:
        """Every CMOS / A-B answer with its page (test, prompt, the clips in study order as JSON ``page_clips``)
        and the systems shown as A and B; [] for a database without comparison pages."""
        if not self._columns("comparisons"):
            return []
        rows = self.query(
            "SELECT c.rater_id, c.page_id, p.test, p.prompt_id, c.clip_a, c.clip_b, ca.system AS system_a,"
            " cb.system AS system_b, p.clips AS page_clips, c.value, c.listen_s_a, c.listen_s_b, c.plays_a,"
            " c.plays_b, c.created_at FROM comparisons c JOIN pages p ON p.page_id = c.page_id"
            " JOIN clips ca ON ca.clip_id = c.clip_a JOIN clips cb ON cb.clip_id = c.clip_b ORDER BY c.id")
        return [dict(r) for r in rows]

    def mushra_records(self) -> list[dict]:
        """Every MUSHRA score with its page's prompt, the sound's condition (system, ``reference`` for the hidden
        reference, the anchor's name) and kind; [] for a database without MUSHRA pages."""
        if not self._columns("mushra_ratings"):
            return []
        rows = self.query(
            "SELECT m.rater_id, m.page_id, p.prompt_id, m.clip_id, c.system AS condition, c.kind, m.value,"
            " m.listen_s, m.plays, m.created_at FROM mushra_ratings m JOIN pages p ON p.page_id = m.page_id"
            " JOIN clips c ON c.clip_id = m.clip_id ORDER BY m.id")
        return [dict(r) for r in rows]

    def rating_records(self) -> list[dict]:
        """Every ACR rating joined with its clip and page time, in the order given: dicts with ``rater_id, item_id,
        kind, system, prompt_id, scale, value, created_at, seconds_on_page`` and, where the database stores them,
        ``listen_s`` and ``plays``."""
        extra = "".join(f", r.{c}" for c in ("listen_s", "plays") if c in self._columns("ratings"))
        rows = self.query(
            "SELECT r.rater_id, r.item_id, c.kind, c.system, c.prompt_id, r.scale, r.value, r.created_at,"
            f" p.submitted_at - p.first_shown_at AS seconds_on_page{extra}"
            " FROM ratings r JOIN clips c ON c.clip_id = r.item_id"
            " LEFT JOIN page_times p ON p.rater_id = r.rater_id AND p.item_id = r.item_id"
            " ORDER BY r.id")
        return [dict(r) for r in rows]

    def check_expectations(self) -> dict[str, dict[str, list[int]]]:
        """Gold / attention clip id → ``{scale: accepted values}`` as stored from the study file."""
        rows = self.query("SELECT clip_id, expect FROM clips WHERE expect IS NOT NULL")
        return {r["clip_id"]: json.loads(r["expect"]) for r in rows}

    def table_rows(self, table: str) -> tuple[list[str], list[dict]] | None:
        """``(columns, rows)`` of one of :data:`TABLES`, or None when this database (an older schema) lacks it."""
        if table not in TABLES:
            raise ValueError(f"unknown table {table!r}; one of {TABLES}")
        cols = self._columns(table)
        if not cols:
            return None
        rows = self.query(f"SELECT * FROM {table}")  # noqa: S608 - the name is one of our own TABLES
        return cols, [dict(r) for r in rows]
