"""The stories part of the store: candidates for the clusterer, assignments, story rows, overrides.

Called inside store.py's write transactions (never on its own connection), so an article and its
story change together or not at all. Story ids are the id of the article that started the story:
a new pickup joins and never renumbers, and `restory` over the same articles gives the same ids.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from weakref import WeakKeyDictionary

import sqlite_utils

from monitor import stories
from monitor.dates import from_iso, iso
from monitor.stories import Assignment, Candidate

SCHEMA = """
CREATE TABLE stories (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    url TEXT NOT NULL,
    outlet TEXT NOT NULL,
    published TEXT NOT NULL,
    first_seen TEXT NOT NULL,
    last_seen TEXT NOT NULL,
    outlets INTEGER NOT NULL,
    outlet_list TEXT NOT NULL,
    articles INTEGER NOT NULL,
    topics TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX idx_stories_published ON stories (published);
CREATE INDEX idx_stories_relevant ON stories (published) WHERE topics != '[]';
CREATE INDEX idx_stories_articles ON stories (articles, published);
CREATE TABLE story_words (
    word TEXT PRIMARY KEY,
    docs INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE story_index (
    word TEXT NOT NULL,
    first_seen TEXT NOT NULL,
    article_id INTEGER NOT NULL REFERENCES articles (id) ON DELETE CASCADE,
    PRIMARY KEY (word, first_seen, article_id)
) WITHOUT ROWID;
CREATE INDEX idx_story_index_article ON story_index (article_id);
CREATE TABLE story_overrides (
    article_id INTEGER PRIMARY KEY REFERENCES articles (id) ON DELETE CASCADE,
    story_id INTEGER NOT NULL,
    action TEXT NOT NULL,
    by TEXT NOT NULL,
    at TEXT NOT NULL
);
ALTER TABLE articles ADD COLUMN match_reason TEXT;
ALTER TABLE articles ADD COLUMN aggregated INTEGER NOT NULL DEFAULT 0;
ALTER TABLE articles ADD COLUMN words TEXT NOT NULL DEFAULT '';
"""


class _Cache:
    """Per-connection memory of word rarity and article vectors.

    Both drift slowly (a word's count grows by one per article), so remembering them for the
    life of a connection keeps the cost of placing one article to one indexed query, whatever
    the size of the archive.
    """

    VECTORS = 50_000

    def __init__(self) -> None:
        self.docs: dict[str, int] = {}
        self.pending: dict[str, int] = {}
        """Word counts added since the last flush(): written once per batch, not per article."""
        self.vectors: OrderedDict[int, dict[str, float]] = OrderedDict()

    def vector(self, candidate: Candidate, idf: stories.Rarity) -> dict[str, float]:
        found = self.vectors.get(candidate.id)
        if found is None:
            found = self.vectors[candidate.id] = stories.vector(candidate.words, idf)
            if len(self.vectors) > self.VECTORS:
                self.vectors.popitem(last=False)
        return found


_CACHES: WeakKeyDictionary[sqlite_utils.Database, _Cache] = WeakKeyDictionary()


def _cache(db: sqlite_utils.Database) -> _Cache:
    cache = _CACHES.get(db)
    if cache is None:
        cache = _CACHES[db] = _Cache()
    return cache


def flush(db: sqlite_utils.Database) -> None:
    """Write the word counts of the articles indexed since the last flush (same transaction)."""
    cache = _cache(db)
    if cache.pending:
        db.conn.executemany(
            """INSERT INTO story_words (word, docs) VALUES (?, ?)
            ON CONFLICT (word) DO UPDATE SET docs = docs + excluded.docs""",
            cache.pending.items(),
        )
        cache.pending.clear()


def forget(db: sqlite_utils.Database) -> None:
    """After a rollback: what the cache remembers may no longer be in the database."""
    _CACHES.pop(db, None)


def index_article(
    db: sqlite_utils.Database, article_id: int, title: str, summary: str, first_seen: str
) -> None:
    """Record the article's words: rarity counts, title words for blocking, and the words
    themselves on the article, so candidates are never re-tokenised."""
    words = stories.stems(title) + stories.stems(summary)
    distinct = stories.distinct(words)
    _docs(db, distinct)  # the stored counts, so the in-memory ones can grow from them
    cache = _cache(db)
    for word in distinct:
        cache.docs[word] += 1
        cache.pending[word] = cache.pending.get(word, 0) + 1
    db.conn.executemany(
        "INSERT OR IGNORE INTO story_index (word, first_seen, article_id) VALUES (?, ?, ?)",
        ((w, first_seen, article_id) for w in stories.distinct(stories.stems(title))),
    )


def place(
    db: sqlite_utils.Database,
    article_id: int,
    title: str,
    summary: str,
    first_seen: datetime,
    aggregator_outlet: str | None,
    *,
    new: bool = False,
) -> Assignment:
    """Decide and record the story of an article already inserted and indexed.

    `new`: the article was inserted just now, so staff cannot have overridden it yet and it is
    the newest article (its id stands in for the article count).
    """
    mine = stories.stems(title) + stories.stems(summary)
    override = None
    if not new:
        override = db.execute(
            "SELECT story_id, action FROM story_overrides WHERE article_id = ?", [article_id]
        ).fetchone()
    if override is not None:
        assignment = Assignment(override[0], f"staff {override[1]}")
    else:
        candidates = _candidates(db, article_id, title, first_seen)
        cache = _cache(db)
        # Rarity is needed for this article's words and for candidates not scored before.
        fresh = [c for c in candidates if c.id not in cache.vectors]
        words = stories.distinct([w for c in fresh for w in c.words] + mine)
        idf = stories.Rarity(_docs(db, words), article_id if new else _total(db))
        assignment = stories.assign(
            title,
            mine,
            first_seen,
            candidates,
            idf,
            lambda c: cache.vector(c, idf),
            aggregator_outlet,
        ) or Assignment(article_id, "first report")
    db.execute(
        "UPDATE articles SET story_id = ?, match_reason = ?, words = ? WHERE id = ?",
        [
            assignment.story_id,
            assignment.reason,
            " ".join(mine),
            article_id,
        ],
    )
    refresh(db, [assignment.story_id])
    return assignment


def _candidates(
    db: sqlite_utils.Database, article_id: int, title: str, first_seen: datetime
) -> list[Candidate]:
    """Earlier articles within the window that share a title word: the newest few per word.

    Per word, so that a reworded headline sharing only common words ("asylum", "prison") with
    the story still meets its most recent members; newest first, because copies and rewrites
    of a story arrive within hours of each other.
    """
    words = stories.distinct(stories.stems(title))[: stories.BLOCKING_WORDS]
    if not words:
        return []
    low, high = iso(first_seen - stories.WINDOW), iso(first_seen)
    per_word = """SELECT * FROM (SELECT article_id FROM story_index
        WHERE word = ? AND first_seen BETWEEN ? AND ? ORDER BY first_seen DESC LIMIT ?)"""
    params: list[Any] = []
    for word in words:
        params += [word, low, high, stories.PER_WORD]
    # The articles sharing the most title words come first; only the best few are scored.
    rows = db.execute(
        f"""SELECT a.id, a.title, a.words, a.outlet, a.first_seen, a.story_id, s.first_seen
        FROM (SELECT article_id, count(*) AS shared
              FROM ({" UNION ALL ".join([per_word] * len(words))})
              WHERE article_id != ? GROUP BY article_id
              ORDER BY shared DESC, article_id DESC LIMIT ?) AS c
        JOIN articles a ON a.id = c.article_id
        JOIN stories s ON s.id = a.story_id
        WHERE a.first_seen < ? OR (a.first_seen = ? AND a.id < ?)""",
        [*params, article_id, stories.MAX_CANDIDATES, high, high, article_id],
    ).fetchall()
    return [
        Candidate(r[0], r[1], tuple(r[2].split()), r[3], from_iso(r[4]), r[5], from_iso(r[6]))
        for r in rows
    ]


def _docs(db: sqlite_utils.Database, words: list[str]) -> dict[str, int]:
    known = _cache(db).docs
    missing = [w for w in words if w not in known]
    for start in range(0, len(missing), 500):
        chunk = missing[start : start + 500]
        placeholders = ",".join("?" * len(chunk))
        known.update({w: 0 for w in chunk})
        known.update(
            db.execute(
                f"SELECT word, docs FROM story_words WHERE word IN ({placeholders})", chunk
            ).fetchall()
        )
    return {w: known[w] for w in words}


def _total(db: sqlite_utils.Database) -> int:
    # max(id) is an index lookup and close enough to the article count for word rarity.
    return int(db.execute("SELECT coalesce(max(id), 0) FROM articles").fetchone()[0])


def refresh(db: sqlite_utils.Database, story_ids: Iterable[int]) -> None:
    """Recompute story rows from their articles (and drop stories left empty)."""
    for story_id in set(story_ids):
        members = db.execute(
            """SELECT title, url, outlet, published, first_seen, topics
            FROM articles WHERE story_id = ?
            ORDER BY aggregated, published, first_seen, id""",
            [story_id],
        ).fetchall()
        if not members:
            db.execute("DELETE FROM stories WHERE id = ?", [story_id])
            continue
        title, url, outlet, published, _, _ = members[0]
        outlets = list(dict.fromkeys(m[2] for m in members))
        topics = sorted({t for m in members for t in json.loads(m[5])})
        db.execute(
            """INSERT OR REPLACE INTO stories (id, title, url, outlet, published, first_seen,
                last_seen, outlets, outlet_list, articles, topics)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            [
                story_id,
                title,
                url,
                outlet,
                published,
                min(m[4] for m in members),
                max(m[4] for m in members),
                len(outlets),
                json.dumps(outlets),
                len(members),
                json.dumps(topics),
            ],
        )


def refresh_topics(db: sqlite_utils.Database) -> None:
    """After a retag: every story's topics are the union of its articles' again."""
    db.execute(
        """UPDATE stories SET topics = coalesce((
            SELECT json_group_array(value) FROM (
                SELECT DISTINCT j.value FROM articles a, json_each(a.topics) j
                WHERE a.story_id = stories.id ORDER BY j.value
            )), '[]')"""
    )


def merge(db: sqlite_utils.Database, into: int, other: int, by: str, at: str) -> int:
    """Move every article of story `other` into story `into`; returns how many moved."""
    moved = [r[0] for r in db.execute("SELECT id FROM articles WHERE story_id = ?", [other])]
    for article_id in moved:
        _override(db, article_id, into, "merge", by, at)
    refresh(db, [into, other])
    return len(moved)


def split(db: sqlite_utils.Database, article_id: int, by: str, at: str) -> int:
    """Take one article out of its story into a story of its own; returns the old story id."""
    (old,) = db.execute("SELECT story_id FROM articles WHERE id = ?", [article_id]).fetchone()
    _override(db, article_id, article_id, "split", by, at)
    # The rest of the story keeps its id unless the article split off was its founder.
    if old == article_id:
        rest = [r[0] for r in db.execute(
            "SELECT id FROM articles WHERE story_id = ? AND id != ? ORDER BY first_seen, id",
            [old, article_id],
        )]  # fmt: skip
        if rest:
            db.execute(
                "UPDATE articles SET story_id = ? WHERE story_id = ? AND id != ?",
                [rest[0], old, article_id],
            )
            refresh(db, [rest[0]])
    refresh(db, [old, article_id])
    return int(old)


def _override(
    db: sqlite_utils.Database, article_id: int, story_id: int, action: str, by: str, at: str
) -> None:
    db.execute(
        """INSERT OR REPLACE INTO story_overrides (article_id, story_id, action, by, at)
        VALUES (?, ?, ?, ?, ?)""",
        [article_id, story_id, action, by, at],
    )
    db.execute(
        "UPDATE articles SET story_id = ?, match_reason = ? WHERE id = ?",
        [story_id, f"staff {action}", article_id],
    )


def restory(db: sqlite_utils.Database) -> int:
    """Re-cluster every article from scratch, oldest first; returns the number of stories.

    Deterministic: the same articles (and overrides) always give the same story ids.
    """
    db.execute("DELETE FROM stories")
    db.execute("UPDATE articles SET story_id = NULL, match_reason = NULL")
    rows: list[Any] = db.execute(
        """SELECT id, title, summary, first_seen, outlet, aggregated FROM articles
        ORDER BY first_seen, id"""
    ).fetchall()
    for article_id, title, summary, first_seen, outlet, aggregated in rows:
        place(db, article_id, title, summary, from_iso(first_seen), outlet if aggregated else None)
    flush(db)
    return int(db.execute("SELECT count(*) FROM stories").fetchone()[0])
