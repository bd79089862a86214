"""Response bytes -> feed entries (RSS 0.9x/1.0/2.0, Atom 0.3/1.0): fast when it can be, forgiving
when it must be.

A well-formed feed is read by xmlfeed.py (lxml, about 80x faster); everything else goes to
feedparser, which repairs what can be repaired. feedparser gets the body and the response headers,
never a URL, so it cannot fetch on its own and reads the encoding from Content-Type and the base for
relative links from Content-Location (the same approach as lemon24/reader). One bad entry becomes a
warning, not a failed feed; a body that yields no entries at all is a ParseError.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import feedparser

from monitor import xmlfeed
from monitor.config import DEFAULT_MAX_ITEMS
from monitor.entries import ParsedFeed, RawEntry
from monitor.errors import ParseError

FEEDPARSER_MAX_BYTES = 2 * 1024 * 1024
"""feedparser's repairing parser needs ~40 s for 10 MB: past this size a broken feed is refused."""

_HTML_START = (b"<!doctype html", b"<html")


def parse_feed(
    body: bytes, url: str, headers: Mapping[str, str], max_items: int = DEFAULT_MAX_ITEMS
) -> ParsedFeed:
    """The feed's entries (at most max_items, in feed order) and any warnings."""
    if not body.strip():
        raise ParseError("the response body is empty")
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    fast = xmlfeed.read(body, url, content_type, max_items)
    if fast is not None:
        return fast
    if len(body) > FEEDPARSER_MAX_BYTES:
        raise ParseError(
            f"not well-formed XML and {len(body):,} bytes: too large to repair "
            f"(the limit for broken feeds is {FEEDPARSER_MAX_BYTES:,})"
        )
    return _feedparser(body, url, headers, max_items)


def _feedparser(body: bytes, url: str, headers: Mapping[str, str], max_items: int) -> ParsedFeed:
    response_headers = {k.lower(): v for k, v in headers.items()}
    response_headers["content-location"] = url
    # Without a Content-Type feedparser flags every feed as bozo; XML rules are the right default.
    response_headers.setdefault("content-type", "application/xml")
    result = feedparser.parse(
        body,
        response_headers=response_headers,
        # Explicit because we rely on both: links resolved against the feed, scripts removed.
        resolve_relative_uris=True,
        sanitize_html=True,
    )
    warnings: list[str] = []
    entries: list[RawEntry] = []
    if len(result.entries) > max_items:
        warnings.append(xmlfeed.too_many(len(result.entries), max_items))
    for index, entry in enumerate(result.entries[:max_items]):
        try:
            entries.append(_entry(entry))
        except Exception as e:  # one bad entry never sinks the others
            warnings.append(f"entry {index + 1} skipped: {type(e).__name__}: {e}")
    if result.bozo:
        problem = _describe(result.get("bozo_exception"))
        if not entries:
            if not result.version and body.lstrip()[:15].lower().startswith(_HTML_START):
                raise ParseError(
                    "got an HTML page, not a feed: the address is a web page; "
                    "find the feed's own address (<link rel=alternate> in the page)"
                )
            raise ParseError(f"not a usable feed: {problem}")
        warnings.append(f"ill-formed feed ({problem}); {len(entries)} entries recovered")
    elif not result.version and not entries:
        raise ParseError("not a feed: no RSS or Atom elements found")
    title = result.feed.get("title") or None
    return ParsedFeed(title, tuple(entries), tuple(warnings))


def _entry(entry: Any) -> RawEntry:
    title_detail = entry.get("title_detail") or {}
    summary, summary_type = _summary(entry)
    date_text = entry.get("published") or entry.get("updated")
    parsed = entry.get("published_parsed") or entry.get("updated_parsed")
    source = entry.get("source") or {}
    link = entry.get("feedburner_origlink") or entry.get("link")
    return RawEntry(
        guid=(entry.get("id") or "").strip() or None,
        link=link.strip() if link else None,
        title=entry.get("title") or "",
        title_is_html="html" in title_detail.get("type", "text/plain"),
        summary=summary,
        summary_is_html="html" in summary_type,
        date_text=date_text,
        date_parsed=_from_struct(parsed),
        outlet=(source.get("title") or "").strip() or None,
    )


def _summary(entry: Any) -> tuple[str, str]:
    detail = entry.get("summary_detail")
    if detail and detail.get("value"):
        return detail["value"], detail.get("type", "text/html")
    for content in entry.get("content") or ():
        if content.get("value"):
            return content["value"], content.get("type", "text/html")
    return "", "text/plain"


def _from_struct(value: time.struct_time | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime(*value[:6], tzinfo=UTC)
    except (ValueError, OverflowError):
        return None


def _describe(exc: object) -> str:
    if exc is None:
        return "unknown problem"
    text = str(exc) or type(exc).__name__
    return text if len(text) < 200 else text[:200] + "..."
