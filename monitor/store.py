"""The only module that writes SQL: schema, migrations, article upserts, source health.

Each poll of a source is written in one short transaction (BEGIN IMMEDIATE ... COMMIT), after all
network I/O for it is done: a crash loses nothing committed and leaves nothing half-written, and
readers (Datasette) never wait on the network. Times are UTC ISO 8601 strings ending in 'Z'.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlite_utils

from monitor import health
from monitor.config import Config
from monitor.dates import iso
from monitor.errors import DatabaseError
from monitor.normalise import Item

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 10_000


@dataclass(frozen=True)
class SourceState:
    etag: str | None
    last_modified: str | None
    retry_after: str | None
    consecutive_failures: int
    next_poll: str | None


@dataclass(frozen=True)
class Poll:
    """What one poll of one source found, ready to record."""

    source: str
    started: datetime
    duration_ms: int
    status: str
    """'ok', 'not_modified', or an error code from monitor.errors."""
    http_status: int | None = None
    bytes: int = 0
    error: str | None = None
    warnings: tuple[str, ...] = ()
    etag: str | None = None
    last_modified: str | None = None
    retry_after: datetime | None = None

    @property
    def failed(self) -> bool:
        return self.status not in ("ok", "not_modified")


@dataclass(frozen=True)
class Counts:
    new: int = 0
    updated: int = 0
    unchanged: int = 0


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
        db = sqlite_utils.Database(conn)
        migrate(db)
    except (OSError, sqlite3.Error) as e:
        raise DatabaseError(f"cannot use {path} as the coverage database: {e}") from e
    return db


@contextmanager
def transaction(db: sqlite_utils.Database) -> Iterator[None]:
    """BEGIN IMMEDIATE: take the write lock up front, so the batch never fails half-way on it."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


# Migrations: small functions applied once each, in order, recorded in _migrations.
MIGRATIONS: list[tuple[str, Migration]] = []


Migration = Callable[[sqlite_utils.Database], None]


def migration(fn: Migration) -> Migration:
    MIGRATIONS.append((fn.__name__, fn))
    return fn


def migrate(db: sqlite_utils.Database) -> None:
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


def sync_sources(db: sqlite_utils.Database, config: Config) -> None:
    """Mirror the configured sources into `sources`, keeping health; unlisted ones go inactive."""
    names = [s.name for s in config.sources]
    with transaction(db):
        for s in config.sources:
            db.execute(
                """INSERT INTO sources (name, url, interval, topics, active)
                VALUES (?, ?, ?, ?, 1)
                ON CONFLICT (name) DO UPDATE SET
                    url = excluded.url, interval = excluded.interval,
                    topics = excluded.topics, active = 1,
                    etag = CASE WHEN url = excluded.url THEN etag END,
                    last_modified = CASE WHEN url = excluded.url THEN last_modified END""",
                [s.name, s.url, s.interval, json.dumps(list(s.topics))],
            )
        placeholders = ",".join("?" * len(names))
        db.execute(f"UPDATE sources SET active = 0 WHERE name NOT IN ({placeholders})", names)


def source_state(db: sqlite_utils.Database, name: str) -> SourceState:
    row = db.execute(
        """SELECT etag, last_modified, retry_after, consecutive_failures, next_poll
        FROM sources WHERE name = ?""",
        [name],
    ).fetchone()
    if row is None:
        return SourceState(None, None, None, 0, None)
    return SourceState(*row)


def due_sources(db: sqlite_utils.Database, now: datetime) -> list[str]:
    """Active sources whose next poll time has come (or that were never polled)."""
    rows = db.execute(
        """SELECT name FROM sources
        WHERE active AND (next_poll IS NULL OR next_poll <= ?)
        ORDER BY next_poll IS NOT NULL, next_poll""",
        [iso(now)],
    ).fetchall()
    return [row[0] for row in rows]


def resolved_alias(db: sqlite_utils.Database, link: str) -> str | None:
    """The canonical URL an aggregator link was resolved to in an earlier poll, if any."""
    row = db.execute(
        """SELECT a.url FROM article_keys k JOIN articles a ON a.id = k.article_id
        WHERE k.key = ?""",
        [_link_key(link)],
    ).fetchone()
    return row[0] if row else None


