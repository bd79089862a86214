"""A site's home page -> the feeds and sitemaps it offers, ready to paste into feeds.yaml.

Three places are looked at: the page's <link rel="alternate"> feeds, common feed paths (a
WordPress /feed/, /rss.xml ...) kept only when they really parse as a feed with entries, and the
`Sitemap:` lines of robots.txt.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import lxml.html
import yaml

from monitor.errors import FetchError, ParseError
from monitor.fetch import Fetcher, Limits
from monitor.parse import parse_feed

FEED_TYPES = ("application/rss+xml", "application/atom+xml", "application/rdf+xml")
COMMON_PATHS = ("/feed/", "/feed", "/rss", "/rss.xml", "/atom.xml", "/index.xml", "/feeds/all")


@dataclass(frozen=True)
class Found:
    kind: str
    """'feed' or 'sitemap'."""
    url: str
    title: str | None
    how: str
    """Where it was found, for the person reading the list."""


async def discover(fetcher: Fetcher, url: str, limits: Limits) -> list[Found]:
    """Feeds and sitemaps offered by the site at `url`. Raises FetchError if the page fails."""
    page = await fetcher.get(url, limits=limits, accept="text/html,*/*;q=0.5")
    found = _alternate_links(page.body, page.url)
    known = {f.url for f in found}
    root = f"{urlsplit(page.url).scheme}://{urlsplit(page.url).netloc}"
    candidates = [urljoin(root, path) for path in COMMON_PATHS]
    checked = await asyncio.gather(
        *(
            _feed_at(fetcher, candidate, limits)
            for candidate in candidates
            if candidate not in known
        )
    )
    for item in checked:
        if item is not None and item.url not in known:
            found.append(item)
            known.add(item.url)
    found += await _robots_sitemaps(fetcher, root, limits)
    return found


def _alternate_links(body: bytes, base: str) -> list[Found]:
    try:
        root = lxml.html.fromstring(body)
    except (ValueError, lxml.etree.ParserError):
        return []
    found = []
    for link in root.iter("link"):
        rel = (link.get("rel") or "").lower().split()
        kind = (link.get("type") or "").lower().split(";")[0].strip()
        href = link.get("href")
        if "alternate" in rel and kind in FEED_TYPES and href:
            found.append(
                Found("feed", urljoin(base, href), link.get("title"), '<link rel="alternate">')
            )
    return found


async def _feed_at(fetcher: Fetcher, url: str, limits: Limits) -> Found | None:
    try:
        response = await fetcher.get(url, limits=limits)
        feed = parse_feed(response.body, response.url, response.headers)
    except (FetchError, ParseError):
        return None
    if not feed.entries:
        return None
    return Found("feed", response.url, feed.title, f"common path ({len(feed.entries)} entries)")


async def _robots_sitemaps(fetcher: Fetcher, root: str, limits: Limits) -> list[Found]:
    try:
        response = await fetcher.get(
            urljoin(root, "/robots.txt"), limits=limits, accept="text/plain"
        )
    except FetchError:
        return []
    found = []
    for line in response.body.decode("utf-8", "replace").splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() == "sitemap" and value.strip():
            found.append(Found("sitemap", urljoin(root, value.strip()), None, "robots.txt"))
    return found


def as_yaml(found: list[Found], site: str) -> str:
    """The feeds as `sources:` entries for feeds.yaml (sitemaps as comments until supported)."""
    host = urlsplit(site).hostname or site
    entries = [
        {"name": f.title or f"{host} {n + 1}", "url": f.url}
        for n, f in enumerate(f for f in found if f.kind == "feed")
    ]
    text = (
        yaml.safe_dump({"sources": entries}, sort_keys=False, allow_unicode=True) if entries else ""
    )
    sitemaps = [
        f"# sitemap (type: sitemap is not supported yet): {f.url}"
        for f in found
        if f.kind == "sitemap"
    ]
    return text + "\n".join(sitemaps) + ("\n" if sitemaps else "")
