"""The connections under httpx, and which addresses they may reach: public ones only, unless a
source allows more.

httpx builds each request, follows redirects and keeps cookies; the connections it sends them
down are aiohttp's (`Transport`): its pool, its HTTP/1.1 parser in C, asyncio's sockets. A pass
where 1,000 feeds answer 304 costs the collector a third less CPU so than on httpcore (whose
parser and pool are Python: bench/HISTORY.md, the nineteenth round).

A feed URL, or any redirect it leads to, must not reach the machine's own services or the
private network (SSRF). The check is made as each socket is made, on the address it is about
to connect to (`_guarded_socket`, the pool's socket factory), so it holds for every redirect
hop, for names and address literals alike, and cannot be dodged by DNS that answers differently
the second time: the socket connects to the very address checked. Sources that may reach
private addresses use a separate pool, so a connection one of them opened is never reused by a
source that may not.
"""

from __future__ import annotations

import errno
import ipaddress
import re
import socket
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import aiohttp
import httpx
from yarl import URL

if TYPE_CHECKING:
    from aiohappyeyeballs import AddrInfoType

REFUSED = "refused to connect"
"""Start of the message of a blocked connection, so fetch.py can name the error precisely."""

READ_AHEAD = 128 * 1024
"""Body bytes received and not yet read at which a connection stops reading its socket (aiohttp
stops at twice this and starts again below it): a fast or hostile server cannot fill the
collector's memory faster than it reads."""

MAX_HEADER = 16 * 1024
"""Longest status or header line taken (h11's limit for all of them; aiohttp's default is half):
a CDN's bot-management cookie can be long."""


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def _guarded_socket(is_allowed: Callable[[str], bool]) -> Callable[[AddrInfoType], socket.socket]:
    def make(addr_info: AddrInfoType) -> socket.socket:
        family, kind, proto, _, address = addr_info
        if not is_allowed(str(address[0])):
            # An errno, so aiohttp keeps the message (it shows an OSError's strerror).
            raise OSError(errno.EACCES, f"{REFUSED} {address[0]}")
        return socket.socket(family, kind, proto)

    return make


class Transport(httpx.AsyncBaseTransport):
    """httpx's transport on one aiohttp session (and its pool), made on the first request, in
    the event loop that uses it."""

    def __init__(
        self, limits: httpx.Limits, is_allowed: Callable[[str], bool], ssl_context: ssl.SSLContext
    ) -> None:
        self._limits = limits
        self._is_allowed = is_allowed
        self._ssl = ssl_context
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self._limits.max_connections or 0,
            limit_per_host=0,  # fetch.Fetcher bounds requests per host itself
            keepalive_timeout=self._limits.keepalive_expiry or 0,
            ssl=self._ssl,
            socket_factory=_guarded_socket(self._is_allowed),
        )
        return aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),  # httpx keeps the cookies
            auto_decompress=False,  # fetch._read_capped decodes, a bounded amount at a time
            trust_env=False,  # proxy settings from the environment would bypass the guard
            read_bufsize=READ_AHEAD,
            max_line_size=MAX_HEADER,
            max_field_size=MAX_HEADER,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._session is None:
            self._session = self._open()
        timeouts = request.extensions.get("timeout", {})
        # The collector only GETs (and HEADs); a body would be read whole.
        body = None if request.method in ("GET", "HEAD") else await request.aread()
        with _as_httpx_errors(request):
            response = await self._session.request(
                request.method,
                URL(str(request.url), encoded=True),  # as httpx encoded it, not re-quoted
                headers=request.headers.multi_items(),
                data=body,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=timeouts.get("connect"), sock_read=timeouts.get("read")
                ),
            )
        extensions = {"http_version": b"HTTP/1.1"}
        if response.reason:
            extensions["reason_phrase"] = response.reason.encode("latin-1", "replace")
        return httpx.Response(
            response.status,
            headers=response.raw_headers,
            stream=_Body(response, request),
            extensions=extensions,
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


class _Body(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _as_httpx_errors(self._request):
            async for chunk in self._response.content.iter_any():
                yield chunk

    async def aclose(self) -> None:
        # Back to the pool if the body was read to its end; closed if not.
        self._response.release()


@contextmanager
def _as_httpx_errors(request: httpx.Request) -> Iterator[None]:
    """aiohttp's errors as the httpx ones fetch.py turns into a source's error."""
    host = request.url.host
    try:
        yield
    except aiohttp.ConnectionTimeoutError:
        raise httpx.ConnectTimeout(f"connecting to {host} timed out", request=request) from None
    except aiohttp.SocketTimeoutError:
        raise httpx.ReadTimeout("the server stopped sending", request=request) from None
    except aiohttp.ClientConnectorError as e:
        reason = str(e.os_error.strerror or e.os_error)
        if REFUSED in reason:  # every address the name has (happy eyeballs tried each)
            refused = [part.split()[0].rstrip(",") for part in reason.split(REFUSED)[1:]]
            reason = (
                f"{REFUSED} {host} ({', '.join(refused)}): not a public address; set "
                "allow_private: true on the source if this is intended"
            )
        raise httpx.ConnectError(reason, request=request) from None
    except (
        aiohttp.ClientPayloadError,
        aiohttp.ClientOSError,
        aiohttp.ServerDisconnectedError,
    ) as e:
        raise httpx.ReadError(_one_line(e), request=request) from None
    except aiohttp.NonHttpUrlClientError:  # a redirect to ftp:, say (httpx follows it here)
        raise httpx.UnsupportedProtocol(str(request.url), request=request) from None
    except aiohttp.ClientResponseError as e:  # not HTTP as it should be
        raise httpx.RemoteProtocolError(_one_line(e), request=request) from None
    except aiohttp.ClientError as e:
        raise httpx.TransportError(f"{type(e).__name__}: {e}", request=request) from None


def _one_line(e: Exception) -> str:
    """aiohttp's message for a person, on one line: its parser's errors quote the offending line
    with a caret under it, and a body cut short wraps its cause's repr."""
    text = str(getattr(e, "message", "") or e) or type(e).__name__
    text = re.sub(r"<\w+: \d+, message='(.*)'>", r"\1", text)
    return " ".join(word for word in text.split() if word != "^")


def guarded_transport(
    limits: httpx.Limits,
    is_allowed: Callable[[str], bool] = is_public,
    ssl_context: ssl.SSLContext | None = None,
) -> Transport:
    """A transport whose every connection may reach only addresses `is_allowed` accepts.

    Pass one `ssl_context` to several transports: loading the CA bundle costs ~50 ms each time.
    """
    return Transport(limits, is_allowed, ssl_context or httpx.create_ssl_context(trust_env=False))
