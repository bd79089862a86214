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

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import accumulate
from sys import intern

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
BLOCKING_WORDS = 10
"""Title words used to find candidates."""
PER_WORD = 15
"""Newest earlier articles taken per title word: a story's copies arrive close together."""
MAX_CANDIDATES = 40
"""Of those, the ones sharing the most title words are scored."""

_SUFFIX = re.compile(r"\s+[-|–—]\s+([^-|–—]{2,60})$")
_WORD = re.compile(r"\w+", re.UNICODE)
STOPWORDS = frozenset(
    {
        "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "has", "have", "in",
        "is", "it", "its", "new", "news", "nz", "of", "on", "or", "says", "said", "the", "to",
        "was", "were", "will", "with", "after", "over", "up", "out", "into", "about", "than",
        "this", "that",
    }
)  # fmt: skip


@dataclass(slots=True)
class Candidate:
    """An earlier article as the clusterer sees it (store_stories.py keeps these in memory and
    moves them between stories, hence mutable)."""

    id: int
    key: str
    """fold() of its title."""
    words: tuple[str, ...]
    """stems() of its title and summary."""
    outlet: str
    first_seen: datetime
    story_id: int
    story_first_seen: datetime
    vector: Vector | None = None
    """tf-idf of `words`, computed the first time it is scored."""

    def weighed(self, weigh: Callable[[Sequence[str]], Vector]) -> Vector:
        """Its vector, computed once; the words are then let go (memory holds days of these)."""
        if self.vector is None:
            self.vector = weigh(self.words)
            self.words = ()
        return self.vector


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
    if not text.isascii():
        text = unicodedata.normalize("NFKD", text)
        text = "".join(c for c in text if not unicodedata.combining(c))
    return " ".join(_WORD.findall(text.lower()))


def stems(text: str) -> list[str]:
    """The words of `text` that carry meaning, cut to STEM letters."""
    return cut(fold(text))


def cut(folded: str) -> list[str]:
    """stems() of text already fold()ed."""
    # Interned: the clusterer keeps days of articles in memory, and they share their words.
    return [intern(w[:STEM]) for w in folded.split() if len(w) > 2 and w not in STOPWORDS]


