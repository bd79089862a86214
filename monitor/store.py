"""The only module that writes articles and source health: upserts, history, topics, retention.

The database file itself (connection settings, schema, migrations) is schema.py; open_db,
opened, path_of, transaction and Checkpointer are re-exported here because callers of the
store need them.

Polls are written in short transactions (BEGIN IMMEDIATE ... COMMIT), after all network I/O for
them is done: one poll, or the polls that finished together (writer.py): a crash loses nothing
committed and leaves nothing half-written, and readers (Datasette) never wait on the network.
Times are UTC ISO 8601 strings ending in 'Z'.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sqlite3
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlite_utils

from monitor import health, store_stories
from monitor.config import DEFAULT_KEEP_UNMATCHED, Config
from monitor.dates import from_iso, iso
from monitor.normalise import Item
from monitor.schema import Checkpointer as Checkpointer
from monitor.schema import open_db as open_db
from monitor.schema import opened as opened
from monitor.schema import path_of as path_of
from monitor.schema import transaction as transaction
from monitor.sql import select_in
from monitor.topics import HIGHLIGHT, fts_query, marked_terms, matching_rows
from monitor.urls import canonical_url

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceState:
    etag: str | None
    last_modified: str | None
    retry_after: str | None
    consecutive_failures: int
    next_poll: str | None
    body_digest: str | None
    """collect.digest() of the body its last successful poll read (feeds only)."""


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
    body_digest: str | None = None
    """Of the body this poll read, to be recognised when it comes again (None: keep the last)."""

    @property
    def failed(self) -> bool:
        return self.status not in ("ok", "not_modified")


@dataclass(frozen=True)
class Counts:
    new: int = 0
    updated: int = 0
    unchanged: int = 0


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


def source_states(db: sqlite_utils.Database, names: Sequence[str]) -> dict[str, SourceState]:
    """Each named source's polling state, in one query a pass rather than one a source (a
    query cost 40 µs, a pass of 1,000 unchanged feeds ~8 % of its CPU)."""
    sql = """SELECT name, etag, last_modified, retry_after, consecutive_failures, next_poll,
            body_digest
        FROM sources WHERE name IN ({marks})"""
    found = {row[0]: SourceState(*row[1:]) for row in select_in(db, sql, names)}
    return {name: found.get(name, SourceState(None, None, None, 0, None, None)) for name in names}


def due_sources(db: sqlite_utils.Database, now: datetime) -> list[str]:
    """Active sources whose next poll time has come (or that were never polled)."""
    rows = db.execute(
        """SELECT name FROM sources
        WHERE active AND (next_poll IS NULL OR next_poll <= ?)
        ORDER BY next_poll IS NOT NULL, next_poll""",
        [iso(now)],
    ).fetchall()
    return [row[0] for row in rows]


def unknown_urls(db: sqlite_utils.Database, urls: list[str]) -> list[str]:
    """The URLs (canonicalised) not yet stored as articles, in their order."""
    canonical = {url: canonical_url(url) for url in urls}
    sql = "SELECT url FROM articles WHERE url IN ({marks})"
    known = {r[0] for r in select_in(db, sql, list(dict.fromkeys(canonical.values())))}
    return [url for url in urls if canonical[url] not in known]


def resolved_alias(db: sqlite_utils.Database, link: str) -> str | None:
    """The canonical URL an aggregator link was resolved to in an earlier poll, if any."""
    row = db.execute(
        """SELECT a.url FROM article_keys k JOIN articles a ON a.id = k.article_id
        WHERE k.key = ?""",
        [_link_key(link)],
    ).fetchone()
    return row[0] if row else None


@dataclass(frozen=True)
class Written:
    """One poll as record_polls() takes it: what was found, the source's interval, and when."""

    poll: Poll
    interval: int
    items: Sequence[Item] = ()
    now: datetime | None = None
    """The time the poll's rows carry (default: when it started)."""

    @property
    def stamp(self) -> datetime:
        return self.now or self.poll.started


def record_poll(
    db: sqlite_utils.Database,
    poll: Poll,
    interval: int,
    items: Iterable[Item] = (),
    now: datetime | None = None,
) -> Counts:
    """Write one poll in one transaction: its items, the source's health and a `fetches` row."""
    return record_polls(db, [Written(poll, interval, tuple(items), now)])[0]


