"""A feed's body -> its items: parse, normalise, tag. What the feed-reading worker runs.

Apart from the collector's other modules (fetching, writing, sqlite-utils, aiohttp) so that the
worker imports only what reading needs: it starts with a pass's first changed feed, and every
article of the pass waits for its first answer (importing monitor.collect took 0.27 s, this
0.15 s).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from monitor.config import Source
from monitor.entries import ParsedFeed
from monitor.normalise import Item, normalise_feed
from monitor.parse import parse_feed
from monitor.topics import matcher_for, tag


@dataclass(frozen=True)
class Read:
    """What a poll found in a feed (or sitemap, or section page)."""

    items: list[Item]
    """Normalised and tagged with their topics."""
    warnings: tuple[str, ...]
    filtered: int
    """Items dropped because the source requires a topic and they matched none."""


def read_feed(
    body: bytes,
    url: str,
    headers: dict[str, str],
    source: Source,
    started: datetime,
    topics: Mapping[str, str],
) -> Read:
    """A feed's body -> its items (a job for Workers: pure, picklable in and out)."""
    feed = parse_feed(body, url, headers, source.max_items)
    return items_of(feed, url, source, started, topics)


def items_of(
    feed: ParsedFeed, url: str, source: Source, started: datetime, topics: Mapping[str, str]
) -> Read:
    """A parsed feed's items, tagged, with its warnings and one for each entry skipped."""
    items, skipped = normalise_feed(feed, url, source, started)
    kept, filtered = tag(items, matcher_for(topics), source)
    return Read(kept, feed.warnings + tuple(skipped), filtered)
