"""Which story an article belongs to: one event, carried by many outlets and aggregators.

Matching runs cheapest first and records why an article joined a story:
  1. the same normalised title within the time window ("same title"), or an aggregator item
     naming the outlet and title of an article we have ("aggregator copy of <outlet>");
  2. a near-duplicate: candidates are found by blocking on the article's title words, the
     newest few per word (store_stories.py keeps the last WINDOW of articles in memory, so the
     cost of one article does not grow with the archive), then scored by tf-idf cosine on title
     plus summary, the bar rising as the story ages so that follow-ups start stories of their own.
Nothing here touches the database: store_stories.py supplies the candidates and the stored
word counts, and writes the result.

Measured on tests/fixtures/stories/labelled.tsv (300 articles, 84 stories, with follow-ups and
same-day look-alikes as hard negatives): see README "Stories" for the figures and the threshold.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from types import ModuleType
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

WINDOW = timedelta(days=3)
"""Articles further apart than this (first seen) are never one story."""
THRESHOLD = 0.38
"""Minimum similarity for a near-duplicate; chosen on the labelled set (README, Stories)."""
FOLLOW_UP_PENALTY = 0.25
"""Similarity needed rises by this much per 12 hours after the story began (at most twice):
follow-ups (a minister's response, an aftershock) reuse a story's words but come later."""
STEM = 5
"""Words are compared on their first five letters: detained/detention, prison/prisons."""
WORD = np.dtype(f"<U{STEM}")
"""A stem in an array: looked up among the vocabulary's words as arrays (Vocabulary.lookup)."""
BLOCKING_WORDS = 10
"""Title words used to find candidates."""
PER_WORD = 15
"""Newest earlier articles taken per title word: a story's copies arrive close together."""
MAX_CANDIDATES = 40
"""Of those, the ones sharing the most title words are scored."""

_SUFFIX = re.compile(r"\s+[-|–—]\s+([^-|–—]{2,60})$")
_WORD = re.compile(r"\w+", re.UNICODE)
_ASCII_FOLD = bytes(ord(c.lower()) if _WORD.match(c) else 32 for c in map(chr, range(128)))
_ASCII_FOLD += b" " * 128  # bytes.translate takes a table of all 256 (only ASCII is folded)
_NON_ASCII = re.compile(r"[^\x00-\x7f]+")
STOPWORDS = frozenset(
    {
        "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "has", "have", "in",
        "is", "it", "its", "new", "news", "nz", "of", "on", "or", "says", "said", "the", "to",
        "was", "were", "will", "with", "after", "over", "up", "out", "into", "about", "than",
        "this", "that",
    }
)  # fmt: skip


@dataclass(frozen=True)
class Assignment:
    story_id: int
    reason: str


def strip_outlet(title: str, outlets: Iterable[str]) -> tuple[str, str | None]:
    """'Headline - RNZ' -> ('Headline', 'RNZ') when RNZ is one of `outlets`."""
    match = _SUFFIX.search(title)
    if match and match.group(1).strip().lower() in {o.lower() for o in outlets}:
        return title[: match.start()].rstrip(), match.group(1).strip()
    return title, None


def fold(text: str) -> str:
    """Lower case, no diacritics, quotes and punctuation gone, one space between words."""
    return " ".join(_words(text))


def stems(text: str) -> list[str]:
    """The words of `text` that carry meaning, cut to STEM letters."""
    return _kept(_words(text))


def cut(folded: str) -> list[str]:
    """stems() of text already fold()ed."""
    return _kept(folded.split())


def _kept(words: list[str]) -> list[str]:
    return [w[:STEM] for w in words if len(w) > 2 and w not in STOPWORDS]


def _words(text: str) -> list[str]:
    """The words (runs of \\w) of `text`, lower case, without diacritics (Tāmaki -> tamaki)."""
    if not text.isascii():
        text = _NON_ASCII.sub(_without_marks, unicodedata.normalize("NFKD", text))
    if text.isascii():  # the same words as the regex finds, several times faster
        return text.encode("ascii").translate(_ASCII_FOLD).decode("ascii").split()
    return _WORD.findall(text.lower())


def _without_marks(run: re.Match[str]) -> str:
    return "".join(c for c in run.group() if not unicodedata.combining(c))


def distinct(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


@dataclass(frozen=True)
class Text:
    """What the clusterer reads of an article. Worked out where the article is made (in the
    feed-reading worker, for feeds), so that the process deciding stories only does arithmetic.
    A few flat values: it crosses from the worker by pickle, and a dict of its words cost the
    collector 10-15 µs an article to rebuild, several strings and bytes about 3 µs."""

    title: str
    summary: str
    key: str
    """fold() of the title."""
    words: str
    """stems() of title then summary, repeats kept, space-separated (articles.words)."""
    distinct: bytes
    """Each distinct stem once, in order of first use (the title's come first), as an array of
    WORD (distinct_words())."""
    titled: int
    """How many of `distinct` are the title's: the words that find candidates."""
    repeats: bytes
    """How often each of `distinct` occurs (its weight grows with that), as uint16 (REPEATS)."""

    def reads(self, title: str, summary: str) -> bool:
        """Whether this is the text of that title and summary."""
        return self.title == title and self.summary == summary

    def distinct_words(self) -> npt.NDArray[np.str_]:
        return distinct_words_of([self])[0]


REPEATS = np.uint16
"""Text.repeats' type: an article's text is at most a few thousand words."""


def text_of(title: str, summary: str) -> Text:
    """The Text of an article with this title and summary."""
    key = fold(title)
    head = cut(key)
    words = head + stems(summary)
    counts = Counter(words)
    repeats = np.fromiter(counts.values(), REPEATS, len(counts)).tobytes()
    distinct = word_array(counts).tobytes()
    return Text(title, summary, key, " ".join(words), distinct, len(set(head)), repeats)


def distinct_words_of(
    texts: Sequence[Text],
) -> tuple[npt.NDArray[np.str_], npt.NDArray[np.int64]]:
    """The distinct words of several texts end to end, as one array of WORD, and how many of
    them are each text's."""
    words = np.frombuffer(b"".join(t.distinct for t in texts), WORD)
    lens = np.array([len(t.distinct) for t in texts], np.int64) // WORD.itemsize
    return words, lens


def word_array(words: Iterable[str]) -> npt.NDArray[np.str_]:
    """Stems as an array of WORD, for Vocabulary.lookup()."""
    return np.array(list(words), WORD)


def _letters(words: npt.NDArray[np.str_]) -> npt.NDArray[np.uint32]:
    """An array of WORD as its letters' code points, a stem a row."""
    return np.ascontiguousarray(words).view(np.uint32).reshape(-1, STEM)


@dataclass(frozen=True, slots=True)
class Vectors:
    """tf-idf vectors of several articles, each of unit length, laid end to end: vector i is
    `lens[i]` distinct word ids and their weights, after those of the vectors before it."""

    ids: npt.NDArray[np.integer[Any]]
    weights: npt.NDArray[np.floating[Any]]
    lens: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.lens)

    @property
    def starts(self) -> npt.NDArray[np.int64]:
        return np.cumsum(self.lens) - self.lens


def spans(starts: npt.NDArray[np.int64], lens: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """The positions start, start + 1, ... start + len - 1 of each span, one span after another."""
    total = int(lens.sum())
    if not total:
        return np.zeros(0, np.int64)
    return np.repeat(starts - (np.cumsum(lens) - lens), lens) + np.arange(total)


def segment_sums(
    values: npt.NDArray[np.floating[Any]], lens: npt.NDArray[np.int64]
) -> npt.NDArray[np.float64]:
    """The sum of each run of `lens[i]` values (0 for an empty run)."""
    sums = np.zeros(len(lens))
    filled = lens > 0
    if filled.any():
        # reduceat reads an empty run as its neighbour's first value: only filled runs go in.
        sums[filled] = np.add.reduceat(values, (np.cumsum(lens) - lens)[filled])
    return sums


@functools.cache
def compiled() -> ModuleType:
    """monitor.candidates, imported on first use, once: loading numba costs a process ~0.5 s
    and ~100 MB, which only placing articles needs (a pass of 304s never does, nor does the
    feed-reading worker, which works out each article's Text)."""
    from monitor import candidates

    return candidates


class Vocabulary:
    """Stems as integer ids, with how many articles use each (their rarity).

    Weighing articles is then a few array operations per batch of articles, and scoring them
    against their candidates a compiled loop over arrays (candidates.py), instead of Python
    loops (or numpy calls) per article: deciding a story took about 1 ms an article with
    dicts, 0.9 ms with numpy calls per article (bench/HISTORY.md, figure 4).
    """

    def __init__(self) -> None:
        self._words: list[str] = []
        """Word id -> word."""
        self._table = np.zeros(1 << 14, np.uint64)
        self._owners = np.full(len(self._table), -1, np.int64)
        """Every word's key (candidates.word_keys) and id in a hash table, so that lookup() is
        one compiled pass over a chunk's words, without the GIL. A dict lookup per word was
        17 % of placing articles (0.3 µs a word); sorted keys searched with numpy calls took
        0.16 s for a full cycle's 3.1 million words alone, 0.8 s on the writer's thread in
        the cycle (each call waiting for the GIL again); this takes 0.03 s and 0.23-0.32 s."""
        self.docs = np.zeros(4096, dtype=np.int64)
        """Word id -> articles using it."""
        self._written = self.docs.copy()
        """Word id -> articles using it as last written (see unwritten())."""

    def __len__(self) -> int:
        return len(self._words)

    def add(self, words: Mapping[str, int]) -> None:
        """New words (ones lookup() does not find) with their stored counts."""
        start = len(self._words)
        self._words.extend(words)
        end = len(self._words)
        if end > len(self.docs):
            grow = max(end, 2 * len(self.docs)) - len(self.docs)
            self.docs = np.concatenate([self.docs, np.zeros(grow, np.int64)])
            self._written = np.concatenate([self._written, np.zeros(grow, np.int64)])
        self.docs[start:end] = self._written[start:end] = list(words.values())
        loops = compiled()
        if 2 * end > len(self._table):  # at most half full, or probes grow long
            used = self._owners >= 0
            keys, ids = self._table[used], self._owners[used]
            size = len(self._table)
            while size < 2 * end:
                size *= 2
            self._table = np.zeros(size, np.uint64)
            self._owners = np.full(size, -1, np.int64)
            loops.place(self._table, self._owners, keys, ids)
        keys = loops.word_keys(_letters(word_array(words)))
        loops.place(self._table, self._owners, keys, np.arange(start, end))

    def lookup(self, words: npt.NDArray[np.str_]) -> npt.NDArray[np.int64]:
        """The ids of these words (an array of WORD), -1 for a word not added yet."""
        loops = compiled()
        found: npt.NDArray[np.int64] = loops.find(
            self._table, self._owners, loops.word_keys(_letters(words))
        )
        return found

    def count(self, ids: npt.NDArray[np.int64]) -> None:
        """One more article uses each of these words, once per occurrence in `ids` (the
        distinct words of one or more articles)."""
        np.add.at(self.docs, ids, 1)

    def unwritten(self) -> list[tuple[str, int]]:
        """The words counted since the last call, with how many more articles use them: for the
        caller to write (counted per word as articles come, this was 3% of the collector's
        time)."""
        changed = np.flatnonzero(self.docs != self._written).tolist()
        added = (self.docs[changed] - self._written[changed]).tolist()
        self._written[changed] = self.docs[changed]
        return [(self._words[i], n) for i, n in zip(changed, added, strict=True)]

    def vectors(
        self,
        ids: npt.NDArray[np.int64],
        counts: npt.NDArray[np.float64],
        lens: npt.NDArray[np.int64],
        totals: npt.NDArray[np.int64],
    ) -> Vectors:
        """tf-idf of articles, each given as its distinct words (`ids`) and how often each
        occurs in it (`counts`), `lens[i]` of them for article i, when `totals[i]` articles
        were stored. A word nobody has used yet counts as used once (as rare as any)."""
        tf = 1 + np.log(counts)
        total = np.repeat(np.maximum(totals, 1), lens)
        weights = tf * np.log(1 + total / np.maximum(self.docs[ids], 1))
        norms = np.sqrt(segment_sums(weights * weights, lens))
        norms[norms == 0] = 1.0
        return Vectors(ids, weights / np.repeat(norms, lens), lens)


class Near(NamedTuple):
    """An earlier article that shares an article's normalised title or scores at least
    THRESHOLD against it, as assign() weighs it."""

    story_id: int
    story_start: float
    """When its story began (first_seen of its first article), in seconds since the epoch."""
    outlet: str
    same_title: bool
    score: float


def assign(
    first_seen: float, near: Iterable[Near], aggregator_outlet: str | None = None
) -> Assignment | None:
    """The story an article first seen at `first_seen` (seconds since the epoch) joins, or
    None when it starts its own.

    `near` are its candidates within the window that share its title or score at least
    THRESHOLD, oldest first (ties go to the original); `aggregator_outlet` is the outlet an
    aggregator item names (Google News <source>).
    """
    near = list(near)
    for c in near:
        if c.same_title:
            if aggregator_outlet and c.outlet.lower() == aggregator_outlet.lower():
                return Assignment(c.story_id, f"aggregator copy of {c.outlet}")
            return Assignment(c.story_id, "same title")
    best: tuple[float, float, Near] | None = None
    for c in near:
        hours = max((first_seen - c.story_start) / 3600, 0.0)
        needed = THRESHOLD + FOLLOW_UP_PENALTY * min(hours / 12, 2)
        if c.score >= needed and (best is None or c.score - needed > best[0] - best[1]):
            best = (c.score, needed, c)
    if best is None:
        return None
    return Assignment(best[2].story_id, f"near-duplicate ({best[0]:.2f})")