def record_poll(
    db: sqlite_utils.Database,
    poll: Poll,
    interval: int,
    items: Iterable[Item] = (),
    now: datetime | None = None,
) -> Counts:
    """Write one poll in one transaction: its items, the source's health and a `fetches` row."""
    now = now or poll.started
    with transaction(db):
        counts = _save_items(db, poll.source, list(items), now) if not poll.failed else Counts()
        _record_health(db, poll, interval, counts, now)
        db.execute(
            """INSERT INTO fetches (source, started, status, http_status, new, updated, unchanged,
                bytes, duration_ms, error, warnings)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            [
                poll.source,
                iso(poll.started),
                poll.status,
                poll.http_status,
                counts.new,
                counts.updated,
                counts.unchanged,
                poll.bytes,
                poll.duration_ms,
                poll.error,
                _warnings(poll.warnings),
            ],
        )
    return counts


def _warnings(warnings: tuple[str, ...]) -> str | None:
    return "\n".join(warnings) if warnings else None


def _guid_key(source: str, guid: str) -> str:
    # GUIDs are only unique within one feed, so the key is scoped by source.
    return f"guid\x1f{source}\x1f{guid}"


def _link_key(link: str) -> str:
    return f"link\x1f{link}"


def _save_items(db: sqlite_utils.Database, source: str, items: list[Item], now: datetime) -> Counts:
    # A feed that repeats a GUID for different links has broken GUIDs: identify those by URL.
    repeated = {g for g, n in Counter(i.guid for i in items if i.guid).items() if n > 1}
    new = updated = unchanged = 0
    stamp = iso(now)
    for item in items:
        guid = item.guid if item.guid not in repeated else None
        row = _find(db, source, item, guid)
        if row is None:
            article_id = _insert(db, source, item, stamp)
            new += 1
        else:
            article_id = row["id"]
            if _update(db, row, item, stamp):
                updated += 1
            else:
                unchanged += 1
        if guid:
            _add_key(db, _guid_key(source, guid), article_id)
        if item.link != item.url:
            _add_key(db, _link_key(item.link), article_id)
    return Counts(new, updated, unchanged)


def _find(
    db: sqlite_utils.Database, source: str, item: Item, guid: str | None
) -> dict[str, Any] | None:
    columns = "a.id, a.title, a.summary, a.topics"
    if guid:
        row = db.execute(
            f"SELECT {columns} FROM article_keys k JOIN articles a ON a.id = k.article_id "
            "WHERE k.key = ?",
            [_guid_key(source, guid)],
        ).fetchone()
        if row:
            return dict(zip(("id", "title", "summary", "topics"), row, strict=True))
    row = db.execute(f"SELECT {columns} FROM articles a WHERE a.url = ?", [item.url]).fetchone()
    if row is None and item.link != item.url:
        row = db.execute(
            f"SELECT {columns} FROM article_keys k JOIN articles a ON a.id = k.article_id "
            "WHERE k.key = ?",
            [_link_key(item.link)],
        ).fetchone()
    return dict(zip(("id", "title", "summary", "topics"), row, strict=True)) if row else None


def _insert(db: sqlite_utils.Database, source: str, item: Item, stamp: str) -> int:
    cursor = db.execute(
        """INSERT INTO articles (url, title, summary, published, first_seen, updated, source,
            outlet, topics, guid, link)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        [
            item.url,
            item.title,
            item.summary,
            iso(item.published) if item.published else stamp,
            stamp,
            stamp,
            source,
            item.outlet,
            json.dumps(sorted(set(item.topics))),
            item.guid,
            item.link,
        ],
    )
    article_id = int(cursor.lastrowid or 0)
    # Until stories are clustered, every article is its own story.
    db.execute("UPDATE articles SET story_id = id WHERE id = ?", [article_id])
    return article_id


def _update(db: sqlite_utils.Database, row: dict[str, Any], item: Item, stamp: str) -> bool:
    topics = sorted(set(json.loads(row["topics"])) | set(item.topics))
    text_changed = (row["title"], row["summary"]) != (item.title, item.summary)
    if text_changed:
        db.execute(
            """INSERT INTO article_history (article_id, title, summary, replaced)
            VALUES (?, ?, ?, ?)""",
            [row["id"], row["title"], row["summary"], stamp],
        )
        db.execute(
            "UPDATE articles SET title = ?, summary = ?, updated = ?, topics = ? WHERE id = ?",
            [item.title, item.summary, stamp, json.dumps(topics), row["id"]],
        )
        return True
    if topics != json.loads(row["topics"]):
        db.execute(
            "UPDATE articles SET topics = ?, updated = ? WHERE id = ?",
            [json.dumps(topics), stamp, row["id"]],
        )
        return True
    return False


def _add_key(db: sqlite_utils.Database, key: str, article_id: int) -> None:
    db.execute(
        "INSERT OR IGNORE INTO article_keys (key, article_id) VALUES (?, ?)", [key, article_id]
    )


def _record_health(
    db: sqlite_utils.Database, poll: Poll, interval: int, counts: Counts, now: datetime
) -> None:
    state = source_state(db, poll.source)
    failures = state.consecutive_failures + 1 if poll.failed else 0
    due = health.next_poll(now, interval, failures, poll.retry_after)
    stamp = iso(now)
    if poll.failed:
        db.execute(
            """UPDATE sources SET last_poll = ?, last_status = ?, last_http_status = ?,
                last_error = ?, consecutive_failures = ?, retry_after = ?, next_poll = ?
            WHERE name = ?""",
            [
                stamp,
                poll.status,
                poll.http_status,
                poll.error,
                failures,
                iso(poll.retry_after) if poll.retry_after else None,
                iso(due),
                poll.source,
            ],
        )
        return
    db.execute(
        """UPDATE sources SET last_poll = ?, last_ok = ?, last_status = ?, last_http_status = ?,
            last_error = NULL, last_warnings = ?, consecutive_failures = 0, retry_after = NULL,
            next_poll = ?,
            etag = COALESCE(?, etag), last_modified = COALESCE(?, last_modified),
            last_new = CASE WHEN ? > 0 THEN ? ELSE last_new END
        WHERE name = ?""",
        [
            stamp,
            stamp,
            poll.status,
            poll.http_status,
            _warnings(poll.warnings),
            iso(due),
            poll.etag,
            poll.last_modified,
            counts.new,
            stamp,
            poll.source,
        ],
    )
