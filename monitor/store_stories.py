"""The stories part of the store: candidates for the clusterer, assignments, story rows, overrides.

Called inside store.py's write transactions (never on its own connection), so an article and its
story change together or not at all. Story ids are the id of the article that started the story:
a new pickup joins and never renumbers, and `restory` over the same articles gives the same ids.
"""

from __future__ import annotations

import functools
import gc
import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import chain
from typing import Any
from weakref import WeakKeyDictionary

import numpy as np
import numpy.typing as npt
import sqlite_utils

from monitor import stories
from monitor.dates import from_iso, iso
from monitor.sql import select_in
from monitor.stories import Assignment

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
    articles, one slot each: columns of numbers (id, first seen, story, title key, where its
    vector lies in one pool) and, per title word, the slots of the newest articles using it.

    Placing articles is then arithmetic on memory, whatever the size of the archive. It is
    valid while this connection is the only writer: `check()` drops it when PRAGMA data_version
    says another connection committed (a staff merge, a second collector), and a rollback drops
    it (schema.transaction calls forget()).
    """

    COMPACT_AT = 20_000
    """Slots in use before the first compaction (slots of articles that have left the window
    or every word list are dropped then); after that, twice the slots the last one kept."""
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
        self.horizon = -math.inf
        """The newest first_seen placed (seconds since the epoch)."""
        self.word_slots = np.zeros((0, stories.PER_WORD), np.int32)
        self.word_fill = np.zeros(0, np.int32)
        """Title word (its vocabulary id) -> the slots of the newest PER_WORD articles using
        it, oldest first: the first word_fill[word] of its row."""
        self.scratch = np.zeros(0, np.float32)
        """A weight per word id, all zeros between calls (candidates.cosines)."""
        self.story_start: dict[int, float] = {}
        """Story id -> its first article's first_seen (for stories with articles in memory)."""
        self.outlets: list[str] = []
        self.used = 0
        self.compact_at = self.COMPACT_AT
        self.article = np.zeros(0, np.int64)
        self.seen = np.zeros(0)
        self.story = np.zeros(0, np.int64)
        self.key = np.zeros(0, np.int64)
        """hash() of fold(title): equal keys are the same title (checked on the strings' hash,
        which is this process's own: memory is never shared)."""
        self.vector_at = np.zeros(0, np.int64)
        self.vector_len = np.zeros(0, np.int64)
        """Where each slot's vector lies in the pool: every slot's word ids and weights, end to
        end, in 32 bits (half the memory traffic of scoring)."""
        self.pool_ids: npt.NDArray[np.integer[Any]] = np.zeros(0, np.int32)
        self.pool_weights: npt.NDArray[np.floating[Any]] = np.zeros(0, np.float32)
        self.pooled = 0

    def append(
        self,
        articles: Sequence[int],
        seen: npt.NDArray[np.float64],
        keys: Sequence[int],
        outlets: Sequence[str],
        vectors: stories.Vectors,
    ) -> int:
        """New slots, first reports until told otherwise (set story[]); the first one's number."""
        first, n, words = self.used, len(articles), len(vectors.ids)
        for name in ("article", "seen", "story", "key", "vector_at", "vector_len"):
            setattr(self, name, _room(getattr(self, name), first, first + n))
        self.pool_ids = _room(self.pool_ids, self.pooled, self.pooled + words)
        self.pool_weights = _room(self.pool_weights, self.pooled, self.pooled + words)
        slots = slice(first, first + n)
        self.article[slots] = articles
        self.seen[slots] = seen
        self.story[slots] = articles
        self.key[slots] = keys
        self.outlets.extend(outlets)
        self.pool_ids[self.pooled : self.pooled + words] = vectors.ids
        self.pool_weights[self.pooled : self.pooled + words] = vectors.weights
        self.vector_at[slots] = self.pooled + vectors.starts
        self.vector_len[slots] = vectors.lens
        self.pooled += words
        self.used += n
        return first

    def file(
        self,
        first_slot: int,
        title_ids: npt.NDArray[np.int64],
        title_lens: npt.NDArray[np.int64],
        collect: npt.NDArray[np.bool_],
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """File slots first_slot, first_slot + 1, ... under their (distinct) title words' ids,
        the next title_lens[i] of `title_ids` for the i-th, where later articles find them.
        Where collect[i], first find its candidates among the slots filed before it
        (candidates.file_and_find): (index of the article, slot) pairs, by article."""
        self._room_for_words()
        loops = stories.compiled()
        pairs: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]] = loops.file_and_find(
            first_slot, title_ids, title_lens, collect, self.word_slots, self.word_fill,
            self.seen, stories.WINDOW.total_seconds(), stories.BLOCKING_WORDS,
            stories.MAX_CANDIDATES,
        )  # fmt: skip
        return pairs

    def _room_for_words(self) -> None:
        words = len(self.vocabulary)
        if words <= len(self.word_fill):
            return
        size = max(words, 2 * len(self.word_fill), 4096)
        slots = np.zeros((size, stories.PER_WORD), np.int32)
        slots[: len(self.word_slots)] = self.word_slots
        self.word_slots = slots
        self.word_fill = _room(self.word_fill, len(self.word_fill), size)
        self.scratch = np.zeros(size, np.float32)

    def vectors_of(self, slots: npt.NDArray[np.int64]) -> stories.Vectors:
        lens = self.vector_len[slots]
        at = stories.spans(self.vector_at[slots], lens)
        return stories.Vectors(self.pool_ids[at], self.pool_weights[at], lens)

    def compact(self) -> None:
        """Drop the slots no word list holds any more or that have left the window (two
        windows are kept, so a poll that started a little before the newest one placed still
        finds its whole window here)."""
        low = self.horizon - 2 * stories.WINDOW.total_seconds()
        filed = np.arange(stories.PER_WORD) < self.word_fill[:, None]
        live = np.zeros(self.used, bool)
        live[self.word_slots[filed]] = True
        live &= self.seen[: self.used] >= low
        kept = np.flatnonzero(live)
        renumber = np.full(self.used, -1, np.int64)
        renumber[kept] = np.arange(len(kept))
        vectors = self.vectors_of(kept)
        for name in ("article", "seen", "story", "key"):
            setattr(self, name, getattr(self, name)[kept])
        self.outlets = [self.outlets[i] for i in kept.tolist()]
        self.vector_at, self.vector_len = vectors.starts, vectors.lens
        self.pool_ids, self.pool_weights = vectors.ids, vectors.weights
        self.pooled = len(vectors.ids)
        self.used = len(kept)
        # Each word's slots renumbered, those dropped left out, the rest still oldest first.
        renumbered = np.where(filed, renumber[self.word_slots], -1)
        order = np.argsort(renumbered < 0, axis=1, kind="stable")
        self.word_slots = np.take_along_axis(renumbered, order, 1).astype(np.int32)
        self.word_fill = (renumbered >= 0).sum(1).astype(np.int32)
        stories_live = set(self.story[: self.used].tolist())
        self.story_start = {i: t for i, t in self.story_start.items() if i in stories_live}
        self.since = datetime.fromtimestamp(low, UTC)
        self.compact_at = max(self.COMPACT_AT, 2 * self.used)


