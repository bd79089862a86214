"""The database file: connection settings, schema, and migrations (applied once each, in order).

Migrations are small functions recorded in `_migrations` and safe to run from two processes at
once (the collector and Datasette start together). Everything that writes articles, sources and
health lives in store.py.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import sqlite_utils

from monitor import store_stories
from monitor.dates import iso
from monitor.errors import DatabaseError
from monitor.stories import text_of

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 10_000


LOG_KEPT_BYTES = 64 * 1024 * 1024
"""What the write-ahead log's file is cut back to when it starts again from its beginning. While
the writer is busy (a first pass, a backfill) no checkpoint can restart the log, so it grows
with the burst (200-225 MB for a first pass of 50,000 articles into a 118 MB database); SQLite
then reuses the file but keeps its size on disk until the last connection closes or, for
`monitor run`, the day's housekeeping TRUNCATE checkpoint."""


def open_db(path: Path | str) -> sqlite_utils.Database:
    """Open (creating if needed) the coverage database, migrated to the current schema."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode = WAL")
        # NORMAL is durable in WAL mode except for the last commits before a power cut.
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        # 64 MB of page cache: the indexes the collector touches stay in memory at 1M articles.
        conn.execute("PRAGMA cache_size = -65536")
        conn.execute(f"PRAGMA journal_size_limit = {LOG_KEPT_BYTES}")
        db = sqlite_utils.Database(conn)
        migrate(db)
    except (OSError, sqlite3.Error) as e:
        raise DatabaseError(f"cannot use {path} as the coverage database: {e}") from e
    return db


def path_of(db: sqlite_utils.Database) -> Path:
    """The file a connection has open (its `main` database)."""
    return Path(next(row[2] for row in db.execute("PRAGMA database_list") if row[1] == "main"))


@contextmanager
def opened(path: Path | str) -> Iterator[sqlite_utils.Database]:
    """open_db() for the length of a `with` block."""
    db = open_db(path)
    try:
        yield db
    finally:
        db.close()


class Checkpointer:
    """WAL checkpoints on a thread with its own connection while the collector runs.

    By default SQLite checkpoints inside whichever commit takes the log past 1,000 pages; at a
    million articles that copy takes seconds, and in the collector it would stall the event loop
    (every fetch) for that long. Here commits never checkpoint; this thread does, every few
    seconds, PASSIVE (it waits for nobody), with the GIL released while SQLite works.
    """

    EVERY_S = 0.5
    """Often enough that the last checkpoint, which a collection pass waits for when it stops,
    has little left to copy (after 1,000 changed feeds: 0.02-0.06 s, 0.10-0.12 s every 2 s);
    with nothing new in the log one costs microseconds."""

    def __init__(self, db: sqlite_utils.Database, every: float = EVERY_S) -> None:
        self.db = db
        self.every = every
        self.path = path_of(db)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)

    def start(self) -> None:
        self.db.execute("PRAGMA wal_autocheckpoint = 0")
        self._thread.start()

    def stop(self) -> None:
        """Checkpoint once more and hand checkpoints back to the connection's commits."""
        self._stop.set()
        self._thread.join()
        self.db.execute("PRAGMA wal_autocheckpoint = 1000")  # SQLite's default

    def __enter__(self) -> Checkpointer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            while True:
                stopping = self._stop.wait(self.every)
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error as e:
                    log.warning("WAL checkpoint failed (tried again shortly): %s", e)
                if stopping:
                    return
        finally:
            conn.close()


@contextmanager
def transaction(db: sqlite_utils.Database) -> Iterator[None]:
    """BEGIN IMMEDIATE: take the write lock up front, so the batch never fails half-way on it."""
    db.execute("BEGIN IMMEDIATE")
    store_stories.check(db)
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        store_stories.forget(db)
        raise
    db.execute("COMMIT")


# Migrations: small functions applied once each, in order, recorded in _migrations.
MIGRATIONS: list[tuple[str, Migration]] = []


Migration = Callable[[sqlite_utils.Database], None]


