"""A news article page -> its metadata: title, description, canonical URL, times, authors, text.

The first step of collecting from news sites without usable feeds (issue 4). Sources, in order
of trust: the page's JSON-LD (schema.org NewsArticle and kin), OpenGraph and article:* meta
tags, then the page itself: <title> without the site's suffix, htmldate for a publication date
nobody declared, trafilatura for the main text. Times without a zone are read in the outlet's
zone (Pacific/Auckland by default) and returned in UTC.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import lxml.html

from monitor.dates import to_utc
from monitor.normalise import clean_text

ARTICLE_TYPES = {
    "newsarticle", "article", "reportagenewsarticle", "analysisnewsarticle", "blogposting",
    "opinionnewsarticle", "backgroundnewsarticle", "liveblogposting", "webpage", "report",
}  # fmt: skip
_SEPARATORS = (" | ", " - ", " – ", " — ", " :: ")
_URL = re.compile(r"^https?://", re.IGNORECASE)


@dataclass(frozen=True)
class ArticleMeta:
    title: str | None
    description: str | None
    canonical_url: str | None
    published: datetime | None
    modified: datetime | None
    authors: tuple[str, ...]
    section: str | None
    site: str | None
    text: str | None = None


def extract(
    html: str | bytes, url: str, zone: ZoneInfo | None = None, *, with_text: bool = False
) -> ArticleMeta:
    zone = zone or ZoneInfo("Pacific/Auckland")
    root = lxml.html.fromstring(html, base_url=url)
    meta = _meta(root)
    ld = next(_ld_articles(root), {})
    site = _first(meta.get("og:site_name"), _name(ld.get("publisher")))
    title = _first(
        _strip_site(meta.get("og:title"), site),
        clean_text(str(ld.get("headline") or "")) or None,
        _strip_site(_text(root.find(".//title")), site),
        meta.get("twitter:title"),
    )
    published_text = _first(
        _string(ld.get("datePublished")),
        meta.get("article:published_time"),
        meta.get("og:article:published_time"),
        meta.get("date"),
        meta.get("pubdate"),
    )
    published = _time(published_text, zone)
    if published is None:
        from htmldate import find_date  # only when the page declares no date: slow to import

        found = find_date(html if isinstance(html, str) else html.decode("utf-8", "replace"),
                          original_date=True, outputformat="%Y-%m-%dT%H:%M:%S")  # fmt: skip
        published = _time(found, zone)
    text = None
    if with_text:
        import trafilatura  # only when asked: it is the heaviest part

        text = trafilatura.extract(html, url=url, include_comments=False) or None
    return ArticleMeta(
        title=title,
        description=_first(
            meta.get("og:description"), meta.get("description"), _string(ld.get("description"))
        ),
        canonical_url=_first(_canonical(root), meta.get("og:url")),
        published=published,
        modified=_time(
            _first(_string(ld.get("dateModified")), meta.get("article:modified_time")), zone
        ),
        authors=_authors(ld, meta),
        section=_first(_string(ld.get("articleSection")), meta.get("article:section")),
        site=site,
        text=text,
    )


def _meta(root: Any) -> dict[str, str]:
    found: dict[str, str] = {}
    for element in root.iter("meta"):
        key = element.get("property") or element.get("name") or element.get("itemprop") or ""
        value = element.get("content")
        if key and value and value.strip():
            found.setdefault(key.strip().lower(), clean_text(value))
    return found


def _ld_articles(root: Any) -> Iterator[dict[str, Any]]:
    for script in root.iter("script"):
        if (script.get("type") or "").lower() != "application/ld+json" or not script.text:
            continue
        try:
            data = json.loads(script.text)
        except ValueError:
            continue
        for item in _flatten(data):
            kinds = item.get("@type")
            kinds = kinds if isinstance(kinds, list) else [kinds]
            if any(str(k).lower() in ARTICLE_TYPES for k in kinds) and item.get("headline"):
                yield item


def _flatten(data: Any) -> Iterator[dict[str, Any]]:
    if isinstance(data, list):
        for item in data:
            yield from _flatten(item)
    elif isinstance(data, dict):
        yield data
        if "@graph" in data:
            yield from _flatten(data["@graph"])


def _authors(ld: dict[str, Any], meta: dict[str, str]) -> tuple[str, ...]:
    people = ld.get("author") or ld.get("creator")
    names = [n for n in (_name(p) for p in (people if isinstance(people, list) else [people])) if n]
    if not names:
        for key in ("author", "article:author", "byl", "dc.creator", "sailthru.author"):
            value = meta.get(key)
            if value and not _URL.match(value):
                names = [re.sub(r"^by\s+", "", value, flags=re.IGNORECASE)]
                break
    return tuple(dict.fromkeys(clean_text(n) for n in names if clean_text(n)))


def _name(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("name")
    if isinstance(value, str) and value.strip() and not _URL.match(value.strip()):
        return value.strip()
    return None


def _canonical(root: Any) -> str | None:
    for link in root.iter("link"):
        if "canonical" in (link.get("rel") or "").lower().split() and link.get("href"):
            return str(link.get("href")).strip()
    return None


def _strip_site(title: str | None, site: str | None) -> str | None:
    """'Headline | The Site' -> 'Headline' when the last part is the site's name."""
    if not title:
        return None
    for separator in _SEPARATORS:
        if separator in title:
            head, _, tail = title.rpartition(separator)
            if head and (site is None or tail.strip().lower() in site.lower()
                         or site.lower() in tail.strip().lower()):  # fmt: skip
                return head.strip()
    return title.strip()


def _text(element: Any) -> str | None:
    return clean_text(element.text_content()) if element is not None else None


def _string(value: Any) -> str | None:
    if isinstance(value, list):
        value = value[0] if value else None
    return clean_text(str(value)) if value else None


def _first(*values: str | None) -> str | None:
    return next((v for v in values if v), None)


def _time(text: str | None, zone: ZoneInfo) -> datetime | None:
    if not text:
        return None
    value = to_utc(text, None, zone)
    return value.astimezone(UTC) if value else None
