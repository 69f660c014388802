"""SQLite store of a listening study: every rating is committed the moment it is given.

Tables (see :data:`TABLE_SQL`): ``meta`` (study secret, resolved study JSON), ``clips`` (opaque clip id → kind,
system, prompt, file, duration, measured loudness and the gain it is served with: the only place system names
live), ``raters`` (with the access mode, platform ids of crowd raters and the random part of their token),
``assignments`` (each rater's seeded ACR order, stored so a reload resumes exactly), ``ratings`` (ACR;
UNIQUE(rater_id, item_id, scale): a double click, a second tab or a repeated API call cannot duplicate a rating),
``pages`` / ``page_assignments`` (comparison pages: CMOS / A-B pairs and MUSHRA sets, with each rater's blinded
layout), ``comparisons`` and ``mushra_ratings`` (their answers), ``listens`` (per rater and clip: plays, completed
listens, listening time, seeks), ``play_events`` (the raw event log) and ``page_times``. Every rating row carries
the listening time and play count of its clip(s) at the moment it was given.

The database runs in WAL mode so readers (``mos report`` during a live study) never block the writers. Each
thread gets its own connection (sqlite3 connections must not be shared across threads), with a busy timeout
so concurrent writers wait instead of failing with "database is locked".

Schema versions (``PRAGMA user_version``): 0/1 is the first schema (no comparison pages, no listening log);
opening such a database migrates it in one transaction (tables whose CHECK constraints changed are rebuilt,
SQLite's documented create-copy-drop-rename procedure; new columns are added; rows are kept).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

SCHEMA_VERSION = 2

# One CREATE body per table: the schema is built from it, and a migration rebuilds a table from it.
TABLE_SQL: dict[str, str] = {
    "meta": "key TEXT PRIMARY KEY, value TEXT NOT NULL",
    "clips": """
    clip_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('main', 'gold', 'attention', 'training', 'reference', 'hidden_reference',
                                       'anchor')),
    system TEXT,
    prompt_id TEXT,
    text TEXT NOT NULL,
    path TEXT NOT NULL,
    expect TEXT,
    test TEXT,          -- acr | cmos | ab | mushra (NULL for training, gold and attention clips)
    process TEXT,       -- how the served audio is made from `path`: NULL as is, 'lowpass:3500' a MUSHRA anchor
    file_sig TEXT,      -- size and mtime of `path` when measured: a changed file is measured again
    duration_s REAL,
    loudness_lufs REAL, -- BS.1770 integrated loudness of the file after `process`; NULL for silence
    gain_db REAL,       -- gain applied to every sample when the clip is served
    served_lufs REAL    -- loudness as served (the target, or lower where the peak ceiling or the gain cap held)
""",
    "raters": """
    rater_id TEXT PRIMARY KEY,
    idx INTEGER NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    consent_at REAL,
    training_done_at REAL,
    completed_at REAL,
    access TEXT,        -- open | signed | crowd: how this rater came in
    token_nonce TEXT,   -- random part of the rater's token (NULL: a rater of the first schema)
    platform TEXT       -- JSON of crowd-platform ids (PROLIFIC_PID, STUDY_ID, ... / workerId, ...)
""",
    "assignments": """
    rater_id TEXT NOT NULL REFERENCES raters(rater_id),
    position INTEGER NOT NULL,
    item_id TEXT NOT NULL REFERENCES clips(clip_id),
    PRIMARY KEY (rater_id, position),
    UNIQUE (rater_id, item_id)
""",
    "ratings": """
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    rater_id TEXT NOT NULL REFERENCES raters(rater_id),
    item_id TEXT NOT NULL REFERENCES clips(clip_id),
    scale TEXT NOT NULL,
    value INTEGER NOT NULL CHECK (value BETWEEN 1 AND 5),
    created_at REAL NOT NULL,
    listen_s REAL,      -- wall time of the rater's complete listens of the clip when the rating was given
    plays INTEGER,      -- play events of the clip by then (1 + replays and resumes)
    UNIQUE (rater_id, item_id, scale)
""",
    "pages": """
    page_id TEXT PRIMARY KEY,
    test TEXT NOT NULL CHECK (test IN ('cmos', 'ab', 'mushra')),
    prompt_id TEXT NOT NULL,
    reference_id TEXT REFERENCES clips(clip_id),  -- MUSHRA: the open reference
    clips TEXT NOT NULL                           -- JSON list of the clip ids rated on the page
