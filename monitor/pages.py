"""Reading article pages politely: robots.txt, one page at a time, a budget per poll.

Used for sitemap entries that carry no title, and for `type: page` sources (a section page whose
article links are found by a CSS selector or by how they look). Each page is read once (never
again once its article is stored), through the same Fetcher as feeds (limits, SSRF guard), and
turned into a feed entry from its metadata (article.py).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Any
from urllib.parse import urlsplit
from urllib.robotparser import RobotFileParser
from zoneinfo import ZoneInfo

import lxml.etree
import lxml.html

from monitor.article import extract
from monitor.config import Source
from monitor.dates import iso
from monitor.entries import RawEntry
from monitor.errors import FetchError, HTTPStatusError
from monitor.fetch import Fetcher, Limits

log = logging.getLogger(__name__)

ROBOTS_TTL = 24 * 3600.0


class Robots:
    """robots.txt per host, read once a day; a missing file allows everything."""

    def __init__(self, fetcher: Fetcher) -> None:
        self._fetcher = fetcher
        self._agent = fetcher.user_agent
        # Kept on the Fetcher, which lives as long as the collector: read once per host a day.
        self._rules: dict[str, tuple[float, RobotFileParser | None]] = fetcher.robots_cache

    async def allows(self, url: str, limits: Limits) -> bool:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        cached = self._rules.get(origin)
        if cached is None or time.monotonic() - cached[0] > ROBOTS_TTL:
            cached = (time.monotonic(), await self._read(origin, limits))
            self._rules[origin] = cached
        rules = cached[1]
        return rules is None or rules.can_fetch(self._agent, url)

    async def _read(self, origin: str, limits: Limits) -> RobotFileParser | None:
        try:
            response = await self._fetcher.get(
                f"{origin}/robots.txt", limits=limits, accept="text/plain"
            )
        except HTTPStatusError as e:
            if 400 <= e.status < 500:
                return None  # no robots.txt: everything is allowed
            raise
        rules = RobotFileParser()
        rules.parse(response.body.decode("utf-8", "replace").splitlines())
        return rules


async def read_pages(
    urls: list[str], source: Source, fetcher: Fetcher, robots: Robots, limits: Limits
) -> tuple[list[RawEntry], list[str]]:
    """Entries for up to source.max_articles pages, and a warning for each page not read."""
    entries: list[RawEntry] = []
    warnings: list[str] = []
    zone = ZoneInfo(source.timezone)
    if len(urls) > source.max_articles:
        warnings.append(
            f"{len(urls)} new article pages; read {source.max_articles} this poll (max_articles)"
        )
    for url in urls[: source.max_articles]:
        try:
            if not await robots.allows(url, limits):
                warnings.append(f"{url}: robots.txt does not allow us to read it")
                continue
            # One page at a time per host, across sources, with the pause held inside the lock.
            async with fetcher.page_locks[urlsplit(url).netloc.lower()]:
                page = await fetcher.get(url, limits=limits, accept="text/html,*/*;q=0.5")
                if source.delay:
                    await asyncio.sleep(source.delay)
        except FetchError as e:
            warnings.append(f"{url}: {e}")
            continue
        meta = await asyncio.to_thread(
            extract, page.body, page.url, zone, with_text=source.fetch_text
        )
        if not meta.title:
            warnings.append(f"{url}: the page has no title; it may not be an article")
            continue
        entries.append(
            RawEntry(
                guid=None,
                link=meta.canonical_url or page.url,
                title=meta.title,
                title_is_html=False,
                summary=meta.text or meta.description or "",
                summary_is_html=False,
                date_text=iso(meta.published) if meta.published else None,
                date_parsed=meta.published,
                outlet=None,
            )
        )
    return entries, warnings


_ARTICLE_PATH = re.compile(r"/\d{4}/\d{1,2}/\d{1,2}/|/\d{5,}(?:/|$|\.)|[a-z0-9]+(?:-[a-z0-9]+){2,}")
_NOT_ARTICLES = re.compile(
    r"/(tag|tags|topic|topics|category|categories|section|author|authors|search|login|"
    r"subscribe|about|contact|privacy|terms|video|videos|podcasts?)(/|$)",
    re.IGNORECASE,
)
_CHROME = {"nav", "header", "footer", "aside"}


def article_links(html: bytes, base: str, selector: str | None = None) -> list[str]:
    """Links to articles on a section page: by CSS selector, or found by their look.

    Without a selector: same-site links whose path looks like an article (a slug of three or
    more words, a long numeric id, or a date), outside navigation, header, footer and asides.
    """
    try:
        root = lxml.html.fromstring(html, base_url=base)
    except (ValueError, lxml.etree.ParserError):
        return []
    root.make_links_absolute(base)
    if selector:
        anchors = [a for a in root.cssselect(selector) if a.tag == "a"]
    else:
        anchors = [a for a in root.iter("a") if not _in_chrome(a)]
    site = urlsplit(base).hostname
    links: dict[str, None] = {}
    for anchor in anchors:
        href = (anchor.get("href") or "").split("#")[0]
        parts = urlsplit(href)
        if parts.scheme not in ("http", "https") or parts.hostname != site:
            continue
        if selector or (_ARTICLE_PATH.search(parts.path) and not _NOT_ARTICLES.search(parts.path)):
            links[href] = None
    return list(links)


def _in_chrome(element: Any) -> bool:
    for ancestor in element.iterancestors():
        if ancestor.tag in _CHROME or (ancestor.get("role") or "") == "navigation":
            return True
    return False
