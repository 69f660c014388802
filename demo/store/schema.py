"""The tables of a study database: one CREATE body per table in :data:`TABLE_SQL`, the schema built from it,
and what the migration from the first schema changes.

Schema versions (``PRAGMA user_version``): 0/1 is the first schema (no comparison pages, no listening log);
:class:`demo.store.database.Database` migrates such a database on opening: the tables of :data:`REBUILT_V2`
(whose CHECK constraints changed) are rebuilt from :data:`TABLE_SQL`, the columns of :data:`ADDED_V2` added."""

from __future__ import annotations

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
REBUILT_V2 = ("clips", "play_events")
ADDED_V2 = {"raters": ("access", "token_nonce", "platform"), "ratings": ("listen_s", "plays")}