def migration(fn: Migration) -> Migration:
    MIGRATIONS.append((fn.__name__, fn))
    return fn


def migrate(db: sqlite_utils.Database) -> None:
    if "_migrations" in db.table_names():
        done = {row[0] for row in db.execute("SELECT name FROM _migrations").fetchall()}
        if done >= {name for name, _ in MIGRATIONS}:
            return  # up to date: no write lock needed (a backup must not wait on the collector)
    db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied TEXT)")
    for name, fn in MIGRATIONS:
        # Checked inside the write lock: the collector and Datasette may start at the same moment.
        with transaction(db):
            if db.execute("SELECT 1 FROM _migrations WHERE name = ?", [name]).fetchone():
                continue
            fn(db)
            db.execute(
                "INSERT INTO _migrations (name, applied) VALUES (?, ?)",
                [name, iso(datetime.now(UTC))],
            )
        log.info("applied migration %s", name)


@migration
def m001_initial(db: sqlite_utils.Database) -> None:
    _run_script(db, _INITIAL_SCHEMA)


def _run_script(db: sqlite_utils.Database, script: str) -> None:
    """Run statements one by one: executescript() would COMMIT the migration's transaction."""
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            db.execute(statement)
            statement = ""


_INITIAL_SCHEMA = """
CREATE TABLE sources (
    name TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    interval INTEGER NOT NULL,
    topics TEXT NOT NULL DEFAULT '[]',
    active INTEGER NOT NULL DEFAULT 1,
    etag TEXT,
    last_modified TEXT,
    last_poll TEXT,
    last_ok TEXT,
    last_new TEXT,
    last_status TEXT,
    last_http_status INTEGER,
    last_error TEXT,
    last_warnings TEXT,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    retry_after TEXT,
    next_poll TEXT
);
CREATE TABLE articles (
    id INTEGER PRIMARY KEY,
    url TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    summary TEXT NOT NULL DEFAULT '',
    published TEXT NOT NULL,
    first_seen TEXT NOT NULL,
    updated TEXT NOT NULL,
    source TEXT NOT NULL,
    outlet TEXT NOT NULL,
    story_id INTEGER,
    topics TEXT NOT NULL DEFAULT '[]',
    guid TEXT,
    link TEXT
);
CREATE INDEX idx_articles_published ON articles (published);
CREATE INDEX idx_articles_first_seen ON articles (first_seen);
CREATE INDEX idx_articles_outlet ON articles (outlet, published);
CREATE INDEX idx_articles_source ON articles (source, published);
CREATE INDEX idx_articles_story ON articles (story_id);
CREATE INDEX idx_articles_relevant ON articles (published) WHERE topics != '[]';
CREATE TABLE article_keys (
    key TEXT PRIMARY KEY,
    article_id INTEGER NOT NULL REFERENCES articles (id) ON DELETE CASCADE
) WITHOUT ROWID;
CREATE INDEX idx_article_keys_article ON article_keys (article_id);
CREATE TABLE article_history (
    id INTEGER PRIMARY KEY,
    article_id INTEGER NOT NULL REFERENCES articles (id) ON DELETE CASCADE,
    title TEXT NOT NULL,
    summary TEXT NOT NULL,
    replaced TEXT NOT NULL
);
CREATE INDEX idx_article_history_article ON article_history (article_id);
CREATE TABLE fetches (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    started TEXT NOT NULL,
    status TEXT NOT NULL,
    http_status INTEGER,
    new INTEGER NOT NULL DEFAULT 0,
    updated INTEGER NOT NULL DEFAULT 0,
    unchanged INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0,
    duration_ms INTEGER NOT NULL,
    error TEXT,
    warnings TEXT
);
CREATE INDEX idx_fetches_source ON fetches (source, started);
CREATE INDEX idx_fetches_started ON fetches (started);
CREATE VIRTUAL TABLE articles_fts USING fts5 (
    title, summary,
    content="articles", content_rowid="id",
    tokenize="unicode61 remove_diacritics 2"
);
CREATE TRIGGER articles_fts_insert AFTER INSERT ON articles BEGIN
    INSERT INTO articles_fts (rowid, title, summary) VALUES (new.id, new.title, new.summary);
END;
CREATE TRIGGER articles_fts_delete AFTER DELETE ON articles BEGIN
    INSERT INTO articles_fts (articles_fts, rowid, title, summary)
    VALUES ('delete', old.id, old.title, old.summary);
END;
CREATE TRIGGER articles_fts_update AFTER UPDATE OF title, summary ON articles BEGIN
    INSERT INTO articles_fts (articles_fts, rowid, title, summary)
    VALUES ('delete', old.id, old.title, old.summary);
    INSERT INTO articles_fts (rowid, title, summary) VALUES (new.id, new.title, new.summary);
END;
"""


