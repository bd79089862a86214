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
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlite_utils

from monitor import health, store_stories
from monitor.config import DEFAULT_KEEP_UNMATCHED, Config
from monitor.dates import iso
from monitor.errors import DatabaseError
from monitor.normalise import Item
from monitor.topics import HIGHLIGHT, fts_query, marked_terms, matching_rows

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
    filtered: int = 0
    """Items dropped because the source requires a topic and they matched none."""
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
        # 64 MB of page cache: the indexes the collector touches stay in memory at 1M articles.
        conn.execute("PRAGMA cache_size = -65536")
        db = sqlite_utils.Database(conn)
        migrate(db)
    except (OSError, sqlite3.Error) as e:
        raise DatabaseError(f"cannot use {path} as the coverage database: {e}") from e
    return db


@contextmanager
def opened(path: Path | str) -> Iterator[sqlite_utils.Database]:
    """open_db() for the length of a `with` block."""
    db = open_db(path)
    try:
        yield db
    finally:
        db.close()


@contextmanager
def transaction(db: sqlite_utils.Database) -> Iterator[None]:
    """BEGIN IMMEDIATE: take the write lock up front, so the batch never fails half-way on it."""
    db.execute("BEGIN IMMEDIATE")
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
    rows = db.execute("SELECT id, title, summary, first_seen FROM articles").fetchall()
    for article_id, title, summary, first_seen in rows:
        store_stories.index_article(db, article_id, title, summary, first_seen)
    store_stories.flush(db)
    store_stories.restory(db)


@migration
def m005_triage(db: sqlite_utils.Database) -> None:
    _run_script(db, _TRIAGE_SCHEMA)


# Staff decisions for the public headlines, as an append-only log: it is its own audit trail
# (who, when, what), and the current state of a story is its latest entry of each kind.
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
CREATE VIEW public_headlines AS
WITH latest_pin AS (
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
), shown AS (
    SELECT * FROM stories WHERE id IN (SELECT story_id FROM pinned)
    UNION
    -- The last 14 days of relevant coverage we have (relative to the newest, not the clock).
    SELECT * FROM stories
    WHERE topics != '[]' AND published >= strftime('%Y-%m-%dT%H:%M:%SZ',
        (SELECT max(published) FROM stories WHERE topics != '[]'), '-14 days')
)
SELECT s.id AS story_id, s.title, s.url, s.outlet, s.published, s.topics, s.outlets,
    s.id IN (SELECT story_id FROM pinned) AS pinned,
    coalesce((SELECT note FROM triage WHERE story_id = s.id AND action = 'note'
              ORDER BY id DESC LIMIT 1), '') AS note
FROM shown s
WHERE s.id NOT IN (SELECT story_id FROM hidden_stories)
  AND s.url NOT IN (SELECT url FROM hidden_urls);
