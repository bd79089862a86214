"""The only module that speaks HTTP: shared client, limits, conditional GET, Retry-After.

Every failure leaves here as a FetchError subclass with a sentence a person can act on; nothing
from aiohttp or the socket layer escapes.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import logging
import re
import zlib
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
from yarl import URL

from monitor import __version__
from monitor.errors import (
    BlockedAddress,
    BotChallenge,
    FetchError,
    FetchTimeout,
    HTTPStatusError,
    RedirectError,
    RetryLater,
    TooLarge,
    Unreachable,
)
from monitor.netguard import REFUSED, Pool, refused, trusted_context

log = logging.getLogger(__name__)

MAX_REDIRECTS = 5
RETRY_AFTER_CAP = timedelta(hours=24)
"""A server may ask us to wait; we do not let a hostile one switch a source off for longer."""
RETRY_STATUSES = (429, 503)
REDIRECT_STATUSES = (301, 302, 303, 307, 308)


@dataclass(frozen=True)
class Limits:
    total: float = 30.0
    """Deadline for the whole fetch, connection to last byte: a trickling server is cut here."""
    connect: float = 10.0
    read: float = 15.0
    max_bytes: int = 10 * 1024 * 1024
    allow_private: bool = False
    """Connect to loopback/private addresses too (tests; an intranet source)."""


@dataclass(frozen=True)
class Response:
    url: str
    """Where the body came from, after redirects: the base for relative links."""
    status: int
    headers: Mapping[str, str]
    """Names lower-cased; a header sent more than once, its values joined with ", "."""
    body: bytes
    moved_to: str | None = None
    """Where the last permanent redirect on the way (301, 308) led: the address to use now."""

    @property
    def not_modified(self) -> bool:
        return self.status == 304

    @property
    def etag(self) -> str | None:
        return self.headers.get("etag")

    @property
    def last_modified(self) -> str | None:
        return self.headers.get("last-modified")


class Fetcher:
    """Two aiohttp pools (public addresses; private ones too), with bounded concurrency overall
    and per host."""

    def __init__(
        self,
        *,
        contact: str,
        concurrency: int = 16,
        per_host: int = 2,
        pool: Pool | None = None,
    ) -> None:
        self.user_agent = f"coverage-monitor/{__version__} (+{contact})"
        self._headers = {"User-Agent": self.user_agent, "Accept-Encoding": "gzip, deflate"}
        tls = trusted_context()
        self._public = pool or Pool(concurrency, ssl_context=tls)
        # Sources with allow_private get their own pool: no connection is shared across the line.
        self._private = Pool(concurrency, lambda _: True, tls)
        self._per_host = per_host
        # At most `concurrency` requests under way at once: the rest wait here, before a
        # request is made, not in a pool (httpcore's did work per queued request on every
        # event: a pass of 304s of 1,000 sources cost 18.5 s so, 7.9 s queued here).
        self._slots = asyncio.Semaphore(concurrency)
        self.robots_cache: dict[str, Any] = {}
        """robots.txt rules per origin, for pages.Robots."""
        self.page_locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        """One article page at a time per host, whichever source asks (pages.read_pages)."""
        self._host_slots: dict[str, asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(self._per_host)
        )

    def _session(self, limits: Limits) -> aiohttp.ClientSession:
        return (self._private if limits.allow_private else self._public).session()

    async def __aenter__(self) -> Fetcher:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._public.aclose()
        await self._private.aclose()

    async def get(
        self,
        url: str,
        *,
        limits: Limits,
        etag: str | None = None,
        last_modified: str | None = None,
        accept: str = "application/rss+xml, application/atom+xml, application/xml;q=0.9, */*;q=0.1",
    ) -> Response:
        """GET `url`, conditionally when validators are given. A 304 is a normal Response."""
        headers = {**self._headers, "Accept": accept}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        host = urlsplit(url).netloc.lower()
        try:
            async with self._host_slots[host], self._slots, asyncio.timeout(limits.total):
                return await self._get(url, headers, limits)
        except TimeoutError:
            raise FetchTimeout(
                url, f"gave up after the total deadline of {limits.total:g}s"
            ) from None

    async def _get(self, url: str, headers: dict[str, str], limits: Limits) -> Response:
        session = self._session(limits)
        try:
            async with session.get(
                _parsed(url),
                headers=headers,
                max_redirects=MAX_REDIRECTS,
                timeout=_timeout(limits.connect, limits.read),
            ) as r:
                if r.status >= 400:
                    await _raise_for_status(r)
                if r.status in REDIRECT_STATUSES:  # what aiohttp could not follow: no Location
                    raise RedirectError(url, f"HTTP {r.status} without an address to go to")
                body = await _read_capped(r, limits.max_bytes)
                return Response(str(r.url), r.status, _response_headers(r), body, _moved_to(r))
        except aiohttp.ClientError as e:
            raise _fetch_error(url, e, limits) from None

    async def resolve_redirect(self, url: str, limits: Limits) -> str | None:
        """Where `url` redirects to (one hop), or None. Used for aggregator links."""
        host = urlsplit(url).netloc.lower()
        try:
            async with (
                self._host_slots[host],
                self._slots,
                asyncio.timeout(limits.total),
                self._session(limits).head(
                    _parsed(url),
                    headers=self._headers,
                    allow_redirects=False,
                    timeout=_timeout(limits.connect, limits.read),
                ) as r,
            ):
                status, location = r.status, r.headers.get("location")
        except (aiohttp.ClientError, TimeoutError) as e:
            log.info("could not resolve aggregator link %s: %s", url, e)
            return None
        if status in REDIRECT_STATUSES and location:
            target = urljoin(url, location)
            if urlsplit(target).scheme in ("http", "https"):
                return target
        return None


def _fetch_error(url: str, e: aiohttp.ClientError, limits: Limits) -> FetchError:
    """aiohttp's error as the source's, in a sentence (subclasses before their parents)."""
    if isinstance(e, aiohttp.ConnectionTimeoutError):
        return FetchTimeout(url, f"could not connect within {limits.connect:g}s")
    if isinstance(e, aiohttp.SocketTimeoutError):
        return FetchTimeout(url, f"the server sent nothing for {limits.read:g}s")
    if isinstance(e, aiohttp.ServerTimeoutError):
        return FetchTimeout(url, f"timed out: {type(e).__name__}")
    if isinstance(e, aiohttp.TooManyRedirects):
        return RedirectError(url, f"more than {MAX_REDIRECTS} redirects (a loop or a long chain)")
    if isinstance(e, aiohttp.NonHttpUrlClientError):  # a redirect to ftp:, say
        return RedirectError(url, f"refused a non-HTTP address: {e}")
    if isinstance(e, aiohttp.InvalidUrlRedirectClientError):
        return RedirectError(url, f"the server redirected to an address that is not one: {e}")
    if isinstance(e, aiohttp.ClientConnectorError):
        reason = str(e.os_error.strerror or e.os_error)
        if REFUSED in reason:
            return BlockedAddress(url, refused(e.host, reason))
        return Unreachable(url, f"cannot connect to {urlsplit(url).netloc}: {reason}")
    if isinstance(
        e,
        aiohttp.ClientPayloadError
        | aiohttp.ClientOSError
        | aiohttp.ServerDisconnectedError
        | aiohttp.ClientResponseError,  # not HTTP as it should be
    ):
        return Unreachable(url, f"the connection broke mid-response: {_one_line(e)}")
    return FetchError(url, f"{type(e).__name__}: {e}")


def _one_line(e: Exception) -> str:
    """aiohttp's message for a person, on one line: its parser's errors quote the offending line
    with a caret under it, and a body cut short wraps its cause's repr."""
    text = str(getattr(e, "message", "") or e) or type(e).__name__
    text = re.sub(r"<\w+: \d+, message='(.*)'>", r"\1", text)
    return " ".join(word for word in text.split() if word != "^")


