"""What a rater's session writes and reads: the study's clips and pages, rater registration with its seeded
orders, progress, the listening log, and the answers (ACR ratings, CMOS / A-B, MUSHRA).

Every write is one ``BEGIN IMMEDIATE`` transaction that checks and inserts together, so a double click, a
second tab or a repeated API call can neither duplicate an answer nor save one that was refused."""

from __future__ import annotations

import json
import sqlite3
from typing import Callable, Iterable

from demo.store.database import Database


class RatingFlow(Database):
    """The rater-facing methods of :class:`demo.store.Store`."""

    # ---- clips and pages ----------------------------------------------------------------------------------
    def clip_measurements(self) -> dict[str, dict]:
        """clip id → its stored ``path``, ``process``, ``file_sig``, ``duration_s``, ``loudness_lufs``, ``gain_db``,
        ``served_lufs``."""
        rows = self.query("SELECT clip_id, path, process, file_sig, duration_s, loudness_lufs, gain_db, served_lufs"
                          " FROM clips")
        return {r["clip_id"]: dict(r) for r in rows}

    def upsert_clips(self, rows: Iterable[dict]) -> None:
        """Insert or refresh clip rows (dicts with every ``clips`` column); ids derive from identity, so the
        identity columns never change, only the file, texts and measurements."""
        cols = ("clip_id", "kind", "system", "prompt_id", "text", "path", "expect", "test", "process", "file_sig",
                "duration_s", "loudness_lufs", "gain_db", "served_lufs")
        updated = ", ".join(f"{c} = excluded.{c}" for c in cols[4:])
        sql = (f"INSERT INTO clips ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
               f" ON CONFLICT(clip_id) DO UPDATE SET {updated}")
        with self.transaction() as con:
            con.executemany(sql, [tuple(r[c] for c in cols) for r in rows])

    def upsert_pages(self, rows: Iterable[dict]) -> None:
        """Insert or refresh comparison pages (``page_id``, ``test``, ``prompt_id``, ``reference_id``, ``clips``)."""
        with self.transaction() as con:
            con.executemany(
                "INSERT INTO pages (page_id, test, prompt_id, reference_id, clips) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT(page_id) DO UPDATE SET reference_id = excluded.reference_id, clips = excluded.clips",
                [(r["page_id"], r["test"], r["prompt_id"], r["reference_id"], json.dumps(r["clips"])) for r in rows])

    # ---- raters -------------------------------------------------------------------------------------------
    def rater(self, rater_id: str) -> dict | None:
        """The rater's row (``idx``, ``token_nonce``, ``training_done_at``, ``access``, ...) or None."""
        rows = self.query("SELECT * FROM raters WHERE rater_id = ?", (rater_id,))
        return dict(rows[0]) if rows else None

    def create_rater(self, rater_id: str, now: float, plan: Callable[[int], tuple[list[str], list[tuple[str, list]]]],
                     *, training_done: bool, nonce: str, access: str, platform: dict | None = None) -> bool:
        """Register a rater with its orders, or do nothing when the id exists. Returns whether it was created.

        ``plan(idx)`` gets the rater's registration index (read inside the write lock, so two registrations never
        share one) and returns ``(acr_item_ids, [(page_id, layout_clip_ids), ...])`` in the order of play.
        """
        with self.transaction() as con:
            if con.execute("SELECT 1 FROM raters WHERE rater_id = ?", (rater_id,)).fetchone():
                return False
            idx = con.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM raters").fetchone()[0]
            items, pages = plan(idx)
            con.execute("INSERT INTO raters (rater_id, idx, created_at, consent_at, training_done_at, access,"
                        " token_nonce, platform) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (rater_id, idx, now, now, now if training_done else None, access, nonce,
                         json.dumps(platform, sort_keys=True) if platform else None))
            con.executemany("INSERT INTO assignments (rater_id, position, item_id) VALUES (?, ?, ?)",
                            [(rater_id, i, item) for i, item in enumerate(items)])
            con.executemany("INSERT INTO page_assignments (rater_id, position, page_id, layout) VALUES (?, ?, ?, ?)",
                            [(rater_id, i, pid, json.dumps(layout)) for i, (pid, layout) in enumerate(pages)])
        return True

    def finish_training(self, rater_id: str, now: float) -> None:
        with self.transaction() as con:
            con.execute("UPDATE raters SET training_done_at = ? WHERE rater_id = ? AND training_done_at IS NULL",
                        (now, rater_id))

    def mark_completed(self, rater_id: str, now: float) -> None:
        with self.transaction() as con:
            con.execute("UPDATE raters SET completed_at = ? WHERE rater_id = ? AND completed_at IS NULL",
                        (now, rater_id))

    # ---- progress -----------------------------------------------------------------------------------------
    def progress(self, rater_id: str, n_scales: int) -> dict:
        """Counts of the rater's ACR items and pages, total and finished (an item is finished on every scale)."""
        q = self.query
        items = q("SELECT COUNT(*) AS n FROM assignments WHERE rater_id = ?", (rater_id,))[0]["n"]
        pages = q("SELECT COUNT(*) AS n FROM page_assignments WHERE rater_id = ?", (rater_id,))[0]["n"]
        items_done = q("SELECT COUNT(*) AS n FROM (SELECT item_id FROM ratings WHERE rater_id = ? GROUP BY item_id"
                       " HAVING COUNT(*) >= ?)", (rater_id, n_scales))[0]["n"]
        pages_done = q("SELECT COUNT(*) AS n FROM page_assignments WHERE rater_id = ? AND submitted_at IS NOT NULL",
                       (rater_id,))[0]["n"]
        return {"total": items + pages, "done": items_done + pages_done}

    def next_item(self, rater_id: str, n_scales: int) -> str | None:
        """The first ACR item (by position) not yet rated on every scale, or None."""
        rows = self.query(
            "SELECT a.item_id FROM assignments a WHERE a.rater_id = ? AND "
            "(SELECT COUNT(*) FROM ratings r WHERE r.rater_id = a.rater_id AND r.item_id = a.item_id) < ? "
            "ORDER BY a.position LIMIT 1", (rater_id, n_scales))
        return rows[0]["item_id"] if rows else None

    def next_page(self, rater_id: str) -> tuple[str, list[str]] | None:
        """The first comparison page (by position) not yet submitted: ``(page_id, layout)``, or None."""
        rows = self.query("SELECT page_id, layout FROM page_assignments WHERE rater_id = ? AND submitted_at IS NULL"
                          " ORDER BY position LIMIT 1", (rater_id,))
        return (rows[0]["page_id"], json.loads(rows[0]["layout"])) if rows else None

    def page_layout(self, rater_id: str, page_id: str) -> list[str] | None:
        rows = self.query("SELECT layout FROM page_assignments WHERE rater_id = ? AND page_id = ?",
                          (rater_id, page_id))
        return json.loads(rows[0]["layout"]) if rows else None

    def record_item_view(self, rater_id: str, item_id: str, now: float) -> None:
        """First and last time an ACR item was shown, and how often (time-on-page statistics)."""
        with self.transaction() as con:
            con.execute("INSERT INTO page_times (rater_id, item_id, first_shown_at, last_shown_at) VALUES (?,?,?,?)"
                        " ON CONFLICT(rater_id, item_id) DO UPDATE SET views = views + 1, last_shown_at = ?",
                        (rater_id, item_id, now, now, now))

    def record_page_view(self, rater_id: str, page_id: str, now: float) -> None:
        with self.transaction() as con:
            con.execute("UPDATE page_assignments SET views = views + 1, last_shown_at = ?,"
                        " first_shown_at = COALESCE(first_shown_at, ?) WHERE rater_id = ? AND page_id = ?",
                        (now, now, rater_id, page_id))

    # ---- listening ----------------------------------------------------------------------------------------
    def clip_belongs_to(self, rater_id: str, clip_id: str) -> bool:
        """Whether ``clip_id`` is one of the rater's ACR items or on one of the rater's pages (reference included)."""
        return bool(self.query(
            "SELECT 1 FROM assignments WHERE rater_id = ?1 AND item_id = ?2 UNION ALL "
            "SELECT 1 FROM page_assignments pa JOIN pages p ON p.page_id = pa.page_id WHERE pa.rater_id = ?1 AND "
            "(p.reference_id = ?2 OR EXISTS (SELECT 1 FROM json_each(pa.layout) j WHERE j.value = ?2)) LIMIT 1",
            (rater_id, clip_id)))

    def listen_event(self, rater_id: str, clip_id: str, event: str, now: float,
                     rule: Callable[[dict], dict]) -> dict:
        """Apply one player event in one transaction and return the rater's new listening record of the clip.

        ``rule(record)`` gets ``{"plays", "completed", "listen_s", "seeks", "open_since"}`` (zeros and None when
        the clip was never played) and returns the new record, or raises to refuse: then nothing is written.
        """
        with self.transaction() as con:
            row = con.execute("SELECT plays, completed, listen_s, seeks, open_since FROM listens"
                              " WHERE rater_id = ? AND clip_id = ?", (rater_id, clip_id)).fetchone()
            old = dict(row) if row else {"plays": 0, "completed": 0, "listen_s": 0.0, "seeks": 0, "open_since": None}
            new = rule(dict(old))
            con.execute("INSERT INTO listens (rater_id, clip_id, plays, completed, listen_s, seeks, open_since)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(rater_id, clip_id) DO UPDATE SET"
                        " plays = excluded.plays, completed = excluded.completed, listen_s = excluded.listen_s,"
                        " seeks = excluded.seeks, open_since = excluded.open_since",
                        (rater_id, clip_id, new["plays"], new["completed"], new["listen_s"], new["seeks"],
                         new["open_since"]))
            con.execute("INSERT INTO play_events (rater_id, item_id, event, created_at) VALUES (?, ?, ?, ?)",
                        (rater_id, clip_id, event, now))
        return new

    def listened(self, rater_id: str, clip_ids: Iterable[str]) -> set[str]:
        """Those of ``clip_ids`` the rater has listened to completely at least once."""
        ids = list(clip_ids)
        if not ids:
            return set()
        rows = self.query(f"SELECT clip_id FROM listens WHERE rater_id = ? AND completed > 0 AND clip_id IN "
                          f"({', '.join('?' * len(ids))})", (rater_id, *ids))
        return {r["clip_id"] for r in rows}

    @staticmethod
    def _listen_stats(con: sqlite3.Connection, rater_id: str,
                      clip_ids: list[str]) -> dict[str, tuple[float, int]] | None:
        """clip → (listen_s, plays) when every clip was listened to completely, else None."""
        out = {}
        for cid in clip_ids:
            row = con.execute("SELECT listen_s, plays, completed FROM listens WHERE rater_id = ? AND clip_id = ?",
                              (rater_id, cid)).fetchone()
            if row is None or row["completed"] < 1:
                return None
            out[cid] = (row["listen_s"], row["plays"])
        return out

    # ---- answers ------------------------------------------------------------------------------------------
    def save_ratings(self, rater_id: str, item_id: str, values: dict[str, int], now: float) -> str:
        """Store one ACR rating per scale. Returns ``saved`` | ``already_rated`` | ``not_assigned`` |
        ``not_listened``; only ``saved`` writes anything (checks and inserts in one transaction)."""
        with self.transaction() as con:
            if not con.execute("SELECT 1 FROM assignments WHERE rater_id = ? AND item_id = ?",
                               (rater_id, item_id)).fetchone():
                return "not_assigned"
            stats = self._listen_stats(con, rater_id, [item_id])
            if stats is None:
                return "not_listened"
            listen_s, plays = stats[item_id]
            inserted = 0
            for scale, v in values.items():
                cur = con.execute("INSERT INTO ratings (rater_id, item_id, scale, value, created_at, listen_s, plays)"
                                  " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(rater_id, item_id, scale) DO NOTHING",
                                  (rater_id, item_id, scale, v, now, listen_s, plays))
                inserted += cur.rowcount
            if inserted:
                con.execute("UPDATE page_times SET submitted_at = ? WHERE rater_id = ? AND item_id = ?"
                            " AND submitted_at IS NULL", (now, rater_id, item_id))
        return "saved" if inserted else "already_rated"

    def _page_for_answer(self, con: sqlite3.Connection, rater_id: str, page_id: str,
                         extra: list[str]) -> tuple[list[str], dict] | str:
        row = con.execute("SELECT layout, submitted_at FROM page_assignments WHERE rater_id = ? AND page_id = ?",
                          (rater_id, page_id)).fetchone()
        if row is None:
            return "not_assigned"
        if row["submitted_at"] is not None:
            return "already_rated"
        layout = json.loads(row["layout"])
        stats = self._listen_stats(con, rater_id, layout + extra)
        return "not_listened" if stats is None else (layout, stats)

    def _submit_page(self, con: sqlite3.Connection, rater_id: str, page_id: str, now: float) -> None:
        con.execute("UPDATE page_assignments SET submitted_at = ? WHERE rater_id = ? AND page_id = ?",
                    (now, rater_id, page_id))

    def save_comparison(self, rater_id: str, page_id: str, value: int, now: float) -> str:
        """Store a CMOS / A-B answer (B against A as shown). Same statuses as :meth:`save_ratings`."""
        with self.transaction() as con:
            found = self._page_for_answer(con, rater_id, page_id, [])
            if isinstance(found, str):
                return found
            (a, b), stats = found
            con.execute("INSERT INTO comparisons (rater_id, page_id, clip_a, clip_b, value, created_at, listen_s_a,"
                        " listen_s_b, plays_a, plays_b) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (rater_id, page_id, a, b, value, now, stats[a][0], stats[b][0], stats[a][1], stats[b][1]))
            self._submit_page(con, rater_id, page_id, now)
        return "saved"

    def save_mushra(self, rater_id: str, page_id: str, values: dict[str, int], now: float,
                    reference_id: str | None) -> str:
        """Store a MUSHRA page (0-100 per clip of its layout; every clip and the reference listened to).
        Same statuses as :meth:`save_ratings`; the caller checks that ``values`` covers the layout."""
        with self.transaction() as con:
            found = self._page_for_answer(con, rater_id, page_id, [reference_id] if reference_id else [])
            if isinstance(found, str):
                return found
            layout, stats = found
            con.executemany("INSERT INTO mushra_ratings (rater_id, page_id, clip_id, value, created_at, listen_s,"
                            " plays) VALUES (?, ?, ?, ?, ?, ?, ?)",
                            [(rater_id, page_id, c, values[c], now, *stats[c]) for c in layout])
            self._submit_page(con, rater_id, page_id, now)
        return "saved"
