"""Which campaign topics an article matches, and the words that made it match.

Topic queries are SQLite FTS5 queries, evaluated by SQLite itself over an in-memory FTS5 table with
the same tokenizer as `articles_fts`, so a topic means exactly what the same words typed into
Datasette's search box mean: AND, OR, NOT, "phrases", prefix*, NEAR(a b, n), parentheses;
case-insensitive; diacritics folded ("Tamaki" finds "Tāmaki"); hyphens split words
("asylum-seekers" is the phrase "asylum seekers").
"""

from __future__ import annotations

import dataclasses
import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # config validates queries with this module, so no import cycle at run time
    from monitor.config import Source
    from monitor.normalise import Item

TOKENIZER = "unicode61 remove_diacritics 2"
"""Shared with the articles_fts table (store.py): matching and search must agree."""

HIGHLIGHT = ("\x01", "\x02")
"""Markers for FTS5 highlight(): control characters never left in stored text."""
_QUOTED_OR_HYPHENATED = re.compile(r'"[^"]*"|(\w+(?:-\w+)+)')
_MARKED = re.compile(f"{HIGHLIGHT[0]}(.*?){HIGHLIGHT[1]}", re.DOTALL)


@dataclass(frozen=True)
class TopicMatch:
    topics: tuple[str, ...]
    """Sorted names of the topics the text matches."""
    terms: Mapping[str, tuple[str, ...]]
    """topic -> the words (lower-cased, in order of first appearance) that matched it."""


NO_MATCH = TopicMatch((), {})


def fts_query(query: str) -> str:
    """The query as FTS5 must see it: a hyphenated word outside quotes becomes a phrase.

    FTS5 reads `asylum-seekers` as a column filter and fails; staff mean "asylum seekers",
    which is also how the tokenizer indexes the hyphenated text.
    """
    return _QUOTED_OR_HYPHENATED.sub(
        lambda m: f'"{m.group(1).replace("-", " ")}"' if m.group(1) else m.group(0), query
    )


def query_problem(query: str) -> str | None:
    """Why SQLite FTS5 refuses `query`, in its own words, or None when it is valid."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute(f"CREATE VIRTUAL TABLE t USING fts5(title, summary, tokenize='{TOKENIZER}')")
        conn.execute("SELECT rowid FROM t WHERE t MATCH ?", [fts_query(query)]).fetchall()
    except sqlite3.OperationalError as e:
        return str(e).removeprefix("fts5: ")
    finally:
        conn.close()
    return None


def tag(items: Sequence[Item], matcher: Matcher, source: Source) -> tuple[list[Item], int]:
    """Items with their topics (the source's own plus every query they match), and how many
    were dropped because the source requires a topic and they matched none."""
    matches = matcher.match([(item.title, item.summary) for item in items])
    tagged = [_tagged(item, m, source) for item, m in zip(items, matches, strict=True)]
    if not source.require_topic:
        return tagged, 0
    kept = [item for item in tagged if item.topics]
    return kept, len(tagged) - len(kept)


def _tagged(item: Item, match: TopicMatch, source: Source) -> Item:
    topics = tuple(sorted(set(item.topics) | set(source.topics) | set(match.topics)))
    if topics == item.topics and match.terms == item.matched:
        return item  # most items match nothing: a copy of each cost the worker ~3 µs
    return dataclasses.replace(item, topics=topics, matched=match.terms)


def matcher_for(topics: Mapping[str, str]) -> Matcher:
    """A Matcher for these topics, kept per thread (its SQLite connection is not shared):
    polls, in the collector or its feed-reading worker, pass the topics they started with."""
    kept: Matcher | None = getattr(_PER_THREAD, "matcher", None)
    if kept is None or kept.topics != topics:
        if kept is not None:
            kept.close()
        kept = _PER_THREAD.matcher = Matcher(topics)
    return kept


_PER_THREAD = threading.local()


class Matcher:
    """Matches batches of (title, summary) texts against every topic query at once."""

    def __init__(self, topics: Mapping[str, str]) -> None:
        self.topics = dict(topics)
        self._conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        self._conn.execute(
            f"CREATE VIRTUAL TABLE doc USING fts5(title, summary, tokenize='{TOKENIZER}')"
        )

    def match(self, texts: Sequence[tuple[str, str]]) -> list[TopicMatch]:
        if not texts or not self.topics:
            return [NO_MATCH] * len(texts)
        conn = self._conn
        conn.execute("BEGIN")
        try:
            conn.executemany(
                "INSERT INTO doc (rowid, title, summary) VALUES (?, ?, ?)",
                ((i, title, summary) for i, (title, summary) in enumerate(texts)),
            )
            found: list[dict[str, tuple[str, ...]]] = [{} for _ in texts]
            for name, query in self.topics.items():
                for rowid, terms in matching_rows(conn, "doc", query):
                    found[rowid][name] = terms
        finally:
            conn.execute("ROLLBACK")  # the table is scratch space: leave it empty
        return [TopicMatch(tuple(sorted(terms)), terms) for terms in found]

    def close(self) -> None:
        self._conn.close()


def matching_rows(
    conn: sqlite3.Connection, table: str, query: str
) -> Iterator[tuple[int, tuple[str, ...]]]:
    """(rowid, matched words) for each row of an FTS5 table (title, summary) matching `query`."""
    rows = conn.execute(
        f"SELECT rowid, highlight({table}, 0, ?, ?), highlight({table}, 1, ?, ?) "
        f"FROM {table} WHERE {table} MATCH ?",
        [*HIGHLIGHT, *HIGHLIGHT, fts_query(query)],
    )
    for rowid, title, summary in rows:
        yield rowid, marked_terms([title, summary])


def marked_terms(highlighted: Iterable[str]) -> tuple[str, ...]:
    """The words FTS5's highlight() marked, lower-cased, without repeats."""
    terms: dict[str, None] = {}
    for text in highlighted:
        for term in _MARKED.findall(text or ""):
            terms[" ".join(term.lower().split())] = None
    return tuple(terms)
