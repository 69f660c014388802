"""One study database file: per-thread connections in WAL mode, ``BEGIN IMMEDIATE`` transactions, the
migration from the first schema, the read-only opening for ``mos report``, and the ``meta`` table.

Each thread gets its own connection (sqlite3 connections must not be shared across threads), with a busy
timeout so concurrent writers wait instead of failing with "database is locked". The rating flow
(:mod:`demo.store.rating`) and the reading methods (:mod:`demo.store.reading`) build on this class."""

from __future__ import annotations

import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, TypeVar

from demo.store.schema import ADDED_V2, REBUILT_V2, SCHEMA, SCHEMA_VERSION, TABLE_SQL
from basekit.errors import UserError

_D = TypeVar("_D", bound="Database")  # open_readonly returns the class it is called on (a Store)


class Database:
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
                for table in REBUILT_V2:
                    self._rebuild(tx, table)
                for table, columns in ADDED_V2.items():
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

    @staticmethod
    def now() -> float:
        return time.time()

    # ---- reading a study for `mos report` / `mos export` ----------------------------------------------------
    @classmethod
    def open_readonly(cls: type[_D], path: str | Path) -> _D:
        """An existing study database opened for reading only: nothing is created, migrated or written.

        :class:`basekit.errors.UserError` when ``path`` is missing, is not SQLite, or lacks the study tables. Use it
        from one thread, with :meth:`get_meta`, :meth:`query` and the methods of
        :class:`demo.store.reading.StudyReads`; :meth:`close` it.
        """
        import urllib.request


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