def _response_headers(r: aiohttp.ClientResponse) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in r.headers.items():
        name = name.lower()
        if not value.isascii():
            value = _readable(value)
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


def _readable(value: str) -> str:
    """A header value as text SQLite can store: aiohttp keeps bytes that are not UTF-8 as lone
    surrogates (an ETag in Latin-1, say), which it refuses; those are read as Latin-1."""
    raw = value.encode("utf-8", "surrogateescape")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _moved_to(r: aiohttp.ClientResponse) -> str | None:
    """The target of the last permanent hop, not the final address: after a 301 to https, a 302
    to a CDN's signed address for today is no address to put in feeds.yaml."""
    moved_to = None
    for n, hop in enumerate(r.history):
        if hop.status in PERMANENT:  # where it led: the next hop's address, or the last
            moved_to = str(r.history[n + 1].url if n + 1 < len(r.history) else r.url)
    return moved_to


@functools.lru_cache(maxsize=4096)
def _parsed(url: str) -> URL:
    """`url` parsed once, not at every poll (yarl's URLs are immutable). Bounded: a collector
    polls the same few thousand addresses for months."""
    return URL(url)


@functools.lru_cache(maxsize=64)
def _timeout(connect: float, read: float) -> aiohttp.ClientTimeout:
    # No total here: Fetcher.get's deadline covers the wait for a slot too.
    return aiohttp.ClientTimeout(total=None, sock_connect=connect, sock_read=read)


