"""SQLite store of a listening study: every rating is committed the moment it is given.

Tables (see :data:`SCHEMA`): ``meta`` (study secret, resolved study JSON), ``clips`` (opaque clip id → kind,
system, prompt, file: the only place system names live), ``raters``, ``assignments`` (each rater's seeded
order, stored so a reload resumes exactly), ``ratings`` (UNIQUE(rater_id, item_id, scale): a double click, a
second tab or a repeated API call cannot duplicate a rating), ``play_events`` and ``page_times``.

The database runs in WAL mode so readers (``mos report`` during a live study) never block the writers. Each
thread gets its own connection (sqlite3 connections must not be shared across threads), with a busy timeout
so concurrent writers wait instead of failing with "database is locked".
"""

from __future__ import annotations

import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS clips (
    clip_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('main', 'gold', 'attention', 'training')),
    system TEXT,
    prompt_id TEXT,
    text TEXT NOT NULL,
    path TEXT NOT NULL,
    expect TEXT
);
CREATE TABLE IF NOT EXISTS raters (
    rater_id TEXT PRIMARY KEY,
    idx INTEGER NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    consent_at REAL,
    training_done_at REAL,
    completed_at REAL
);
CREATE TABLE IF NOT EXISTS assignments (
    rater_id TEXT NOT NULL REFERENCES raters(rater_id),
    position INTEGER NOT NULL,
    item_id TEXT NOT NULL REFERENCES clips(clip_id),
    PRIMARY KEY (rater_id, position),
    UNIQUE (rater_id, item_id)
);
CREATE TABLE IF NOT EXISTS ratings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    rater_id TEXT NOT NULL REFERENCES raters(rater_id),
    item_id TEXT NOT NULL REFERENCES clips(clip_id),
    scale TEXT NOT NULL,
    value INTEGER NOT NULL CHECK (value BETWEEN 1 AND 5),
    created_at REAL NOT NULL,
    UNIQUE (rater_id, item_id, scale)
);
CREATE TABLE IF NOT EXISTS play_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    rater_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    event TEXT NOT NULL CHECK (event IN ('play', 'ended')),
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS play_events_rater_item ON play_events (rater_id, item_id, event);
CREATE TABLE IF NOT EXISTS page_times (
    rater_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    first_shown_at REAL NOT NULL,
    last_shown_at REAL NOT NULL,
    views INTEGER NOT NULL DEFAULT 1,
    submitted_at REAL,
    PRIMARY KEY (rater_id, item_id)
);
"""

TABLES = ("meta", "clips", "raters", "assignments", "ratings", "play_events", "page_times")


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
        # executescript commits on its own; the CREATE ... IF NOT EXISTS statements are idempotent.
        self.connection().executescript(SCHEMA)

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