def _room(array: npt.NDArray[Any], used: int, needed: int) -> npt.NDArray[Any]:
    """`array` (of which `used` entries are in use) with room for `needed`, doubling."""
    if needed <= len(array):
        return array
    grown = np.zeros(max(needed, 2 * len(array), 1024), array.dtype)
    grown[:used] = array[:used]
    return grown


_MEMORY: WeakKeyDictionary[sqlite_utils.Database, _Memory] = WeakKeyDictionary()


def warm() -> None:
    """Load what placing articles runs (candidates.warm) before the first articles come."""
    stories.compiled().warm()
    # numba's ~80,000 objects stay for the process's life; each full pass of the garbage
    # collector walked them (~30 ms), and the interpreter's passes at exit (~0.25 s). Once per
    # process: whatever else is alive now is frozen too, and is still freed when unreferenced
    # (only a cycle among those objects would stay until exit).
    gc.freeze()


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


def count_words(db: sqlite_utils.Database, distinct: npt.NDArray[np.str_]) -> None:
    """Count an article's distinct words (Text.distinct_words()) towards their rarity (written
    by flush())."""
    memory = _memory(db)
    memory.unflushed += 1
    memory.vocabulary.count(_ids(db, distinct))


@dataclass(frozen=True)
class Placing:
    """An article to place in a story."""

    article_id: int
    text: stories.Text
    outlet: str
    first_seen: datetime
    aggregated: bool
    override: Assignment | None = None
    """A staff decision, which wins over the clusterer."""


