"""Canonical article URLs and aggregator links.

One article, one canonical URL: the dedup key of the `articles` table. courlan (the URL library
behind trafilatura) does the general rules: lower-cased host, default port dropped, path
normalised, query sorted, tracking parameters (utm_*, fbclid, gclid, mc_*, ref...) removed. We add
what a news archive needs on top: no fragment, no trailing-slash variants, and a few trackers
courlan does not know.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Callable
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

EXTRA_TRACKERS = frozenset({"_ga", "_gl", "cmpid", "ito", "ocid", "smid", "taid", "at_medium"})
AGGREGATOR_HOSTS = frozenset(
    {"news.google.com", "feedproxy.google.com", "feeds.feedburner.com", "www.bing.com"}
)


@functools.cache
def _courlan() -> Callable[..., str]:
    """courlan's normalize_url, imported on first use, once: courlan (with urllib3 and tld) is a
    tenth of a second of every command's start, and only making articles needs it (a pass of
    304s never does). An import statement in canonical_url would cost 0.3 µs every URL."""
    from courlan import normalize_url

    return normalize_url


def absolute(link: str, base: str) -> str:
    """urljoin(base, link), without parsing a link that is already what it would give: an
    http(s) URL with nothing urllib would strip or drop (control characters, whitespace, an
    empty query or fragment). Most feed links are; urljoin parses both, ~5 µs a link."""
    if (
        link.startswith(("http://", "https://"))
        and link.isprintable()
        and not link.endswith(("?", "#"))
        and "?#" not in link
    ):
        return link
    return urljoin(base, link)


_CANONICAL = re.compile(
    r"https?://[a-z0-9-]+(?:\.[a-z0-9-]+)*(?:/[\w~%!=:,-][\w.~%!=:,-]*)+", re.ASCII
)
"""URLs that are their own canonical form: lower-case host without port, user or punycode;
path segments of characters courlan does not quote, none empty or starting with a dot, no
trailing slash; no query or fragment. Most article links are; courlan takes ~9 µs a link."""


def canonical_url(url: str, base: str | None = None) -> str:
    """The form of `url` used as an article's identity. `base` resolves a relative link."""
    url = url.strip()
    if base:
        url = absolute(url, base)
    if _CANONICAL.fullmatch(url) and "xn--" not in url:
        return url
    return _canonical(url)


def _canonical(url: str) -> str:
    # courlan refuses some odd ports and hosts; the rules below still apply to those.
    with contextlib.suppress(ValueError):
        url = _courlan()(url, strict=False, trailing_slash=False)
    parts = urlsplit(url)
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, v) for k, v in pairs if k not in EXTRA_TRACKERS])
    path = parts.path.rstrip("/") if len(parts.path) > 1 else parts.path
    if not path and not query:
        path = "/"
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), path, query, ""))


def _names_an_aggregator(url: str) -> bool:
    """Whether an aggregator's host name appears in `url` at all: a host is part of its URL,
    and this test is a tenth of the cost of parsing it (most links are not aggregators')."""
    lowered = url.lower()
    return any(name in lowered for name in AGGREGATOR_HOSTS)


def is_aggregator(url: str) -> bool:
    return _names_an_aggregator(url) and urlsplit(url).hostname in AGGREGATOR_HOSTS


def aggregator_target(url: str) -> str | None:
    """The publisher's URL when an aggregator link carries it in its query (Google News `url=`)."""
    if not _names_an_aggregator(url):
        return None
    parts = urlsplit(url)
    if parts.hostname not in AGGREGATOR_HOSTS:
        return None
    for key, value in parse_qsl(parts.query):
        if key in ("url", "u") and urlsplit(value).scheme in ("http", "https"):
            return value
    return None


def host(url: str) -> str:
    hostname = urlsplit(url).hostname or ""
    return hostname.removeprefix("www.")
