"""The only module that speaks HTTP: shared client, limits, conditional GET, Retry-After.

Every failure leaves here as a FetchError subclass with a sentence a person can act on; nothing
from httpx or the socket layer escapes.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from urllib.parse import urljoin, urlsplit

import httpx

from monitor import __version__
from monitor.errors import (
    FetchError,
    FetchTimeout,
    HTTPStatusError,
    RedirectError,
    RetryLater,
    TooLarge,
    Unreachable,
)

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


@dataclass(frozen=True)
class Response:
    url: str
    """Where the body came from, after redirects: the base for relative links."""
    status: int
    headers: Mapping[str, str]
    body: bytes

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
        self._client = httpx.AsyncClient(
            headers={"User-Agent": self.user_agent, "Accept-Encoding": "gzip, deflate"},
            follow_redirects=True,
            max_redirects=MAX_REDIRECTS,
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
            transport=transport,
        )
        self._per_host = per_host
        self._host_slots: dict[str, asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(self._per_host)
        )

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
        await self._client.aclose()

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
        async with self._host_slots[host]:
            try:
                async with asyncio.timeout(limits.total):
                    return await self._get(url, headers, limits)
            except TimeoutError:
                raise FetchTimeout(
                    url, f"gave up after the total deadline of {limits.total:g}s"
                ) from None

    async def _get(self, url: str, headers: dict[str, str], limits: Limits) -> Response:
        timeout = httpx.Timeout(limits.read, connect=limits.connect, pool=limits.total)
        try:
            async with self._client.stream("GET", url, headers=headers, timeout=timeout) as r:
                _raise_for_status(r)
                body = await _read_capped(r, limits.max_bytes)
                return Response(str(r.url), r.status_code, dict(r.headers), body)
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
        async with self._host_slots[host]:
            try:
                async with asyncio.timeout(limits.total):
                    r = await self._client.head(url, follow_redirects=False, timeout=timeout)
            except (httpx.HTTPError, TimeoutError) as e:
                log.info("could not resolve aggregator link %s: %s", url, e)
                return None
        location: str | None = r.headers.get("location")
        if r.is_redirect and location:
            target = urljoin(url, location)
            if urlsplit(target).scheme in ("http", "https"):
                return target
        return None


def _raise_for_status(r: httpx.Response) -> None:
    if r.status_code < 400:
        return
    url = str(r.url)
    if r.status_code in RETRY_STATUSES:
        until = retry_after(r.headers.get("retry-after"), datetime.now(UTC))
        if until is not None:
            raise RetryLater(url, r.status_code, until)
    reason = r.reason_phrase or "error"
    hint = {
        401: "the feed needs a login",
        403: "the server refuses us (blocked, or a bot challenge)",
        404: "the feed address is wrong or the feed was removed",
        410: "the feed is gone for good; remove or replace this source",
        429: "we are polling too often",
    }.get(r.status_code, "server error" if r.status_code >= 500 else "client error")
    raise HTTPStatusError(url, r.status_code, f"HTTP {r.status_code} {reason}: {hint}")


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


async def _read_capped(r: httpx.Response, max_bytes: int) -> bytes:
    """The decoded body, refusing more than max_bytes (which also bounds gzip bombs)."""
    declared = r.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes and not r.headers.get("content-encoding"):
        raise TooLarge(str(r.url), f"the body is {int(declared):,} bytes; the cap is {max_bytes:,}")
    chunks = []
    size = 0
    # aiter_bytes decodes gzip/deflate, so the cap applies to what we would have to hold.
    async for chunk in r.aiter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise TooLarge(str(r.url), f"the body is over the cap of {max_bytes:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
