"""The only module that speaks HTTP: shared client, limits, conditional GET, Retry-After.

Every failure leaves here as a FetchError subclass with a sentence a person can act on; nothing
from httpx or the socket layer escapes.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import http.cookiejar
import logging
import time
import urllib.request
import weakref
import zlib
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
from httpx._client import BoundAsyncStream
from httpx._types import CookieTypes

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
from monitor.netguard import REFUSED, guarded_transport

log = logging.getLogger(__name__)

MAX_REDIRECTS = 5
RETRY_AFTER_CAP = timedelta(hours=24)
"""A server may ask us to wait; we do not let a hostile one switch a source off for longer."""
RETRY_STATUSES = (429, 503)


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
    """One shared httpx client with bounded concurrency overall and per host."""

    def __init__(
        self,
        *,
        contact: str,
        concurrency: int = 16,
        per_host: int = 2,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.user_agent = f"coverage-monitor/{__version__} (+{contact})"
        # Every connection a burst opened stays open for 5 s of keep-alive: sources on one host
        # (Google News searches, an outlet's several feeds) poll on the connections the last
        # ones used. With 8 kept idle, a benchmark cycle of 1,000 feeds reconnected 450 times
        # and took ~0.9 s longer (bench/HISTORY.md).
        pool = httpx.Limits(max_connections=concurrency, keepalive_expiry=5.0)
        tls = httpx.create_ssl_context(trust_env=False)
        self._public = self._make_client(transport or guarded_transport(pool, ssl_context=tls))
        # Sources with allow_private get their own pool: no connection is shared across the line.
        self._private = self._make_client(guarded_transport(pool, lambda _: True, tls))
        self._per_host = per_host
        # At most `concurrency` requests inside httpx at once: the rest wait here, before a
        # request is built, not in a pool (httpcore's did work per queued request on every
        # event: a pass of 304s of 1,000 sources cost 18.5 s so, 7.9 s queued here).
        self._slots = asyncio.Semaphore(concurrency)
        self.robots_cache: dict[str, Any] = {}
        """robots.txt rules per origin, for pages.Robots."""
        self.page_locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        """One article page at a time per host, whichever source asks (pages.read_pages)."""
        self._host_slots: dict[str, asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(self._per_host)
        )

    def _make_client(self, transport: httpx.AsyncBaseTransport) -> httpx.AsyncClient:
        client = _Client(
            headers={"User-Agent": self.user_agent, "Accept-Encoding": "gzip, deflate"},
            follow_redirects=True,
            max_redirects=MAX_REDIRECTS,
            transport=transport,
        )
        # The client's jar, as a _Cookies: httpx offers no public way to give it one (httpx
        # is pinned below 0.29).
        client._cookies = _Cookies(_Jar())
        return client

    def _client(self, limits: Limits) -> httpx.AsyncClient:
        return self._private if limits.allow_private else self._public

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
        headers = {"Accept": accept}
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
        timeout = httpx.Timeout(limits.read, connect=limits.connect, pool=limits.total)
        try:
            client = self._client(limits)
            async with client.stream("GET", _parsed(url), headers=headers, timeout=timeout) as r:
                if r.status_code >= 400:
                    await _raise_for_status(r)
                body = await _read_capped(r, limits.max_bytes)
                return Response(str(r.url), r.status_code, dict(r.headers), body, _moved_to(r))
        except httpx.ConnectTimeout:
            raise FetchTimeout(url, f"could not connect within {limits.connect:g}s") from None
        except httpx.ReadTimeout:
            raise FetchTimeout(url, f"the server sent nothing for {limits.read:g}s") from None
        except httpx.TimeoutException as e:
            raise FetchTimeout(url, f"timed out: {type(e).__name__}") from None
        except httpx.TooManyRedirects:
            raise RedirectError(
                url, f"more than {MAX_REDIRECTS} redirects (a loop or a long chain)"
            ) from None
        except httpx.UnsupportedProtocol as e:
            raise RedirectError(url, f"refused a non-HTTP address: {e}") from None
        except httpx.ConnectError as e:
            if str(e).startswith(REFUSED):
                raise BlockedAddress(url, str(e)) from None
            raise Unreachable(url, f"cannot connect to {urlsplit(url).netloc}: {e}") from None
        except (httpx.RemoteProtocolError, httpx.ReadError) as e:
            raise Unreachable(url, f"the connection broke mid-response: {e}") from None
        except httpx.DecodingError as e:
            raise FetchError(url, f"the compressed body is corrupt: {e}") from None
        except httpx.HTTPError as e:
            raise FetchError(url, f"{type(e).__name__}: {e}") from None

    async def resolve_redirect(self, url: str, limits: Limits) -> str | None:
        """Where `url` redirects to (one hop), or None. Used for aggregator links."""
        host = urlsplit(url).netloc.lower()
        timeout = httpx.Timeout(limits.read, connect=limits.connect)
        try:
            async with self._host_slots[host], self._slots, asyncio.timeout(limits.total):
                r = await self._client(limits).head(url, follow_redirects=False, timeout=timeout)
        except (httpx.HTTPError, TimeoutError) as e:
            log.info("could not resolve aggregator link %s: %s", url, e)
            return None
        location: str | None = r.headers.get("location")
        if r.is_redirect and location:
            target = urljoin(url, location)
            if urlsplit(target).scheme in ("http", "https"):
                return target
        return None


def _moved_to(r: httpx.Response) -> str | None:
    """The target of the last permanent hop, not the final address: after a 301 to https, a 302
    to a CDN's signed address for today is no address to put in feeds.yaml."""
    moved_to = None
    for n, hop in enumerate(r.history):
        if hop.status_code in PERMANENT:  # where it led: the next hop's address, or the last
            moved_to = str(r.history[n + 1].url if n + 1 < len(r.history) else r.url)
    return moved_to