""",
    "page_assignments": """
    rater_id TEXT NOT NULL REFERENCES raters(rater_id),
    position INTEGER NOT NULL,
    page_id TEXT NOT NULL REFERENCES pages(page_id),
    layout TEXT NOT NULL,  -- JSON list of the page's clip ids in the order this rater sees them (A, B / 1..N)
    first_shown_at REAL,
    last_shown_at REAL,
    views INTEGER NOT NULL DEFAULT 0,
    submitted_at REAL,
    PRIMARY KEY (rater_id, position),
    UNIQUE (rater_id, page_id)
""",
    "comparisons": """
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    rater_id TEXT NOT NULL REFERENCES raters(rater_id),
    page_id TEXT NOT NULL REFERENCES pages(page_id),
    clip_a TEXT NOT NULL REFERENCES clips(clip_id),  -- the clip shown as A
    clip_b TEXT NOT NULL REFERENCES clips(clip_id),  -- the clip shown as B
    value INTEGER NOT NULL CHECK (value BETWEEN -3 AND 3),  -- B against A as answered (A/B test: -1 A, +1 B)
    created_at REAL NOT NULL,
    listen_s_a REAL,
    listen_s_b REAL,
    plays_a INTEGER,
    plays_b INTEGER,
    UNIQUE (rater_id, page_id)
""",
    "mushra_ratings": """
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    rater_id TEXT NOT NULL REFERENCES raters(rater_id),
    page_id TEXT NOT NULL REFERENCES pages(page_id),
    clip_id TEXT NOT NULL REFERENCES clips(clip_id),
    value INTEGER NOT NULL CHECK (value BETWEEN 0 AND 100),
    created_at REAL NOT NULL,
    listen_s REAL,
    plays INTEGER,
    UNIQUE (rater_id, page_id, clip_id)
""",
    "listens": """
    rater_id TEXT NOT NULL,
    clip_id TEXT NOT NULL,
    plays INTEGER NOT NULL DEFAULT 0,      -- play events
    completed INTEGER NOT NULL DEFAULT 0,  -- listens accepted as complete (play ... ended covering the clip)
    listen_s REAL NOT NULL DEFAULT 0,      -- wall time of the accepted listens
    seeks INTEGER NOT NULL DEFAULT 0,      -- forward seeks the page refused
    open_since REAL,                       -- first play of the listen in progress (NULL: none)
    PRIMARY KEY (rater_id, clip_id)
""",
    "play_events": """
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    rater_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    event TEXT NOT NULL CHECK (event IN ('play', 'ended', 'seek')),
    created_at REAL NOT NULL
""",
    "page_times": """
    rater_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    first_shown_at REAL NOT NULL,
    last_shown_at REAL NOT NULL,
    views INTEGER NOT NULL DEFAULT 1,
    submitted_at REAL,
    PRIMARY KEY (rater_id, item_id)
