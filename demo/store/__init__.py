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

One concept per module: :mod:`demo.store.schema` (the tables and what the migration changes),
:mod:`demo.store.database` (connections, transactions, migration, read-only opening, meta),
:mod:`demo.store.rating` (a rater's session: registration, progress, listening log, answers) and
:mod:`demo.store.reading` (the owner's counts and the records ``mos report`` / ``mos export`` read).
"""


from demo.store.rating import RatingFlow
from demo.store.reading import StudyReads
from demo.store.schema import SCHEMA, SCHEMA_VERSION, TABLE_SQL, TABLES

__all__ = ["SCHEMA", "SCHEMA_VERSION", "TABLES", "TABLE_SQL", "Store"]


class Store(RatingFlow, StudyReads):
    """Thread-safe access to one study database (one sqlite3 connection per thread): the rating flow and the
    reading methods over one :class:`~demo.store.database.Database`.

    Args:
        path: the database file (created with its parent folder when missing).
        busy_timeout_ms: how long a writer waits for the lock held by another writer.
    """