@functools.lru_cache(maxsize=4096)
def _parsed(url: str) -> httpx.URL:
    """`url` parsed once, not at every poll: httpx takes ~11 us to parse one (~2 % of a pass
    of 304s) and copies a parsed URL in 0.3 us. Bounded: a collector polls the same few
    thousand addresses for months."""
    return httpx.URL(url)


class _Client(httpx.AsyncClient):
    """httpx's client, handing its own jar to each request (a redirect's next hop too) instead
    of a copy of it, and leaving no reference cycle behind a response.

    httpx copies the client's whole jar into every request it builds, twice, and the copy asks
    every cookie's domain whether it matches: with the cookies of 100 sites (a CDN's
    bot-management cookie each) building a request took 1.4 ms, with 1,000 sites 10 ms, where a
    whole poll answered 304 costs ~0.6 ms. The copy protects against per-request cookies, which
    the collector never sets; the jar is only read there (_Jar: the request's own domains).
    """

    def _merge_cookies(self, cookies: CookieTypes | None = None) -> CookieTypes | None:
        jar = self.cookies.jar
        if cookies or not isinstance(jar, _Jar):
            return super()._merge_cookies(cookies)
        return jar if jar.holds_any() else None

    def _build_redirect_request(
        self, request: httpx.Request, response: httpx.Response
    ) -> httpx.Request:
        # httpx's own builds the next hop on a copy of the whole jar (Cookies(self.cookies)), the
        # cost _merge_cookies saves the first request: a feed that moved pays it at every poll.
        method = self._redirect_method(request, response)
        url = self._redirect_url(request, response)
        return httpx.Request(
            method,
            url,
            headers=self._redirect_headers(request, url, method),
            cookies=self._merge_cookies(),
            stream=self._redirect_stream(request, method),
            extensions=request.extensions,
        )

    async def _send_single_request(self, request: httpx.Request) -> httpx.Response:
        response = await super()._send_single_request(request)
        # The stream httpx wraps a body in points back at its response, to set `elapsed` when
        # closed: a cycle of ~40 objects a request (the request, the streams, the transport's
        # response) that only the cyclic garbage collector frees (a pass of 1,000 304s left
        # 39,000 of them). Held weakly, the response and all it holds go by refcount once dropped.
        # As encode/httpx#3733 proposes; httpx is pinned below 0.29.
        if isinstance(response.stream, BoundAsyncStream):
            response.stream._response = weakref.proxy(response)
        return response


