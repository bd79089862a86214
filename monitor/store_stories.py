"""The stories part of the store: candidates for the clusterer, assignments, story rows, overrides.

Called inside store.py's write transactions (never on its own connection), so an article and its
story change together or not at all. Story ids are the id of the article that started the story:
a new pickup joins and never renumbers, and `restory` over the same articles gives the same ids.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import chain
from sys import intern
from typing import Any
from weakref import WeakKeyDictionary

import numpy as np
import numpy.typing as npt
import sqlite_utils

from monitor import stories
from monitor.dates import from_iso, iso
from monitor.sql import select_in
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


class _Memory:
    """The clusterer's working set for one connection: word rarity and the last WINDOW of
    articles (title word -> newest ids, each article's words, vector and story).

    Placing an article is then arithmetic on memory, whatever the size of the archive. It is
    valid while this connection is the only writer: `check()` drops it when PRAGMA data_version
    says another connection committed (a staff merge, a second collector), and a rollback drops
    it (schema.transaction calls forget()).
    """

    SWEEP = 5_000
    """Placements between sweeps of articles that have left the window."""
    FLUSH_EVERY = 5_000
    """Articles whose word counts are written together. The counts in memory are the ones in
    use; the table is for the next start. Writing is one upsert per distinct word (at every
    1,000 articles, 5 % of a full pass), and counts lost in a crash only make those words read
    a little rarer."""

    def __init__(self, version: int) -> None:
        self.version = version
        self.vocabulary = stories.Vocabulary()
        """Word ids and rarity: the stored counts, plus this connection's new articles until
        flush() writes them."""
        self.unflushed = 0
        """Articles counted since the last flush(): their counts are written every FLUSH_EVERY."""
        self.since: datetime | None = None
        """Every article placed from then on is in memory (None: nothing loaded yet)."""
        self.by_word: dict[str, list[int]] = {}
        """Title word -> ids of the newest PER_WORD articles using it, oldest first."""
        self.articles: dict[int, Candidate] = {}
        """The articles some word's list holds: the only ones that can be candidates."""
        self.refs: dict[int, int] = {}
        """Article id -> how many word lists hold it; at 0 it is let go."""
        self.story_start: dict[int, datetime] = {}
        """Story id -> its first article's first_seen (for stories with articles in memory)."""
        self.horizon: datetime | None = None
        """The newest first_seen placed."""
        self.placed = 0

    def add(self, article: Candidate, title_words: Sequence[str]) -> None:
        """Remember a placed article under its (distinct) title words."""
        self.story_start.setdefault(article.story_id, article.story_first_seen)
        if not title_words:
            return  # nothing would ever find it
        self.articles[article.id] = article
        self.refs[article.id] = len(title_words)
        for word in title_words:
            ids = self.by_word.setdefault(word, [])
            ids.append(article.id)
            if len(ids) > stories.PER_WORD:
                self._release(ids.pop(0))

    def _release(self, article_id: int) -> None:
        left = self.refs[article_id] - 1
        if left:
            self.refs[article_id] = left
        else:  # newer articles have taken its place under every word: no longer findable
            del self.refs[article_id], self.articles[article_id]

    def sweep(self, now: datetime) -> None:
        # Two windows are kept, so a poll that started a little before the newest one placed
        # still finds its whole window here.
        low = self.since = now - 2 * stories.WINDOW
        self.articles = {i: a for i, a in self.articles.items() if a.first_seen >= low}
        kept = {word: [i for i in ids if i in self.articles] for word, ids in self.by_word.items()}
        self.by_word = {word: ids for word, ids in kept.items() if ids}
        self.refs = dict(Counter(i for ids in self.by_word.values() for i in ids))
        live = {a.story_id for a in self.articles.values()}
        self.story_start = {i: t for i, t in self.story_start.items() if i in live}


_MEMORY: WeakKeyDictionary[sqlite_utils.Database, _Memory] = WeakKeyDictionary()


def _version(db: sqlite_utils.Database) -> int:
    return int(db.execute("PRAGMA data_version").fetchone()[0])


def _memory(db: sqlite_utils.Database) -> _Memory:
    memory = _MEMORY.get(db)
    if memory is None:
        memory = _MEMORY[db] = _Memory(_version(db))
    return memory


def check(db: sqlite_utils.Database) -> None:
    """At the start of a write transaction: forget what another connection may have changed
    (keeping our word counts: counts add up, whoever wrote in between)."""
    memory = _MEMORY.get(db)
    if memory is not None and memory.version != _version(db):
        _reset(db)


def forget(db: sqlite_utils.Database) -> None:
    """After a rollback, or a change by another connection: memory may not match the database.
    Word counts not yet written go too (a rollback undid their articles); elsewhere, flush()
    first."""
    _MEMORY.pop(db, None)


def _reset(db: sqlite_utils.Database) -> None:
    """Inside a transaction that changes stories wholesale: keep the counts, drop the rest."""
    flush(db, force=True)
    forget(db)


def flush(db: sqlite_utils.Database, *, force: bool = False) -> None:
    """Write the word counts of new articles, every FLUSH_EVERY articles or when forced (at the
    end of a collection pass). Inside the caller's transaction. Counts still in memory when a
    process dies are lost: rarity then reads a little high for those words, nothing else."""
    memory = _MEMORY.get(db)
    if memory is None or not memory.unflushed:
        return
    if force or memory.unflushed >= memory.FLUSH_EVERY:
        db.conn.executemany(
            """INSERT INTO story_words (word, docs) VALUES (?, ?)
            ON CONFLICT (word) DO UPDATE SET docs = docs + excluded.docs""",
            memory.vocabulary.unwritten(),
        )
        memory.unflushed = 0


def count_words(db: sqlite_utils.Database, distinct: Collection[str]) -> npt.NDArray[np.int32]:
    """Count an article's distinct words towards their rarity (written by flush()); returns
    their ids."""
    ids = _ids(db, distinct)
    memory = _memory(db)
    memory.unflushed += 1
    memory.vocabulary.count(ids)
    return ids


@dataclass(frozen=True)
class Placed:
    """A story decision for an article, with what the articles row stores of it."""

    assignment: Assignment
    words: str
    """stems() of title and summary, space-separated (articles.words)."""


def place(
    db: sqlite_utils.Database,
    article_id: int,
    text: stories.Text,
    outlet: str,
    first_seen: datetime,
    aggregated: bool,
    *,
    archive: int | None = None,
    override: Assignment | None = None,
) -> Placed:
    """Decide the story of an article (the newest so far) and remember it for later ones.

    Nothing is written but word counts (flush()): the caller stores `story_id`, `match_reason`
    and `words` with the article, then calls refresh() for the stories it touched. A new
    article's words count towards rarity and its id stands in for the article count; when
    re-placing the archive (restory) pass `archive`, its size, instead. `override` is a staff
    decision that wins over the clusterer.
    """
    new = archive is None
    memory = _memory(db)
    if memory.since is not None and first_seen - stories.WINDOW < memory.since:
        _reset(db)  # far back in time (a backfill, a clock change): not the window in memory
        memory = _memory(db)
    if memory.since is None:
        _load_window(db, memory, first_seen)
    # Polls finish out of the order they started in: placing order, not first_seen, is "earlier".
    memory.horizon = max(memory.horizon or first_seen, first_seen)
    ids = count_words(db, text.counts.keys()) if new else _ids(db, text.counts.keys())
    candidates = _candidates(memory, text.title_words, first_seen) if override is None else []
    # The stored counts of the words about to be weighed, in one query rather than one each.
    unweighed = [w for c in candidates if c.vector is None for w in c.words]
    _load_docs(db, unweighed)
    vocabulary, total = memory.vocabulary, archive or article_id
    vector = vocabulary.vector(ids, text.counts.values(), total)

    def weigh(words: Sequence[str]) -> stories.Vector:
        counts = Counter(words)
        return vocabulary.vector(_ids(db, counts.keys()), counts.values(), total)

    def similarities(near: Sequence[Candidate]) -> npt.NDArray[np.float64]:
        return vocabulary.similarities(vector, [c.weighed(weigh) for c in near])

    assignment = (
        override
        or stories.assign(
            text.key, first_seen, candidates, similarities, outlet if aggregated else None
        )
        or Assignment(article_id, "first report")
    )
    memory.add(
        Candidate(
            article_id,
            text.key,
            (),
            outlet,
            first_seen,
            assignment.story_id,
            memory.story_start.get(assignment.story_id, first_seen),
            vector,
        ),
        text.title_words,
    )
    memory.placed += 1
    if memory.placed % memory.SWEEP == 0:
        memory.sweep(memory.horizon)
    return Placed(assignment, " ".join(text.words))


def _load_window(db: sqlite_utils.Database, memory: _Memory, now: datetime) -> None:
    """The stored articles of the last WINDOW, oldest first, as placing would have added them."""
    rows = db.execute(
        """SELECT a.id, a.title, a.words, a.outlet, a.first_seen, a.story_id, s.first_seen
        FROM articles a JOIN stories s ON s.id = a.story_id
        WHERE a.first_seen BETWEEN ? AND ? ORDER BY a.first_seen, a.id""",
        [iso(now - stories.WINDOW), iso(now)],
    ).fetchall()
    for article_id, title, words, outlet, seen, story_id, story_seen in rows:
        key = stories.fold(title)
        article = Candidate(
            article_id,
            key,
            tuple(map(intern, words.split())),
            outlet,
            from_iso(seen),
            story_id,
            from_iso(story_seen),
        )
        memory.add(article, stories.distinct(stories.cut(key)))
    memory.since = now - stories.WINDOW


def _candidates(
    memory: _Memory, title_words: Sequence[str], first_seen: datetime
) -> list[Candidate]:
    """Articles placed earlier, within the window, that share a title word: the newest few per
    word.

    Per word, so that a reworded headline sharing only common words ("asylum", "prison") with
    the story still meets its most recent members; newest first, because copies and rewrites
    of a story arrive within hours of each other. The articles sharing the most title words
    come first; only the best MAX_CANDIDATES are scored.
    """
    low = first_seen - stories.WINDOW
    by_word, articles = memory.by_word, memory.articles
    shared = Counter(
        chain.from_iterable(by_word.get(w, ()) for w in title_words[: stories.BLOCKING_WORDS])
    )
    found = []
    for _, article_id in sorted([(n, i) for i, n in shared.items()], reverse=True):
        article = articles[article_id]
        if article.first_seen >= low:
            found.append(article)
            if len(found) == stories.MAX_CANDIDATES:
                break
    return found


def _ids(db: sqlite_utils.Database, words: Collection[str]) -> npt.NDArray[np.int32]:
    """The vocabulary ids of these words, loading the stored counts of new ones first."""
    vocabulary = _memory(db).vocabulary
    ids = vocabulary.lookup(words)
    if ids is None:
        _load_docs(db, words)
        ids = vocabulary.lookup(words)
        assert ids is not None  # every word was just added
    return ids


def _load_docs(db: sqlite_utils.Database, words: Iterable[str]) -> None:
    """Make sure the stored counts of these words are in memory."""
    vocabulary = _memory(db).vocabulary
    missing = dict.fromkeys(w for w in words if w not in vocabulary.ids)
    if missing:
        stored = select_in(
            db, "SELECT word, docs FROM story_words WHERE word IN ({marks})", list(missing)
        )
        vocabulary.add({**dict.fromkeys(missing, 0), **dict(stored)})


def refresh(db: sqlite_utils.Database, story_ids: Iterable[int]) -> None:
    """Recompute story rows from their articles (and drop stories left empty)."""
    members: dict[int, list[Any]] = {story_id: [] for story_id in sorted(set(story_ids))}
    for row in select_in(
        db,
        """SELECT story_id, title, url, outlet, published, first_seen, topics
        FROM articles WHERE story_id IN ({marks})
        ORDER BY story_id, aggregated, published, first_seen, id""",
        list(members),
    ):
        members[row[0]].append(row[1:])
    db.conn.executemany(
        "DELETE FROM stories WHERE id = ?", [(i,) for i, rows in members.items() if not rows]
    )
    db.conn.executemany(
        """INSERT OR REPLACE INTO stories (id, title, url, outlet, published, first_seen,
            last_seen, outlets, outlet_list, articles, topics)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        [_story_row(i, rows) for i, rows in members.items() if rows],
    )


def _story_row(story_id: int, members: list[Any]) -> tuple[Any, ...]:
    """A story as its articles make it, the first (by publication, originals before
    aggregator copies) giving its headline."""
    title, url, outlet, published, _, _ = members[0]
    outlets = list(dict.fromkeys(m[2] for m in members))
    topics = sorted({t for m in members for t in json.loads(m[5])})
    return (
        story_id, title, url, outlet, published, min(m[4] for m in members),
        max(m[4] for m in members), len(outlets), json.dumps(outlets), len(members),
        json.dumps(topics),
    )  # fmt: skip


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
    _reset(db)
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
    _reset(db)
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
    _reset(db)
    _memory(db).since = datetime.min.replace(tzinfo=UTC)  # nothing is placed yet: empty window
    overrides = {
        article_id: Assignment(story_id, f"staff {action}")
        for article_id, story_id, action in db.execute(
            "SELECT article_id, story_id, action FROM story_overrides"
        )
    }
    rows: list[Any] = db.execute(
        """SELECT id, title, summary, outlet, first_seen, aggregated FROM articles
        ORDER BY first_seen, id"""
    ).fetchall()
    decided = []
    for article_id, title, summary, outlet, first_seen, aggregated in rows:
        placed = place(
            db, article_id, stories.text_of(title, summary), outlet, from_iso(first_seen),
            bool(aggregated), archive=len(rows), override=overrides.get(article_id),
        )  # fmt: skip
        decided.append(
            (placed.assignment.story_id, placed.assignment.reason, placed.words, article_id)
        )
    db.conn.executemany(
        "UPDATE articles SET story_id = ?, match_reason = ?, words = ? WHERE id = ?", decided
    )
    refresh(db, [story_id for story_id, *_ in decided])
    # The next placement loads the window from the database: whatever writes articles next
    # (a migration's caller, a bulk import) need not go through place().
    _reset(db)
    return int(db.execute("SELECT count(*) FROM stories").fetchone()[0])