def record_polls(db: sqlite_utils.Database, polls: Sequence[Written]) -> list[Counts]:
    """Write several polls in one transaction (each as record_poll() would), in order: what
    polls that finish together cost is then paid once (the lookups, the full-text index
    update, placing the new articles in stories, the commit)."""
    with transaction(db):
        counts = _save_items(db, [p for p in polls if not p.poll.failed])
        every = [counts.get(id(p), Counts()) for p in polls]
        for p, c in zip(polls, every, strict=True):
            _record_health(db, p.poll, p.interval, c, p.stamp)
        db.conn.executemany(
            """INSERT INTO fetches (source, started, status, http_status, new, updated, unchanged,
                filtered, bytes, duration_ms, error, warnings)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            [
                (
                    p.poll.source, iso(p.poll.started), p.poll.status, p.poll.http_status,
                    c.new, c.updated, c.unchanged, p.poll.filtered, p.poll.bytes,
                    p.poll.duration_ms, p.poll.error, _warnings(p.poll.warnings),
                )
                for p, c in zip(polls, every, strict=True)
            ],
        )  # fmt: skip
    return every


def finish(db: sqlite_utils.Database) -> None:
    """At the end of a collection pass (or of the scheduler): write what the store keeps in
    memory between polls, the new articles' word counts."""
    with transaction(db):
        store_stories.flush(db, force=True)


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


def _save_items(db: sqlite_utils.Database, polls: Sequence[Written]) -> dict[int, Counts]:
    """The polls' items as articles (new, updated or unchanged): id(poll) -> its counts."""
    entries: list[tuple[Written, Item, list[Lookup]]] = []
    for p in polls:
        # A feed that repeats a GUID for different links has broken GUIDs: identify by URL.
        repeated = {g for g, n in Counter(i.guid for i in p.items if i.guid).items() if n > 1}
        for item in p.items:
            guid = item.guid if item.guid not in repeated else None
            entries.append((p, item, _lookups(p.poll.source, item, guid)))
    stored = _prefetch(db, {k for _, _, lookups in entries for k in lookups})
    fresh = _NewArticles(db)
    stories: set[int] = set()
    sightings: list[tuple[int, str, str]] = []
    keys: list[tuple[str, int]] = []
    history: list[tuple[int, str, str, str]] = []
    tally: dict[int, Counter[str]] = {id(p): Counter() for p in polls}
    stamps = {id(p): iso(p.stamp) for p in polls}
    for p, item, lookups in entries:
        stamp = stamps[id(p)]
        found = next((k for k in lookups if k in fresh.ids or k in stored), None)
        if found is None:
            article_id = fresh.add(item, lookups, p.poll.source, p.stamp, stamp)
            outcome = "new"
        elif found in fresh.ids:  # a copy of an article new in this batch
            article_id = fresh.ids[found]
            fresh.ids.update((k, article_id) for k in lookups)
            outcome = "updated" if fresh.merge(article_id, item, stamp, history) else "unchanged"
        else:
            row = stored[found]
            article_id = row["id"]
            if _update(db, row, item, stamp, history):
                stories.add(row["story_id"])
                outcome = "updated"
            else:
                outcome = "unchanged"
        tally[id(p)][outcome] += 1
        sightings.append((article_id, p.poll.source, stamp))
        keys += [(k, article_id) for kind, k in lookups if kind == "key"]
    stories |= fresh.write()
    db.conn.executemany(
        "INSERT INTO article_history (article_id, title, summary, replaced) VALUES (?, ?, ?, ?)",
        history,
    )
    db.conn.executemany(
        "INSERT OR IGNORE INTO sightings (article_id, source, first_seen) VALUES (?, ?, ?)",
        sightings,
    )
    db.conn.executemany("INSERT OR IGNORE INTO article_keys (key, article_id) VALUES (?, ?)", keys)
    store_stories.refresh(db, stories)
    store_stories.flush(db)
    return {poll: Counts(t["new"], t["updated"], t["unchanged"]) for poll, t in tally.items()}


Lookup = tuple[str, str]
"""('key', an article_keys key) or ('url', a canonical URL): the ways an item is recognised."""


def _lookups(source: str, item: Item, guid: str | None) -> list[Lookup]:
    """In the order they are trusted: the feed's GUID, the canonical URL, the aggregator link."""
    found: list[Lookup] = []
    if guid:
        found.append(("key", _guid_key(source, guid)))
    found.append(("url", item.url))
    if item.link != item.url:
        found.append(("key", _link_key(item.link)))
    return found


_FOUND_COLUMNS = ("id", "title", "summary", "topics", "matched", "story_id")
_SELECT = "a.id, a.title, a.summary, a.topics, a.matched, a.story_id"
_LOOKUP_SQL = {
    "key": ("k.key", "article_keys k JOIN articles a ON a.id = k.article_id"),
    "url": ("a.url", "articles a"),
}


def _prefetch(db: sqlite_utils.Database, wanted: set[Lookup]) -> dict[Lookup, dict[str, Any]]:
    """The stored articles items may be, in two queries rather than two per item. Each
    article is one dict, whichever way it was found: _update() keeps it current."""
    articles: dict[int, dict[str, Any]] = {}
    found: dict[Lookup, dict[str, Any]] = {}
    for kind, (column, tables) in _LOOKUP_SQL.items():
        sql = f"SELECT {column}, {_SELECT} FROM {tables} WHERE {column} IN ({{marks}})"
        for value, *row in select_in(db, sql, [v for k, v in wanted if k == kind]):
            article = articles.setdefault(row[0], dict(zip(_FOUND_COLUMNS, row, strict=True)))
            found[(kind, value)] = article
    return found


@dataclass
class _New:
    item: Item
    """As it will be stored: a later copy in the same batch replaces it (merge())."""
    source: str
    first_seen: datetime
    seen: str
    """first_seen as stored."""
    updated: str


class _NewArticles:
    """A batch's new articles: ids handed out as they come (safe: the batch holds the write
    lock, BEGIN IMMEDIATE), placed in their stories together, written in one statement."""

    def __init__(self, db: sqlite_utils.Database) -> None:
        self.db = db
        self.ids: dict[Lookup, int] = {}
        self.articles: list[_New] = []
        self.first = 0

    def add(
        self, item: Item, lookups: list[Lookup], source: str, first_seen: datetime, stamp: str
    ) -> int:
        if not self.articles:
            (self.first,) = self.db.execute(
                "SELECT coalesce(max(id), 0) + 1 FROM articles"
            ).fetchone()
        article_id = self.first + len(self.articles)
        self.articles.append(_New(item, source, first_seen, stamp, stamp))
        for k in lookups:
            self.ids[k] = article_id
        return article_id

    def merge(
        self, article_id: int, item: Item, stamp: str, history: list[tuple[int, str, str, str]]
    ) -> bool:
        """A later copy of a new article, as _update() treats a stored one: True if changed."""
        new = self.articles[article_id - self.first]
        old = new.item
        topics = _revise(article_id, old.title, old.summary, set(old.topics), item, stamp, history)
        if topics is None:
            return False
        new.item = dataclasses.replace(
            old, title=item.title, summary=item.summary, topics=tuple(sorted(topics)),
            matched={**old.matched, **item.matched},
        )  # fmt: skip
        new.updated = stamp
        return True

    def write(self) -> set[int]:
        """Place the new articles in stories, insert and index them, and write the stories they
        started; the stories they joined, for the caller to refresh."""
        if not self.articles:
            return set()
        db, first = self.db, self.first
        placed = store_stories.place_all(
            db,
            [
                store_stories.Placing(
                    first + n, a.item.text, a.item.outlet, a.first_seen, a.item.aggregated
                )
                for n, a in enumerate(self.articles)
            ],
        )
        rows = []
        started: dict[int, list[tuple[tuple[Any, ...], store_stories.Member]]] = {}
        joined: set[int] = set()
        for n, (a, p) in enumerate(zip(self.articles, placed, strict=True)):
            item, seen, story = a.item, a.seen, p.story_id
            published = iso(item.published) if item.published else seen
            topics = json.dumps(sorted(item.topics)) if item.topics else "[]"
            rows.append((
                first + n, item.url, item.title, item.summary, published, seen, a.updated,
                a.source, item.outlet, topics, _terms_json(item.matched), item.guid, item.link,
                int(item.aggregated), story, p.reason, item.text.words,
            ))  # fmt: skip
            if story >= first:  # started in this batch: every member is here
                order = (item.aggregated, published, seen, first + n)
                member = (item.title, item.url, item.outlet, published, seen, topics)
                started.setdefault(story, []).append((order, member))
            else:
                joined.add(story)
        db.conn.executemany(
            """INSERT INTO articles (id, url, title, summary, published, first_seen, updated,
                source, outlet, topics, matched, guid, link, aggregated, story_id, match_reason,
                words)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            rows,
        )
        # One statement for the batch: a trigger per row indexed ~7,000 rows/s, this 14,000-33,000.
        db.execute(
            """INSERT INTO articles_fts (rowid, title, summary)
            SELECT id, title, summary FROM articles WHERE id BETWEEN ? AND ?""",
            [first, first + len(rows) - 1],
        )
        store_stories.write_stories(
            db, {story: [m for _, m in sorted(ms)] for story, ms in started.items()}
        )
        return joined


def _update(
    db: sqlite_utils.Database,
    row: dict[str, Any],
    item: Item,
    stamp: str,
    history: list[tuple[int, str, str, str]],
) -> bool:
    """A stored article seen again: changes recorded (the old text into `history`), and `row`
    brought up to date. True if it changed."""
    stored = set(json.loads(row["topics"]))
    topics = _revise(row["id"], row["title"], row["summary"], stored, item, stamp, history)
    if topics is None:
        return False
    matched = {**json.loads(row["matched"]), **{k: list(v) for k, v in item.matched.items()}}
    # An article keeps its story when edited; the caller refreshes the story's title and topics.
    row.update(
        title=item.title, summary=item.summary, topics=json.dumps(sorted(topics)),
        matched=_terms_json(matched),
    )  # fmt: skip
    db.execute(
        """UPDATE articles SET title = ?, summary = ?, updated = ?, topics = ?, matched = ?
        WHERE id = ?""",
        [item.title, item.summary, stamp, row["topics"], row["matched"], row["id"]],
    )
    return True


def _revise(
    article_id: int,
    title: str,
    summary: str,
    topics: set[str],
    item: Item,
    stamp: str,
    history: list[tuple[int, str, str, str]],
) -> set[str] | None:
    """What a later copy (`item`) of an article with this text and these topics changes: its
    topics afterwards, the old text put into `history` if the text changed; None if nothing
    changes. Topics only accumulate here (another source may have tagged it); `monitor retag`
    recomputes them."""
    after = topics | set(item.topics)
    if (title, summary) == (item.title, item.summary):
        return None if after == topics else after
    history.append((article_id, title, summary, stamp))
    return after


def _terms_json(terms: Mapping[str, Iterable[str]]) -> str:
    if not terms:
        return "{}"
    return json.dumps({topic: list(words) for topic, words in sorted(terms.items())})


def _record_health(
    db: sqlite_utils.Database, poll: Poll, interval: int, counts: Counts, now: datetime
) -> None:
    # One read and one write of the source's row a poll (its flag computed first): for a pass
    # of 1,000 feeds answering 304, the health is most of what the writer does.
    row = db.execute(
        "SELECT consecutive_failures, last_ok FROM sources WHERE name = ?", [poll.source]
    ).fetchone()
    previous_failures, last_ok = row if row else (0, None)
    failures = previous_failures + 1 if poll.failed else 0
    due = health.next_poll(now, interval, failures, poll.retry_after)
    stamp = iso(now)
    if not poll.failed:
        last_ok = stamp
    ok = from_iso(last_ok) if last_ok else None
    flag = _flag(db, poll.source, poll.status, interval, failures, counts, now, ok)
    if poll.failed:
        db.execute(
            """UPDATE sources SET last_poll = ?, last_status = ?, last_http_status = ?,
                last_error = ?, consecutive_failures = ?, retry_after = ?, next_poll = ?,
                flag = ?
            WHERE name = ?""",
            [
                stamp,
                poll.status,
                poll.http_status,
                poll.error,
                failures,
                iso(poll.retry_after) if poll.retry_after else None,
                iso(due),
                flag,
                poll.source,
            ],
        )
    else:
        db.execute(
            """UPDATE sources SET last_poll = ?, last_ok = ?, last_status = ?,
                last_http_status = ?, last_error = NULL,
                last_warnings = CASE WHEN ? = 'not_modified' THEN last_warnings ELSE ? END,
                consecutive_failures = 0, retry_after = NULL, next_poll = ?,
                etag = COALESCE(?, etag), last_modified = COALESCE(?, last_modified),
                body_digest = COALESCE(?, body_digest),
                last_new = CASE WHEN ? > 0 THEN ? ELSE last_new END, flag = ?
            WHERE name = ?""",
            [
                stamp,
                stamp,
                poll.status,
                poll.http_status,
                poll.status,  # content unchanged since the poll that read it: its warnings hold
                _warnings(poll.warnings),
                iso(due),
                poll.etag,
                poll.last_modified,
                poll.body_digest,
                counts.new,
                stamp,
                flag,
                poll.source,
            ],
        )


def _flag(
    db: sqlite_utils.Database,
    source: str,
    status: str,
    interval: int,
    failures: int,
    counts: Counts,
    now: datetime,
    last_ok: datetime | None,
) -> str | None:
    """What staff should be told about the source after this poll (None: nothing)."""
    rows = db.execute(
        """SELECT started FROM fetches
        WHERE source = ? AND new > 0 AND started >= ? ORDER BY started DESC LIMIT ?""",
        [source, iso(now - health.RATE_HISTORY), health.RATE_POLLS],
    ).fetchall()
    new_times = [from_iso(r[0]) for r in reversed(rows)]
    if counts.new:
        new_times.append(now)  # this poll's fetches row is written after us
    if status == "no_articles":
        # The failure staff hate most is silence: a page that brought articles last week and
        # now shows none is flagged at once, not after the usual three failures.
        (week,) = db.execute(
            "SELECT coalesce(sum(new), 0) FROM fetches WHERE source = ? AND started >= ?",
            [source, iso(now - timedelta(days=7))],
        ).fetchone()
        if week:
            return f"empty: the page shows no article links, but brought {week} last week"
    return health.flag(now, interval, failures, last_ok, new_times)


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