class _Jar(http.cookiejar.CookieJar):
    """http.cookiejar's jar, looking in a request's own domains only, not in every domain it
    holds (each asked through the policy, which parses the request's URL again every time), and
    sweeping out expired cookies once a minute instead of after every request (a walk of every
    cookie; an expired one is never sent either way)."""

    SWEEP_S = 60.0

    def __init__(self) -> None:
        super().__init__()
        self._next_sweep = 0.0

    def holds_any(self) -> bool:
        return bool(self._cookies)  # type: ignore[attr-defined]

    def __bool__(self) -> bool:  # not __len__'s walk of every cookie
        return self.holds_any()

    def _cookies_for_request(self, request: urllib.request.Request) -> list[http.cookiejar.Cookie]:
        held: dict[str, object] = self._cookies  # type: ignore[attr-defined]
        cookies: list[http.cookiejar.Cookie] = []
        for domain in _domains(*http.cookiejar.eff_request_host(request)):  # type: ignore[attr-defined]
            if domain in held:
                cookies.extend(self._cookies_for_domain(domain, request))  # type: ignore[attr-defined]
        return cookies

    def clear_expired_cookies(self) -> None:
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + self.SWEEP_S
            super().clear_expired_cookies()


def _domains(host: str, effective: str) -> list[str]:
    """The jar's keys a cookie sent to `host` can be filed under, most specific first: the host
    and each parent domain, with and without a domain cookie's leading dot; `effective` is the
    host as the policy also matches it ("intranet" -> "intranet.local"). A superset of what
    DefaultCookiePolicy.domain_return_ok accepts, which still checks each one."""
    names: list[str] = []
    for name in (host, effective):
        labels = name.split(".")
        for i in range(len(labels)):
            parent = ".".join(labels[i:])
            names += ("." + parent, parent)
    return list(dict.fromkeys([*names, ""]))


class _Cookies(httpx.Cookies):
    """httpx's cookie jar (cookies a site sets still come back to it, through a redirect chain
    and at the next poll), skipping http.cookiejar for a response that sets none: most feeds.
    Building urllib stand-ins of every request and response for it was ~13 % of the CPU of a
    pass where 1,000 feeds answer 304 (old and new in turns: 1.12-1.49 -> 0.93-1.29 s)."""

    def extract_cookies(self, response: httpx.Response) -> None:
        if "set-cookie" in response.headers:
            super().extract_cookies(response)


async def _raise_for_status(r: httpx.Response) -> None:
    url = str(r.url)
    if r.status_code in RETRY_STATUSES:
        until = retry_after(r.headers.get("retry-after"), datetime.now(UTC))
        if until is not None:
            raise RetryLater(url, r.status_code, until)
    if r.status_code in CHALLENGE_STATUSES:
        page = await _read_capped(r, CHALLENGE_PEEK, truncate=True)
        vendor = bot_challenge(page)
        if vendor is not None:
            raise BotChallenge(
                url,
                r.status_code,
                f"HTTP {r.status_code}: the site answered with a bot challenge ({vendor}) "
                "instead of the feed; ask the outlet to allow this User-Agent, or use another "
                "address for its news (a Google News search for the site)",
            )
    reason = r.reason_phrase or "error"
    hint = {
        400: "the server refuses the request as malformed",
        401: "the feed needs a login",
        403: "the server refuses us (blocked, or a login wall)",
        404: "the feed address is wrong or the feed was removed",
        410: "the feed is gone for good; remove or replace this source",
        429: "we are polling too often",
    }.get(r.status_code, "server error" if r.status_code >= 500 else "client error")
    raise HTTPStatusError(url, r.status_code, f"HTTP {r.status_code} {reason}: {hint}")


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


async def _read_capped(r: httpx.Response, max_bytes: int, *, truncate: bool = False) -> bytes:
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
    async for raw in r.aiter_raw():
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

    def __init__(self, wbits: int) -> None:
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
            raise FetchError("", f"the compressed body is corrupt: {e}") from None
        self.unconsumed_tail = self._decoder.unconsumed_tail
        return out


def _decoder(url: str, encoding: str) -> _Inflater | None:
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip"):
        return _Inflater(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return _Inflater(zlib.MAX_WBITS)
    raise FetchError(url, f"the server used a compression we did not ask for: {encoding}")