CHUNK = 64
"""Articles placed together: their candidates are scored as one dense matrix of that many rows
(numpy's cost per call, not arithmetic, was most of placing one article at a time)."""


def place_all(
    db: sqlite_utils.Database, articles: Sequence[Placing], *, archive: int | None = None
) -> list[Assignment]:
    """Decide the stories of articles, in order (each newer than every article placed before
    it, and seeing those), and remember them for later ones.

    Nothing is written but word counts (flush()): the caller stores each article's story and
    reason (and its text's `words`), then calls refresh() for the stories it touched. New
    articles' words count towards rarity and their ids stand in for the article count; when
    re-placing the archive (restory) pass `archive`, its size, instead.
    """
    placed: list[Assignment] = []
    for start in range(0, len(articles), CHUNK):
        placed += _place_chunk(db, articles[start : start + CHUNK], archive)
    return placed


def _place_chunk(
    db: sqlite_utils.Database, chunk: Sequence[Placing], archive: int | None
) -> list[Assignment]:
    memory = _memory(db)
    first = min(a.first_seen for a in chunk)
    if memory.since is not None and first - stories.WINDOW < memory.since:
        _reset(db)  # far back in time (a backfill, a clock change): not the window in memory
        memory = _memory(db)
    if memory.since is None:
        _load_window(db, memory, first, archive or chunk[0].article_id)
    seen = np.array([a.first_seen.timestamp() for a in chunk])
    # Polls finish out of the order they started in: placing order, not first_seen, is "earlier".
    memory.horizon = max(memory.horizon, float(seen.max()))
    vocabulary = memory.vocabulary
    words, lens = stories.distinct_words_of([a.text for a in chunk])
    ids = _ids(db, words)
    if archive is None:
        memory.unflushed += len(chunk)
        vocabulary.count(ids)
    counts = np.frombuffer(b"".join(a.text.repeats for a in chunk), stories.REPEATS).astype(float)
    totals = np.array([archive or a.article_id for a in chunk], np.int64)
    vectors = vocabulary.vectors(ids, counts, lens, totals)
    keys = [hash(a.text.key) for a in chunk]
    first_slot = memory.append(
        [a.article_id for a in chunk], seen, keys, [a.outlet for a in chunk], vectors
    )
    # Candidates in order: each article finds the ones placed before it, this chunk's included.
    titled = np.array([a.text.titled for a in chunk], np.int64)
    owners, slots = memory.file(
        first_slot,
        ids[stories.spans(np.cumsum(lens) - lens, titled)],  # a text's title words come first
        titled,
        np.array([a.override is None for a in chunk]),
    )
    near = _near(memory, first_slot, owners, slots)
    placed = []
    story, story_start = memory.story, memory.story_start
    for i, (a, when) in enumerate(zip(chunk, seen.tolist(), strict=True)):
        assignment = a.override
        pairs = near.get(i) if assignment is None else None
        if pairs:
            candidates = []
            for s, same, score in pairs:
                story_id = int(story[s])
                candidates.append(
                    stories.Near(story_id, story_start[story_id], memory.outlets[s], same, score)
                )
            assignment = stories.assign(when, candidates, a.outlet if a.aggregated else None)
        assignment = assignment or Assignment(a.article_id, "first report")
        story[first_slot + i] = assignment.story_id
        story_start.setdefault(assignment.story_id, when)
        placed.append(assignment)
    if memory.used >= memory.compact_at:
        memory.compact()
    return placed


Pair = tuple[int, bool, float]
"""A candidate's slot, whether it has the same title, and its score."""


