"""What a feed says, before normalising: the parse stage's output, shared by both readers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class RawEntry:
    """One feed entry as the feed wrote it: text may still be HTML, the date is unparsed."""

    guid: str | None
    link: str | None
    title: str
    title_is_html: bool
    summary: str
    summary_is_html: bool
    date_text: str | None
    """The published (or else updated) date exactly as written."""
    date_parsed: datetime | None
    """feedparser's reading of date_text in UTC; wrong for zones it does not know (NZST)."""
    outlet: str | None
    """The publisher named by an aggregator's <source> element."""


@dataclass(frozen=True)
class ParsedFeed:
    title: str | None
    entries: tuple[RawEntry, ...]
    warnings: tuple[str, ...]