async def _raise_for_status(r: aiohttp.ClientResponse) -> None:
    url = str(r.url)
    if r.status in RETRY_STATUSES:
        until = retry_after(r.headers.get("retry-after"), datetime.now(UTC))
        if until is not None:
            raise RetryLater(url, r.status, until)
    if r.status in CHALLENGE_STATUSES:
        page = await _read_capped(r, CHALLENGE_PEEK, truncate=True)
        vendor = bot_challenge(page)
        if vendor is not None:
            raise BotChallenge(
                url,
                r.status,
                f"HTTP {r.status}: the site answered with a bot challenge ({vendor}) "
                "instead of the feed; ask the outlet to allow this User-Agent, or use another "
                "address for its news (a Google News search for the site)",
            )
    reason = r.reason or "error"
    hint = {
        400: "the server refuses the request as malformed",
        401: "the feed needs a login",
        403: "the server refuses us (blocked, or a login wall)",
        404: "the feed address is wrong or the feed was removed",
        410: "the feed is gone for good; remove or replace this source",
        429: "we are polling too often",
    }.get(r.status, "server error" if r.status >= 500 else "client error")
    raise HTTPStatusError(url, r.status, f"HTTP {r.status} {reason}: {hint}")


PERMANENT = (301, 308)
CHALLENGE_STATUSES = (403, 429, 503)
CHALLENGE_PEEK = 64 * 1024
_CHALLENGE_MARKERS = {
    b"cf-chl": "Cloudflare",
    b"challenge-platform": "Cloudflare",
    b"Just a moment...": "Cloudflare",
    b"Attention Required! | Cloudflare": "Cloudflare",
    b"_Incapsula_Resource": "Imperva",
    b"px-captcha": "PerimeterX",
    b"captcha-delivery.com": "DataDome",
    b"ak_bmsc": "Akamai",
    b"g-recaptcha": "reCAPTCHA",
    b"h-captcha": "hCaptcha",
}


def bot_challenge(page: bytes) -> str | None:
    """The anti-bot vendor whose challenge page this is, or None."""
    for marker, vendor in _CHALLENGE_MARKERS.items():
        if marker in page:
            return vendor
    return None


def retry_after(value: str | None, now: datetime) -> datetime | None:
    """Retry-After (seconds or an HTTP date) -> when to try again, capped at RETRY_AFTER_CAP."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        until = now + timedelta(seconds=int(value))
    else:
        try:
            until = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if until.tzinfo is None:
            until = until.replace(tzinfo=UTC)
    return min(max(until, now), now + RETRY_AFTER_CAP)


async def _read_capped(
    r: aiohttp.ClientResponse, max_bytes: int, *, truncate: bool = False
) -> bytes:
    """The decoded body, refusing more than max_bytes of it (or cutting there, with truncate).

    We decode gzip/deflate ourselves, a bounded amount at a time, so a gzip bomb (a few KB on the
    wire, gigabytes unpacked) never occupies more than max_bytes of memory.
    """
    declared = r.headers.get("content-length", "")
    encoding = r.headers.get("content-encoding", "identity").strip().lower()
    if declared.isdigit() and int(declared) > max_bytes and not truncate:
        raise TooLarge(str(r.url), f"the body is {int(declared):,} bytes; the cap is {max_bytes:,}")
    decoder = _decoder(str(r.url), encoding)
    chunks: list[bytes] = []
    size = 0
    async for raw in r.content.iter_any():
        pending = raw
        while pending:
            if decoder is None:
                data, pending = pending, b""
            else:
                data = decoder.decompress(pending, max_bytes - size + 1)
                pending = decoder.unconsumed_tail
            size += len(data)
            chunks.append(data)
            if size > max_bytes:
                if truncate:
                    return b"".join(chunks)[:max_bytes]
                raise TooLarge(str(r.url), f"the body is over the cap of {max_bytes:,} bytes")
    return b"".join(chunks)


class _Inflater:
    """zlib.decompressobj, choosing zlib-wrapped or raw deflate on the first bytes."""

    def __init__(self, url: str, wbits: int) -> None:
        self._url = url
        self._wbits = wbits
        self._decoder: Any = None
        self.unconsumed_tail = b""

    def decompress(self, data: bytes, max_length: int) -> bytes:
        if self._decoder is None:
            self._decoder = zlib.decompressobj(self._wbits)
            if self._wbits == zlib.MAX_WBITS and data[:1] and (data[0] & 0x0F) != 8:
                self._decoder = zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate
        try:
            out: bytes = self._decoder.decompress(data, max_length)
        except zlib.error as e:
            raise FetchError(self._url, f"the compressed body is corrupt: {e}") from None
        self.unconsumed_tail = self._decoder.unconsumed_tail
        return out


def _decoder(url: str, encoding: str) -> _Inflater | None:
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip"):
        return _Inflater(url, 16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return _Inflater(url, zlib.MAX_WBITS)
    raise FetchError(url, f"the server used a compression we did not ask for: {encoding}")