@migration
def m002_topic_terms_and_sightings(db: sqlite_utils.Database) -> None:
    _run_script(db, _TOPICS_SCHEMA)


_TOPICS_SCHEMA = """
ALTER TABLE articles ADD COLUMN matched TEXT NOT NULL DEFAULT '{}';
ALTER TABLE fetches ADD COLUMN filtered INTEGER NOT NULL DEFAULT 0;
CREATE TABLE sightings (
    article_id INTEGER NOT NULL REFERENCES articles (id) ON DELETE CASCADE,
    source TEXT NOT NULL,
    first_seen TEXT NOT NULL,
    PRIMARY KEY (article_id, source)
) WITHOUT ROWID;
CREATE INDEX idx_sightings_source ON sightings (source);
INSERT INTO sightings (article_id, source, first_seen) SELECT id, source, first_seen FROM articles;
CREATE INDEX idx_articles_unmatched ON articles (first_seen) WHERE topics = '[]';
"""


@migration
def m003_source_flag(db: sqlite_utils.Database) -> None:
    db.execute("ALTER TABLE sources ADD COLUMN flag TEXT")
    db.execute("CREATE INDEX idx_fetches_new ON fetches (source, started) WHERE new > 0")


@migration
def m004_stories(db: sqlite_utils.Database) -> None:
    _run_script(db, store_stories.SCHEMA)
    for title, summary in db.execute("SELECT title, summary FROM articles").fetchall():
        store_stories.count_words(db, text_of(title, summary).distinct_words())
    store_stories.flush(db, force=True)
    store_stories.restory(db)


@migration
def m005_triage(db: sqlite_utils.Database) -> None:
    _run_script(db, _TRIAGE_SCHEMA)


# Staff decisions for the public headlines, as an append-only log: it is its own audit trail
# (who, when, what), and the current state of a story is its latest entry of each kind.
_TRIAGE_STATE = """
latest_pin AS (
    SELECT story_id, action, expires FROM triage t
    WHERE action IN ('pin', 'unpin') AND id = (
        SELECT max(id) FROM triage WHERE story_id = t.story_id AND action IN ('pin', 'unpin'))
), pinned AS (
    SELECT story_id FROM latest_pin
    WHERE action = 'pin'
      AND (expires IS NULL OR expires > strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
), hidden_stories AS (
    SELECT story_id FROM triage t
    WHERE action IN ('hide_story', 'show_story') AND id = (
        SELECT max(id) FROM triage
        WHERE story_id = t.story_id AND action IN ('hide_story', 'show_story'))
      AND action = 'hide_story'
), hidden_urls AS (
    SELECT a.url FROM triage t JOIN articles a ON a.id = t.article_id
    WHERE t.action IN ('hide_article', 'show_article') AND t.id = (
        SELECT max(id) FROM triage
        WHERE article_id = t.article_id AND action IN ('hide_article', 'show_article'))
      AND t.action = 'hide_article'
)
"""
"""What staff decided, as of their latest action on each story or article (triage is a log)."""


_TRIAGE_SCHEMA = """
CREATE TABLE triage (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    by TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN (
        'pin', 'unpin', 'hide_story', 'show_story', 'hide_article', 'show_article', 'note')),
    story_id INTEGER,
    article_id INTEGER,
    note TEXT,
    expires TEXT,
    CHECK ((story_id IS NULL) != (article_id IS NULL))
);
CREATE INDEX idx_triage_story ON triage (story_id, action);
CREATE INDEX idx_triage_article ON triage (article_id, action);
CREATE INDEX idx_stories_last_seen ON stories (last_seen);
"""