def _near(
    memory: _Memory,
    first_slot: int,
    owner: npt.NDArray[np.int64],
    slot: npt.NDArray[np.int64],
) -> dict[int, list[Pair]]:
    """For each article of the chunk appended last (slots first_slot on, by index), of its
    candidates (`owner`, `slot`: see candidates.file_and_find) those that can decide its story:
    the same title, or a score of at least THRESHOLD; oldest first.

    Candidates are the newest few per title word, so that a reworded headline sharing only
    common words ("asylum", "prison") with the story still meets its most recent members;
    newest first, because copies and rewrites of a story arrive within hours of each other.
    """
    if not len(owner):
        return {}
    same = memory.key[slot] == memory.key[first_slot + owner]
    mine = slice(first_slot, memory.used)
    scores = stories.compiled().cosines(
        memory.pool_ids, memory.pool_weights, owner, memory.vector_at[mine],
        memory.vector_len[mine], memory.vector_at[slot], memory.vector_len[slot], memory.scratch,
    )  # fmt: skip
    deciding = same | (scores >= stories.THRESHOLD)
    owner, slot, same, scores = owner[deciding], slot[deciding], same[deciding], scores[deciding]
    oldest = np.lexsort((memory.article[slot], memory.seen[slot], owner))
    near: dict[int, list[Pair]] = {}
    for i, s, is_same, score in zip(
        owner[oldest].tolist(),
        slot[oldest].tolist(),
        same[oldest].tolist(),
        scores[oldest].tolist(),
        strict=True,
    ):
        near.setdefault(i, []).append((s, is_same, score))
    return near


WINDOW_LOOKUP = 4_096
"""Articles of the window read and added together when it is loaded: a whole window at once
(~20,000 articles, ~700,000 words) was a peak of a hundred MB in word counts and arrays."""


LATE = timedelta(hours=1)
"""How much earlier than the first articles placed a later poll's may be first seen: polls
finish out of the order they started in (a poll lasts at most its timeout). The window is
loaded from that much further back, so that such a poll still finds its whole window in
memory, and memory is not thrown away and reloaded for it."""


def _load_window(db: sqlite_utils.Database, memory: _Memory, now: datetime, total: int) -> None:
    """The stored articles around `now` that placing it may meet (first seen from WINDOW and
    LATE before it to WINDOW after), oldest first, as placing would have added them (weighed as
    if `total` articles were stored)."""
    rows = db.execute(
        """SELECT a.id, a.title, a.words, a.outlet, a.first_seen, a.story_id, s.first_seen
        FROM articles a JOIN stories s ON s.id = a.story_id
        WHERE a.first_seen BETWEEN ? AND ? ORDER BY a.first_seen, a.id""",
        [iso(now - stories.WINDOW - LATE), iso(now + stories.WINDOW)],
    )
    memory.since = now - stories.WINDOW - LATE
    while batch := rows.fetchmany(WINDOW_LOOKUP):
        _load_rows(db, memory, batch, total)


def _load_rows(db: sqlite_utils.Database, memory: _Memory, rows: Sequence[Any], total: int) -> None:
    counted = [Counter(words.split()) for _, _, words, *_ in rows]
    titles = [stories.fold(title) for _, title, *_ in rows]
    ids = _ids(db, stories.word_array(chain.from_iterable(counted)))
    vectors = memory.vocabulary.vectors(
        ids,
        np.fromiter(chain.from_iterable(c.values() for c in counted), np.float64, len(ids)),
        np.array([len(c) for c in counted], np.int64),
        np.full(len(rows), total, np.int64),
    )
    first = memory.append(
        [r[0] for r in rows],
        np.array([from_iso(r[4]).timestamp() for r in rows]),
        [hash(key) for key in titles],
        [r[3] for r in rows],
        vectors,
    )
    heads = [stories.distinct(stories.cut(key)) for key in titles]
    head_ids = _ids(db, stories.word_array(chain.from_iterable(heads)))
    for n, row in enumerate(rows):
        memory.story[first + n] = row[5]
        memory.story_start.setdefault(row[5], from_iso(row[6]).timestamp())
    lens = np.array([len(head) for head in heads], np.int64)
    memory.file(first, head_ids, lens, np.zeros(len(rows), np.bool_))
    memory.horizon = max(memory.horizon, float(memory.seen[first + len(rows) - 1]))


def _ids(db: sqlite_utils.Database, words: npt.NDArray[np.str_]) -> npt.NDArray[np.int64]:
    """The vocabulary ids of these words, loading the stored counts of new ones first."""
    vocabulary = _memory(db).vocabulary
    ids = vocabulary.lookup(words)
    new = ids < 0
    if new.any():
        _load_docs(db, np.unique(words[new]).tolist())
        ids[new] = vocabulary.lookup(words[new])
    return ids


