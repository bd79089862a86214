"""News sitemaps -> feed entries: the `type: sitemap` source (issue 4).

Reads a Google News sitemap (`<news:news>` with title and publication date), a plain sitemap
(`<lastmod>`), or a sitemap index (whose children are followed by the collector when they can
hold recent items); gzip-compressed bodies are accepted. Only entries newer than the source's
look-back window count; an entry with no title (a plain sitemap) is listed in `untitled`, and
the collector reads that article's page (pages.py) for its metadata.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import lxml.etree as etree

from monitor.dates import to_utc
from monitor.entries import ParsedFeed, RawEntry
from monitor.errors import ParseError

SM = "{http://www.sitemaps.org/schemas/sitemap/0.9}"
NEWS = "{http://www.google.com/schemas/sitemap-news/0.9}"
MAX_UNPACKED = 50 * 1024 * 1024
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, recover=True)


@dataclass(frozen=True)
class Child:
    url: str
    lastmod: datetime | None


@dataclass(frozen=True)
class Sitemap:
    feed: ParsedFeed
    children: tuple[Child, ...]
    """For a sitemap index: the sitemaps it lists."""
    untitled: tuple[str, ...] = ()
    """Recent entries with no title (a plain sitemap): their pages must be read."""


def unpack(body: bytes) -> bytes:
    """A gzip-compressed sitemap (by its magic bytes, whatever the headers say), bounded."""
    if body[:2] != b"\x1f\x8b":
        return body
    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = decoder.decompress(body, MAX_UNPACKED + 1)
    except zlib.error as e:
        raise ParseError(f"the gzip-compressed sitemap is corrupt: {e}") from None
    if len(out) > MAX_UNPACKED:
        raise ParseError(f"the sitemap unpacks to more than {MAX_UNPACKED:,} bytes")
    return out


def parse_sitemap(body: bytes, zone: ZoneInfo, now: datetime, lookback: timedelta) -> Sitemap:
    try:
        root = etree.fromstring(unpack(body), _PARSER)
    except (etree.XMLSyntaxError, ValueError) as e:
        raise ParseError(f"not a sitemap: {e}") from None
    if root is None or root.tag not in (f"{SM}urlset", f"{SM}sitemapindex"):
        raise ParseError("not a sitemap: no <urlset> or <sitemapindex>")
    since = now - lookback
    if root.tag == f"{SM}sitemapindex":
        children = tuple(
            Child(loc, _time(_text(s, f"{SM}lastmod"), zone))
            for s in root.iter(f"{SM}sitemap")
            if (loc := _text(s, f"{SM}loc"))
        )
        return Sitemap(ParsedFeed(None, (), ()), children)
    entries: list[RawEntry] = []
    untitled: list[str] = []
    for url in root.iter(f"{SM}url"):
        loc = _text(url, f"{SM}loc")
        news = url.find(f"{NEWS}news")
        date_text = _text(news, f"{NEWS}publication_date") if news is not None else None
        date_text = date_text or _text(url, f"{SM}lastmod")
        when = _time(date_text, zone)
        if not loc or when is None or when < since:
            continue
        title = _text(news, f"{NEWS}title") if news is not None else None
        if not title:
            untitled.append(loc)
            continue
        outlet = _text(news.find(f"{NEWS}publication"), f"{NEWS}name") if news is not None else None
        entries.append(RawEntry(None, loc, title, False, "", False, date_text, when, outlet))
    return Sitemap(ParsedFeed(None, tuple(entries), ()), (), tuple(untitled))


def recent_children(
    sitemap: Sitemap, now: datetime, lookback: timedelta, limit: int = 3
) -> list[str]:
    """The children of an index that can hold recent items: newest first, undated last."""
    since = now - lookback
    dated = sorted(
        (c for c in sitemap.children if c.lastmod is not None and c.lastmod >= since),
        key=lambda c: c.lastmod or now,
        reverse=True,
    )
    undated = [c for c in sitemap.children if c.lastmod is None]
    return [c.url for c in [*dated, *undated][:limit]]


def _text(element: etree._Element | None, tag: str) -> str | None:
    if element is None:
        return None
    found = element.find(tag)
    return found.text.strip() if found is not None and found.text and found.text.strip() else None


def _time(text: str | None, zone: ZoneInfo) -> datetime | None:
    return to_utc(text, None, zone) if text else None