def distinct(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


@dataclass(frozen=True, slots=True)
class Text:
    """What the clusterer reads of an article. Worked out where the article is made (in the
    feed-reading worker, for feeds), so that the process deciding stories only does arithmetic."""

    title: str
    summary: str
    key: str
    """fold() of the title."""
    title_words: tuple[str, ...]
    """The title's distinct stems, the words that find candidates."""
    words: tuple[str, ...]
    """stems() of title then summary, repeats kept."""
    counts: Mapping[str, int]
    """Each distinct word of `words` and how often it occurs (its weight grows with that)."""

    def reads(self, title: str, summary: str) -> bool:
        """Whether this is the text of that title and summary."""
        return self.title == title and self.summary == summary


def text_of(title: str, summary: str) -> Text:
    """The Text of an article with this title and summary."""
    key = fold(title)
    head = cut(key)
    words = (*head, *stems(summary))
    return Text(title, summary, key, tuple(distinct(head)), words, Counter(words))


@dataclass(frozen=True, slots=True)
class Vector:
    """tf-idf of an article's words, unit length: distinct word ids and their weights."""

    ids: npt.NDArray[np.int32]
    weights: npt.NDArray[np.float64]


class Vocabulary:
    """Stems as integer ids, with how many articles use each (their rarity).

    Weighing an article and scoring it against its candidates are then a few array operations
    instead of Python loops over dicts: deciding a story took about 1 ms an article that way,
    most of it in those loops (BENCHMARKS.md, figure 4).
    """

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self._words: list[str] = []
        """Word id -> word."""
        self.docs = np.zeros(4096, dtype=np.int64)
        """Word id -> articles using it."""
        self._written = self.docs.copy()
        """Word id -> articles using it as last written (see unwritten())."""
        self._scratch = np.zeros(4096)
        """All zeros between calls: the article being scored, spread out by word id."""

    def add(self, words: Mapping[str, int]) -> None:
        """New words with their stored counts."""
        start = len(self.ids)
        self.ids.update(zip(words, range(start, start + len(words)), strict=True))
        self._words.extend(words)
        if len(self.ids) > len(self.docs):
            grow = max(len(self.ids), 2 * len(self.docs)) - len(self.docs)
            self.docs = np.concatenate([self.docs, np.zeros(grow, np.int64)])
            self._written = np.concatenate([self._written, np.zeros(grow, np.int64)])
            self._scratch = np.zeros(len(self.docs))
        self.docs[start : len(self.ids)] = self._written[start : len(self.ids)] = list(
            words.values()
        )

    def lookup(self, words: Iterable[str]) -> npt.NDArray[np.int32] | None:
        """The ids of these words, or None if one of them is new (add() it first)."""
        found = list(map(self.ids.get, words))
        return None if None in found else np.array(found, np.int32)

    def count(self, ids: npt.NDArray[np.int32]) -> None:
        """One more article uses each of these (distinct) words."""
        self.docs[ids] += 1

    def unwritten(self) -> list[tuple[str, int]]:
        """The words counted since the last call, with how many more articles use them: for the
        caller to write (counted per word as articles come, this was 3% of the collector's
        time)."""
        changed = np.flatnonzero(self.docs != self._written).tolist()
        added = (self.docs[changed] - self._written[changed]).tolist()
        self._written[changed] = self.docs[changed]
        return [(self._words[i], n) for i, n in zip(changed, added, strict=True)]

    def vector(self, ids: npt.NDArray[np.int32], counts: Collection[int], total: int) -> Vector:
        """tf-idf of an article's distinct words (`ids`) and how often each occurs in it
        (`counts`), `total` articles in all; a word nobody has used yet counts as used once
        (as rare as any)."""
        tf = 1 + np.log(np.fromiter(counts, np.float64, len(counts)))
        weights = tf * np.log(1 + max(total, 1) / np.maximum(self.docs[ids], 1))
        return Vector(ids, weights / (math.sqrt(weights @ weights) or 1.0))

    def similarities(self, mine: Vector, others: Sequence[Vector]) -> npt.NDArray[np.float64]:
        """Cosine of `mine` with each of `others`, in one pass over all their words."""
        scores = np.zeros(len(others))
        scored = [i for i, other in enumerate(others) if len(other.ids)]
        if not scored:
            return scores
        ids = np.concatenate([others[i].ids for i in scored])
        weights = np.concatenate([others[i].weights for i in scored])
        starts = [0, *accumulate(len(others[i].ids) for i in scored[:-1])]
        scratch = self._scratch
        scratch[mine.ids] = mine.weights
        try:
            products = scratch[ids] * weights
        finally:
            scratch[mine.ids] = 0.0
        scores[scored] = np.add.reduceat(products, starts)
        return scores


def assign(
    key: str,
    first_seen: datetime,
    candidates: Sequence[Candidate],
    similarities: Callable[[Sequence[Candidate]], npt.NDArray[np.float64]],
    aggregator_outlet: str | None = None,
) -> Assignment | None:
    """The story an article joins, or None when it starts its own.

    `key` is fold() of its title; `candidates` are earlier articles, and `similarities` gives
    the article's cosine with each of those it is passed (Vocabulary.similarities);
    `aggregator_outlet` is the outlet an aggregator item names (Google News <source>).
    """
    near = sorted(
        (c for c in candidates if abs(c.first_seen - first_seen) <= WINDOW),
        key=lambda c: (c.first_seen, c.id),  # oldest first: ties go to the original
    )
    for c in near:
        if c.key == key:
            if aggregator_outlet and c.outlet.lower() == aggregator_outlet.lower():
                return Assignment(c.story_id, f"aggregator copy of {c.outlet}")
            return Assignment(c.story_id, "same title")
    scores = similarities(near)
    best: tuple[float, float, Candidate] | None = None
    # Only those over the lowest bar, whatever the story's age: a few of the candidates.
    for i in np.flatnonzero(scores >= THRESHOLD).tolist():
        c, score = near[i], float(scores[i])
        hours = max((first_seen - c.story_first_seen).total_seconds() / 3600, 0.0)
        needed = THRESHOLD + FOLLOW_UP_PENALTY * min(hours / 12, 2)
        if score >= needed and (best is None or score - needed > best[0] - best[1]):
            best = (score, needed, c)
    if best is None:
        return None
    return Assignment(best[2].story_id, f"near-duplicate ({best[0]:.2f})")