def _load_docs(db: sqlite_utils.Database, words: list[str]) -> None:
    """Add these words, which the vocabulary does not have (distinct), with their stored counts."""
    stored = select_in(db, "SELECT word, docs FROM story_words WHERE word IN ({marks})", words)
    _memory(db).vocabulary.add({**dict.fromkeys(words, 0), **dict(stored)})


Member = tuple[str, str, str, str, str, str]
"""What a story row is made of, per article: title, url, outlet, published, first_seen, topics
(JSON). A story's members come in order: originals before aggregator copies, then by
publication, first sight and id (the first gives the story its headline)."""


def refresh(db: sqlite_utils.Database, story_ids: Iterable[int]) -> None:
    """Recompute story rows from their articles (and drop stories left empty)."""
    members: dict[int, list[Member]] = {story_id: [] for story_id in sorted(set(story_ids))}
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
    write_stories(db, {i: rows for i, rows in members.items() if rows})


def write_stories(db: sqlite_utils.Database, members: Mapping[int, Sequence[Member]]) -> None:
    """Story rows from all of each story's members, in order (see Member)."""
    # An upsert, not INSERT OR REPLACE: a new row then costs what a plain insert does (REPLACE
    # doubled it, 10.9 against 5.3 µs a story into the stories table and its five indexes).
    db.conn.executemany(
        """INSERT INTO stories (id, title, url, outlet, published, first_seen, last_seen,
            outlets, outlet_list, articles, topics)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (id) DO UPDATE SET title = excluded.title, url = excluded.url,
            outlet = excluded.outlet, published = excluded.published,
            first_seen = excluded.first_seen, last_seen = excluded.last_seen,
            outlets = excluded.outlets, outlet_list = excluded.outlet_list,
            articles = excluded.articles, topics = excluded.topics""",
        [_story_row(i, rows) for i, rows in members.items()],
    )


def _story_row(story_id: int, members: Sequence[Member]) -> tuple[Any, ...]:
    title, url, outlet, published, seen, topics = members[0]
    if len(members) == 1:  # most stories; articles' topics are stored sorted, as stories' are
        return (story_id, title, url, outlet, published, seen, seen, 1, _only(outlet), 1,
                topics)  # fmt: skip
    outlets = list(dict.fromkeys(m[2] for m in members))
    every = sorted({t for m in members for t in json.loads(m[5])})
    return (
        story_id, title, url, outlet, published, min(m[4] for m in members),
        max(m[4] for m in members), len(outlets), json.dumps(outlets), len(members),
        json.dumps(every),
    )  # fmt: skip


@functools.lru_cache(maxsize=4096)
def _only(outlet: str) -> str:
    # A story of one article names one outlet; a source's articles all name the same few, and
    # json.dumps for each story of a batch of 2,000 cost 1.4 µs a time, 0.07 s a full cycle.
    return json.dumps([outlet])


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


RESTORY_BATCH = 1_000
"""Articles read and placed at a time by restory (a million at once would all be in memory)."""


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
    (archive,) = db.execute("SELECT count(*) FROM articles").fetchone()
    rows = db.execute(
        """SELECT id, title, summary, outlet, first_seen, aggregated FROM articles
        ORDER BY first_seen, id"""
    )
    decided = []
    while batch := rows.fetchmany(RESTORY_BATCH):
        articles = [
            Placing(
                article_id, stories.text_of(title, summary), outlet, from_iso(first_seen),
                bool(aggregated), overrides.get(article_id),
            )
            for article_id, title, summary, outlet, first_seen, aggregated in batch
        ]  # fmt: skip
        placed = place_all(db, articles, archive=archive)
        decided += [
            (p.story_id, p.reason, a.text.words, a.article_id)
            for a, p in zip(articles, placed, strict=True)
        ]
    db.conn.executemany(
        "UPDATE articles SET story_id = ?, match_reason = ?, words = ? WHERE id = ?", decided
    )
    refresh(db, [story_id for story_id, *_ in decided])
    # The next placement loads the window from the database: whatever writes articles next
    # (a migration's caller, a bulk import) need not go through place().
    _reset(db)
    return int(db.execute("SELECT count(*) FROM stories").fetchone()[0])