CREATE INDEX idx_stories_last_seen ON stories (last_seen);
"""


@migration
def m006_facet_indexes(db: sqlite_utils.Database) -> None:
    # Every facet and sort the staff pages offer has an index (the 1M-article figures in issue 6).
    db.execute("CREATE INDEX idx_stories_outlet ON stories (outlet, published)")
    db.execute("CREATE INDEX idx_fetches_status ON fetches (status, started)")


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
                filtered, bytes, duration_ms, error, warnings)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            [
                poll.source,
                iso(poll.started),
                poll.status,
                poll.http_status,
                counts.new,
                counts.updated,
                counts.unchanged,
                poll.filtered,
                poll.bytes,
                poll.duration_ms,
                poll.error,
                _warnings(poll.warnings),
            ],
        )
    return counts


@dataclass(frozen=True)
class Retag:
    changed: int
    """Articles whose topics changed."""
    per_topic: Mapping[str, int]
    """topic -> articles that now carry it."""


def retag(db: sqlite_utils.Database, config: Config) -> Retag:
    """Recompute every article's topics from the current config, through the FTS index.

    An article's topics are the topics of every source that brought it plus every topic whose
    query matches its stored text.
    """
    found: dict[int, dict[str, list[str]]] = {}
    for name, query in config.topics.items():
        for rowid, terms in matching_rows(db.conn, "articles_fts", query):
            found.setdefault(rowid, {})[name] = list(terms)
    source_topics = {s.name: s.topics for s in config.sources if s.topics}
    given: dict[int, set[str]] = {}
    if source_topics:
        names = ",".join("?" * len(source_topics))
        sql = f"SELECT article_id, source FROM sightings WHERE source IN ({names})"
        for article_id, source in db.execute(sql, list(source_topics)):
            given.setdefault(article_id, set()).update(source_topics[source])
    with transaction(db):
        db.execute("DROP TABLE IF EXISTS temp.retag")
        db.execute(
            "CREATE TEMP TABLE retag (article_id INTEGER PRIMARY KEY, topics TEXT, matched TEXT)"
        )
        db.conn.executemany(
            "INSERT INTO temp.retag VALUES (?, ?, ?)",
            (
                (
                    article_id,
                    json.dumps(
                        sorted(set(found.get(article_id, {})) | given.get(article_id, set()))
                    ),
                    _terms_json(found.get(article_id, {})),
                )
                for article_id in set(found) | set(given)
            ),
        )
        cleared = db.execute(
            """UPDATE articles SET topics = '[]', matched = '{}'
            WHERE (topics != '[]' OR matched != '{}')
              AND id NOT IN (SELECT article_id FROM temp.retag)"""
        ).rowcount
        changed = db.execute(
            """UPDATE articles SET topics = r.topics, matched = r.matched
            FROM temp.retag AS r
            WHERE articles.id = r.article_id
              AND (articles.topics != r.topics OR articles.matched != r.matched)"""
        ).rowcount
        db.execute("DROP TABLE temp.retag")
        store_stories.refresh_topics(db)
    return Retag(cleared + changed, topic_counts(db))


def preview_query(
    db: sqlite_utils.Database, query: str, limit: int
) -> tuple[int, list[tuple[str, str, str, tuple[str, ...]]]]:
    """How many articles an FTS query matches, and the newest: (published, outlet, title, words)."""
    query = fts_query(query)
    total = db.execute(
        "SELECT count(*) FROM articles_fts WHERE articles_fts MATCH ?", [query]
    ).fetchone()[0]
    newest = db.execute(
        """SELECT a.published, a.outlet, a.title,
            highlight(articles_fts, 0, ?, ?), highlight(articles_fts, 1, ?, ?)
        FROM articles_fts JOIN articles a ON a.id = articles_fts.rowid
        WHERE articles_fts MATCH ? ORDER BY a.published DESC LIMIT ?""",
        [*HIGHLIGHT, *HIGHLIGHT, query, limit],
    ).fetchall()
    return total, [(p, o, t, marked_terms([h1, h2])) for p, o, t, h1, h2 in newest]


def topic_counts(db: sqlite_utils.Database) -> dict[str, int]:
    return dict(
        db.execute(
            """SELECT j.value, count(*) FROM articles, json_each(articles.topics) AS j
            GROUP BY j.value ORDER BY j.value"""
        ).fetchall()
    )


def prune_unmatched(db: sqlite_utils.Database, config: Config, now: datetime) -> dict[str, int]:
    """Delete articles that match no topic and are older than their source's keep_unmatched.

    Returns source -> articles removed. Sources no longer configured use the default age.
    """
    keep = {s.name: s.keep_unmatched for s in config.sources}
    default = DEFAULT_KEEP_UNMATCHED
    removed: dict[str, int] = {}
    with transaction(db):
        rows = db.execute(
            "SELECT DISTINCT source FROM articles WHERE topics = '[]' AND first_seen < ?",
            [iso(now - timedelta(seconds=min([default, *keep.values()])))],
        ).fetchall()
        for (source,) in rows:
            cutoff = iso(now - timedelta(seconds=keep.get(source, default)))
            where = "topics = '[]' AND source = ? AND first_seen < ?"
            touched = [
                r[0]
                for r in db.execute(
                    f"SELECT story_id FROM articles WHERE {where}", [source, cutoff]
                )
            ]
            count = db.execute(f"DELETE FROM articles WHERE {where}", [source, cutoff]).rowcount
            store_stories.refresh(db, touched)
            if count:
                removed[source] = count
    return removed


FETCH_HISTORY = timedelta(days=90)
"""How long one row per poll is kept: enough for 'usual rate' flags and for staff to look back."""


def prune_fetches(db: sqlite_utils.Database, now: datetime) -> int:
    """Delete poll records older than FETCH_HISTORY; returns how many."""
    with transaction(db):
        return int(
            db.execute("DELETE FROM fetches WHERE started < ?", [iso(now - FETCH_HISTORY)]).rowcount
        )


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
        db.execute(
            "INSERT OR IGNORE INTO sightings (article_id, source, first_seen) VALUES (?, ?, ?)",
            [article_id, source, stamp],
        )
        if guid:
            _add_key(db, _guid_key(source, guid), article_id)
        if item.link != item.url:
            _add_key(db, _link_key(item.link), article_id)
    store_stories.flush(db)
    return Counts(new, updated, unchanged)


_FOUND_COLUMNS = ("id", "title", "summary", "topics", "matched", "story_id")


def _find(
    db: sqlite_utils.Database, source: str, item: Item, guid: str | None
) -> dict[str, Any] | None:
    columns = "a.id, a.title, a.summary, a.topics, a.matched, a.story_id"
    if guid:
        row = db.execute(
            f"SELECT {columns} FROM article_keys k JOIN articles a ON a.id = k.article_id "
            "WHERE k.key = ?",
            [_guid_key(source, guid)],
        ).fetchone()
        if row:
            return dict(zip(_FOUND_COLUMNS, row, strict=True))
    row = db.execute(f"SELECT {columns} FROM articles a WHERE a.url = ?", [item.url]).fetchone()
    if row is None and item.link != item.url:
        row = db.execute(
            f"SELECT {columns} FROM article_keys k JOIN articles a ON a.id = k.article_id "
            "WHERE k.key = ?",
            [_link_key(item.link)],
        ).fetchone()
    return dict(zip(_FOUND_COLUMNS, row, strict=True)) if row else None


def _insert(db: sqlite_utils.Database, source: str, item: Item, stamp: str) -> int:
    cursor = db.execute(
        """INSERT INTO articles (url, title, summary, published, first_seen, updated, source,
            outlet, topics, matched, guid, link, aggregated)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
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
            _terms_json(item.matched),
            item.guid,
            item.link,
            int(item.aggregated),
        ],
    )
    article_id = int(cursor.lastrowid or 0)
    store_stories.index_article(db, article_id, item.title, item.summary, stamp)
    store_stories.place(
        db,
        article_id,
        item.title,
        item.summary,
        _parse_iso(stamp),
        item.outlet if item.aggregated else None,
    )
    return article_id


