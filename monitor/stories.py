"""Which story an article belongs to: one event, carried by many outlets and aggregators.

Matching runs cheapest first and records why an article joined a story:
  1. the same normalised title within the time window ("same title"), or an aggregator item
     naming the outlet and title of an article we have ("aggregator copy of <outlet>");
  2. a near-duplicate: candidates are found by blocking on the article's title words, the
     newest few per word (store_stories.py keeps the last WINDOW of articles in memory, so the
     cost of one article does not grow with the archive), then scored by tf-idf cosine on title
     plus summary, the bar rising as the story ages so that follow-ups start stories of their own.
Everything here is pure: store_stories.py supplies the candidates and writes the result.

Measured on tests/fixtures/stories/labelled.tsv (300 articles, 84 stories, with follow-ups and
same-day look-alikes as hard negatives): see README "Stories" for the figures and the threshold.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from sys import intern

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
    vector: Mapping[str, float] | None = None
    """tf-idf of `words`, computed the first time it is scored."""

    def weighed(self, weigh: Callable[[Sequence[str]], Mapping[str, float]]) -> Mapping[str, float]:
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


def vector(words: Iterable[str], docs: Mapping[str, int], total: int) -> dict[str, float]:
    """tf-idf of an article's words, unit length. `docs`: word -> articles using it, of `total`;
    a word nobody has used yet counts as used once (as rare as any)."""
    counts: dict[str, int] = {}
    for word in words:
        counts[word] = counts.get(word, 0) + 1
    log, total = math.log, max(total, 1)
    weights = {
        w: (1 + log(n) if n > 1 else 1) * log(1 + total / (docs.get(w) or 1))
        for w, n in counts.items()
    }
    norm = math.sqrt(sum([x * x for x in weights.values()])) or 1.0
    return {w: x / norm for w, x in weights.items()}


def cosine(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    # The shared words are few: intersect the keys (in C) rather than look up every word.
    return sum([a[w] * b[w] for w in a.keys() & b.keys()])


def assign(
    key: str,
    mine: Mapping[str, float],
    first_seen: datetime,
    candidates: Sequence[Candidate],
    weigh: Callable[[Sequence[str]], Mapping[str, float]],
    aggregator_outlet: str | None = None,
) -> Assignment | None:
    """The story an article joins, or None when it starts its own.

    `key` is fold() of its title and `mine` the vector() of its words; `candidates` are
    earlier articles (their vectors are filled in by `weigh`, vector() with the current counts,
    when missing);
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
    best: tuple[float, float, Candidate] | None = None
    for c in near:
        score = cosine(mine, c.weighed(weigh))
        if score < THRESHOLD:
            continue  # below the lowest bar, whatever the story's age
        hours = max((first_seen - c.story_first_seen).total_seconds() / 3600, 0.0)
        needed = THRESHOLD + FOLLOW_UP_PENALTY * min(hours / 12, 2)
        if score >= needed and (best is None or score - needed > best[0] - best[1]):
            best = (score, needed, c)
    if best is None:
        return None
    return Assignment(best[2].story_id, f"near-duplicate ({best[0]:.2f})")