@migration
def m006_facet_indexes(db: sqlite_utils.Database) -> None:
    # Every facet and sort the staff pages offer has an index (the 1M-article figures in issue 6).
    db.execute("CREATE INDEX idx_stories_outlet ON stories (outlet, published)")
    db.execute("CREATE INDEX idx_fetches_status ON fetches (status, started)")


@migration
def m007_window_in_memory(db: sqlite_utils.Database) -> None:
    # The clusterer now keeps the last few days of articles in memory, loaded through
    # idx_articles_first_seen: the per-word index it used to query is no longer written.
    db.execute("DROP TABLE story_index")


@migration
def m008_fts_in_bulk(db: sqlite_utils.Database) -> None:
    # New articles reach the full-text index in one statement per write (store.py), not one
    # trigger run per row: the same index, written at several times the speed. Edits and
    # deletes keep their triggers (rare, and they must see the row's old text).
    db.execute("DROP TRIGGER articles_fts_insert")


@migration
def m009_public_headlines_in_two_parts(db: sqlite_utils.Database) -> None:
    # Pinned stories and the rest as two arms with a constant `pinned`: "the newest N" then reads
    # the relevant-stories index newest first and stops after N (publish.HEADLINES_SQL), instead
    # of building and sorting the whole 14-day window (23 ms -> 0.7 ms at 100K articles).
    # Databases from before this migration have m005's first version of the view (a UNION of
    # the same two sets, sorted whole); new ones get only this one.
    _run_script(
        db,
        f"""DROP VIEW IF EXISTS public_headlines;
CREATE VIEW public_headlines AS
WITH {_TRIAGE_STATE}
SELECT s.id AS story_id, s.title, s.url, s.outlet, s.published, s.topics, s.outlets,
    s.pinned,
    coalesce((SELECT note FROM triage WHERE story_id = s.id AND action = 'note'
              ORDER BY id DESC LIMIT 1), '') AS note
FROM (
    SELECT *, 1 AS pinned FROM stories WHERE id IN (SELECT story_id FROM pinned)
    UNION ALL
    -- The last 14 days of relevant coverage we have (relative to the newest, not the clock).
    SELECT *, 0 AS pinned FROM stories
    WHERE topics != '[]' AND published >= strftime('%Y-%m-%dT%H:%M:%SZ',
        (SELECT max(published) FROM stories WHERE topics != '[]'), '-14 days')
      AND id NOT IN (SELECT story_id FROM pinned)
) AS s
WHERE s.id NOT IN (SELECT story_id FROM hidden_stories)
  AND s.url NOT IN (SELECT url FROM hidden_urls);
""",
    )


FTS_AUTOMERGE = 8
"""Segments of one size the full-text index gathers before merging them (FTS5's default is 4).
Each write adds a segment and FTS5 merges as it writes. Measured on 200,000 articles written
500 a transaction: 17.1 µs an article for the index at 8 against 20.9 at 4, for 21 segments
instead of 12, so a ranked search of a rare word takes 1.07 ms instead of 0.80 and one of a
word in 18 % of articles 44 ms instead of 38: searches stay far inside their targets, and
ingest is the tighter figure (bench/HISTORY.md)."""


@migration
def m010_fts_fewer_merges(db: sqlite_utils.Database) -> None:
    db.execute(
        "INSERT INTO articles_fts (articles_fts, rank) VALUES ('automerge', ?)", [FTS_AUTOMERGE]
    )


@migration
def m011_body_digest(db: sqlite_utils.Database) -> None:
    # Many feeds send no ETag or Last-Modified (or ignore them) and answer every poll with the
    # whole feed: the digest of what was last read lets an identical body skip the reading.
    db.execute("ALTER TABLE sources ADD COLUMN body_digest TEXT")