def _update(db: sqlite_utils.Database, row: dict[str, Any], item: Item, stamp: str) -> bool:
    # Topics only accumulate here (another source may have tagged it); `monitor retag` recomputes.
    topics = sorted(set(json.loads(row["topics"])) | set(item.topics))
    matched = {**json.loads(row["matched"]), **{k: list(v) for k, v in item.matched.items()}}
    text_changed = (row["title"], row["summary"]) != (item.title, item.summary)
    if text_changed:
        db.execute(
            """INSERT INTO article_history (article_id, title, summary, replaced)
            VALUES (?, ?, ?, ?)""",
            [row["id"], row["title"], row["summary"], stamp],
        )
    if not text_changed and topics == json.loads(row["topics"]):
        return False
    db.execute(
        """UPDATE articles SET title = ?, summary = ?, updated = ?, topics = ?, matched = ?
        WHERE id = ?""",
        [item.title, item.summary, stamp, json.dumps(topics), _terms_json(matched), row["id"]],
    )
    # An article keeps its story when edited; the story's title and topics follow the edit.
    store_stories.refresh(db, [row["story_id"]])
    return True


def _terms_json(terms: Mapping[str, Iterable[str]]) -> str:
    return json.dumps({topic: list(words) for topic, words in sorted(terms.items())})


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
    else:
        db.execute(
            """UPDATE sources SET last_poll = ?, last_ok = ?, last_status = ?,
                last_http_status = ?, last_error = NULL, last_warnings = ?,
                consecutive_failures = 0, retry_after = NULL, next_poll = ?,
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
    _record_flag(db, poll.source, interval, failures, counts, now)


def _record_flag(
    db: sqlite_utils.Database,
    source: str,
    interval: int,
    failures: int,
    counts: Counts,
    now: datetime,
) -> None:
    rows = db.execute(
        """SELECT started FROM fetches
        WHERE source = ? AND new > 0 AND started >= ? ORDER BY started""",
        [source, iso(now - timedelta(days=30))],
    ).fetchall()
    new_times = [_parse_iso(r[0]) for r in rows]
    if counts.new:
        new_times.append(now)  # this poll's fetches row is written after us
    (last_ok,) = db.execute("SELECT last_ok FROM sources WHERE name = ?", [source]).fetchone()
    flag = health.flag(now, interval, failures, _parse_iso(last_ok) if last_ok else None, new_times)
    db.execute("UPDATE sources SET flag = ? WHERE name = ?", [flag, source])


def _parse_iso(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def backup(db: sqlite_utils.Database, target: Path) -> int:
    """A consistent copy of the live database at `target` (SQLite's online backup); its size."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    destination = sqlite3.connect(partial)
    try:
        db.conn.backup(destination)
    finally:
        destination.close()
    partial.replace(target)  # never leave a half-written file under the real name
    return target.stat().st_size


def checkpoint(db: sqlite_utils.Database) -> tuple[int, int, int]:
    """Fold the WAL back into the database file and truncate it: (busy, wal pages, moved)."""
    busy, pages, moved = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    return int(busy), int(pages), int(moved)