""",
}

SCHEMA = "\n".join(f"CREATE TABLE IF NOT EXISTS {t} ({body});" for t, body in TABLE_SQL.items()) + """
CREATE INDEX IF NOT EXISTS play_events_rater_item ON play_events (rater_id, item_id, event);
"""

TABLES = tuple(TABLE_SQL)

# Migration from the first schema: tables whose CHECK constraints changed are rebuilt; these columns are added.
_REBUILT_V2 = ("clips", "play_events")
_ADDED_V2 = {"raters": ("access", "token_nonce", "platform"), "ratings": ("listen_s", "plays")}


class Store:
    """Thread-safe access to one study database (one sqlite3 connection per thread).

    Args:
        path: the database file (created with its parent folder when missing).
        busy_timeout_ms: how long a writer waits for the lock held by another writer.
    """

    def __init__(self, path: str | Path, busy_timeout_ms: int = 30000):
        self.path = Path(path)
        self.busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._migrate()
        # executescript commits on its own; the CREATE ... IF NOT EXISTS statements are idempotent.
        self.connection().executescript(SCHEMA + f"PRAGMA user_version = {SCHEMA_VERSION};")

    def _migrate(self) -> None:
        """Bring a database of the first schema to :data:`SCHEMA_VERSION`, keeping every row (one transaction)."""
        con = self.connection()
        if con.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
            return
        # Foreign keys must be off while a referenced table is dropped and renamed; the pragma is a no-op inside
        # a transaction, so it is switched here and checked again before the commit.
        con.execute("PRAGMA foreign_keys = OFF")
        try:
            with self.transaction() as tx:
                names = {r[0] for r in tx.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                # re-read inside the write lock: another process may have migrated meanwhile
                if "clips" not in names or tx.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
                    return
                for table in _REBUILT_V2:
                    self._rebuild(tx, table)
                for table, columns in _ADDED_V2.items():
                    have = {r["name"] for r in tx.execute(f"PRAGMA table_info({table})")}
                    for col in columns:
                        if col not in have:
                            decl = next(line.split("--")[0].strip().rstrip(",") for line in
                                        TABLE_SQL[table].splitlines() if line.strip().startswith(col + " "))
                            tx.execute(f"ALTER TABLE {table} ADD COLUMN {decl}")
                tx.execute("UPDATE clips SET test = 'acr' WHERE kind = 'main' AND test IS NULL")
                bad = tx.execute("PRAGMA foreign_key_check").fetchall()
                if bad:
                    raise sqlite3.IntegrityError(f"{self.path}: migration would break {len(bad)} foreign key(s)")
                tx.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        finally:
            con.execute("PRAGMA foreign_keys = ON")

    @staticmethod
    def _rebuild(con: sqlite3.Connection, table: str) -> None:
        """Recreate ``table`` from :data:`TABLE_SQL` with its rows (columns it lacks stay NULL / default)."""
        old = [r["name"] for r in con.execute(f"PRAGMA table_info({table})")]
        new = f"{table}__new"
        con.execute(f"CREATE TABLE {new} ({TABLE_SQL[table]})")
        have = {r["name"] for r in con.execute(f"PRAGMA table_info({new})")}
        cols = ", ".join(c for c in old if c in have)
        con.execute(f"INSERT INTO {new} ({cols}) SELECT {cols} FROM {table}")  # noqa: S608 - our own names
        con.execute(f"DROP TABLE {table}")
        con.execute(f"ALTER TABLE {new} RENAME TO {table}")

    def connection(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so a transaction takes the write lock
            # at its start and two registrations can never read the same max(idx).
            con = sqlite3.connect(str(self.path), timeout=self.busy_timeout_ms / 1000, isolation_level=None,
                                  check_same_thread=False)
            con.row_factory = sqlite3.Row
            con.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            con.execute("PRAGMA journal_mode = WAL")
            con.execute("PRAGMA synchronous = NORMAL")  # durable at each commit in WAL mode except on power loss
            con.execute("PRAGMA foreign_keys = ON")
            self._local.con = con
            with self._lock:
                self._all.append(con)
        return con

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on any exception, so a refusal writes nothing)."""
        con = self.connection()
        con.execute("BEGIN IMMEDIATE")
        try:
            yield con
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")

    def query(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        return self.connection().execute(sql, params).fetchall()

    def close(self) -> None:
        with self._lock:
            for con in self._all:
                try:
                    con.close()
                except sqlite3.Error:
                    pass
            self._all.clear()
        self._local = threading.local()

    # ---- meta -------------------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self.query("SELECT value FROM meta WHERE key = ?", (key,))
        return row[0]["value"] if row else None

    def set_meta_default(self, key: str, value: str) -> str:
        """Store ``value`` under ``key`` unless one is stored already; returns the stored value."""
        with self.transaction() as con:
            con.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO NOTHING", (key, value))
            return con.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()["value"]

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as con:
            con.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = ?",
                        (key, value, value))

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

    @staticmethod
    def now() -> float:
        return time.time()

    # ---- reading a study for `mos report` / `mos export` ----------------------------------------------------
    @classmethod
    def open_readonly(cls, path: str | Path) -> Store:
        """An existing study database opened for reading only: nothing is created, migrated or written.

        :class:`basekit.errors.UserError` when ``path`` is missing, is not SQLite, or lacks the study tables. Use it
        from one thread, with :meth:`get_meta`, :meth:`query` and the reading methods below; :meth:`close` it.
        """
        import urllib.request

        from basekit.errors import UserError

        p = Path(path)
        if not p.is_file():
            raise UserError(f"database {p} does not exist; pass the --db file that `mos serve` wrote")
        try:
            con = sqlite3.connect(f"file:{urllib.request.pathname2url(str(p.resolve()))}?mode=ro", uri=True,
                                  check_same_thread=False)
            con.row_factory = sqlite3.Row
            names = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.Error as exc:
            raise UserError(f"database {p} cannot be read as SQLite ({exc}); pass the --db file of a study") from None
        missing = [t for t in ("meta", "clips", "ratings", "page_times") if t not in names]
        if missing:
            con.close()
            raise UserError(f"database {p} is not a MOS study database (missing tables {missing})")
        store = cls.__new__(cls)
        store.path, store.busy_timeout_ms = p, 0
        store._local, store._lock, store._all = threading.local(), threading.Lock(), [con]
        store._local.con = con  # connection() and query() of this thread read through it
        return store

    def _columns(self, table: str) -> list[str]:
        return [r["name"] for r in self.query(f"PRAGMA table_info({table})")]

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
        import json  # noqa: PLC0415 - kept local so this reading section stands on its own

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
