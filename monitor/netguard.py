"""Which addresses the collector may connect to: public ones only, unless a source allows more.

A feed URL, or any redirect it leads to, must not reach the machine's own services or the
private network (SSRF). The check is made where the connection is opened, on the address the
name actually resolved to, so it holds for every redirect hop and cannot be dodged by DNS that
answers differently the second time: we connect to the very address we checked. Sources that
may reach private addresses use a separate connection pool, so a connection one of them opened is
never reused by a source that may not. The backend's streams also answer the pool's frequent
"is this idle connection still open?" cheaply (_Stream).
"""

from __future__ import annotations

import asyncio
import ipaddress
import select
import socket
import ssl
from collections.abc import Callable, Iterable
from typing import Any

import httpcore
import httpx

REFUSED = "refused to connect"
"""Start of the message of a blocked connection, so fetch.py can name the error precisely."""


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, resolving names itself and refusing non-public addresses."""

    def __init__(self, is_allowed: Callable[[str], bool] = is_public) -> None:
        self._inner = httpcore.AnyIOBackend()
        self._is_allowed = is_allowed

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        address = await self._checked_address(host, port, timeout)
        return _Stream(
            await self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
        )

    async def _checked_address(self, host: str, port: int, timeout: float | None) -> str:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        except OSError as e:
            raise httpcore.ConnectError(f"cannot resolve {host}: {e}") from None
        addresses = [str(info[4][0]) for info in infos]
        for address in addresses:
            if self._is_allowed(address):
                return address
        raise httpcore.ConnectError(
            f"{REFUSED} {host} ({addresses[0]}): not a public address; set allow_private: true "
            "on the source if this is intended"
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError(f"{REFUSED} a unix socket")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _Stream(httpcore.AsyncNetworkStream):
    """httpcore's stream, answering "is the socket readable?" from the socket it found once.

    httpcore's pool asks that of every idle connection each time a request starts or ends, and
    anyio rebuilds its table of socket attributes (calling getpeername()) to find the socket
    each time: with 32 pooled connections, a quarter of the CPU of a pass where 1,000 feeds
    answer 304.
    """

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self._socket: socket.socket | None = inner.get_extra_info("socket")

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            return _readable(self._socket)
        return self._inner.get_extra_info(info)


def _readable(sock: socket.socket | None) -> bool:
    """Whether a read would return at once: data, or the end of a connection the server closed
    (a socket that is gone counts as readable too, as in httpcore)."""
    if sock is None or sock.fileno() < 0:
        return True
    poll = select.poll()
    poll.register(sock.fileno(), select.POLLIN)
    return bool(poll.poll(0))


class _Pool(httpcore.AsyncConnectionPool):
    """httpcore's connection pool (HTTP/1.1 only) with its bookkeeping done in one pass.

    Whenever a request starts or ends, httpcore 1.0 walks every connection once per connection
    and once per waiting request (O(N² + N·M)), and hands one idle connection to every waiting
    request, all but one of which then fail, wait again and start another pass. With 32
    requests in flight that was most of a request's CPU: six passes per request, each polling
    every idle socket (measured: 1,000 requests answered 304 cost 0.8 s at 8 in flight, 1.9 s
    at 32, with no new connections). Here a pass visits each connection once, an idle
    connection goes to one waiting request, and one handed to a request that has not started
    on it yet is spoken for. Idle connections are counted as such (httpcore compares all of
    them with max_keepalive, so it kept fewer than asked), and only the one about to be reused
    is checked for expiry. The same fixes as encode/httpcore#1035 and pydantic/httpx2#974 and
    #1075.
    """

    def _assign_requests_to_connections(self) -> list[httpcore.AsyncConnectionInterface]:
        closing: list[httpcore.AsyncConnectionInterface] = []
        spoken_for = {id(r.connection) for r in self._requests if r.connection is not None}
        kept: list[httpcore.AsyncConnectionInterface] = []
        idle: list[httpcore.AsyncConnectionInterface] = []
        for connection in self._connections:
            if connection.is_closed():
                continue
            kept.append(connection)
            if connection.is_idle() and id(connection) not in spoken_for:
                idle.append(connection)
        surplus = len(idle) - self._max_keepalive_connections
        if surplus > 0:  # the longest idle go
            for connection in idle[:surplus]:
                kept.remove(connection)
                closing.append(connection)
            idle = idle[surplus:]
        self._connections = kept
        for pool_request in self._requests:
            if not pool_request.is_queued():
                continue
            origin = pool_request.request.url.origin
            reusable = self._reusable(idle, origin, kept, closing)
            if reusable is not None:
                connection = reusable
            else:
                if len(kept) >= self._max_connections:
                    if not idle:
                        continue  # it waits for a connection to come free
                    other = idle.pop(0)  # idle, to another origin: make room
                    kept.remove(other)
                    closing.append(other)
                connection = self.create_connection(origin)
                kept.append(connection)
            pool_request.assign_to_connection(connection)
        return closing

    @staticmethod
    def _reusable(
        idle: list[httpcore.AsyncConnectionInterface],
        origin: httpcore.Origin,
        kept: list[httpcore.AsyncConnectionInterface],
        closing: list[httpcore.AsyncConnectionInterface],
    ) -> httpcore.AsyncConnectionInterface | None:
        """An idle connection to `origin` that is still good, taken from `idle`. Only one about
        to be reused is checked for expiry (keep-alive over, or the server gone: a poll of its
        socket): checking every idle one whenever a request starts or ends was ~14 socket polls
        a request. Expired ones found on the way are closed."""
        for connection in [c for c in idle if c.can_handle_request(origin)]:
            idle.remove(connection)
            if not connection.has_expired():
                return connection
            kept.remove(connection)
            closing.append(connection)
        return None


def guarded_transport(
    limits: httpx.Limits,
    is_allowed: Callable[[str], bool] = is_public,
    ssl_context: ssl.SSLContext | None = None,
) -> httpx.AsyncHTTPTransport:
    """An httpx transport whose every connection goes through GuardedBackend.

    Pass one `ssl_context` to several transports: loading the CA bundle costs ~50 ms each time.
    """
    # trust_env=False: proxy settings from the environment would bypass the guard.
    ssl_context = ssl_context or httpx.create_ssl_context(trust_env=False)
    transport = httpx.AsyncHTTPTransport(verify=ssl_context, limits=limits, trust_env=False)
    # httpx has no public way to give its pool a network backend; this is the one private
    # attribute we touch (httpx is pinned below 0.29 and httpcore below 1.1 in pyproject.toml,
    # _Pool overrides httpcore's private bookkeeping).
    transport._pool = _Pool(
        ssl_context=ssl_context,
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=GuardedBackend(is_allowed),
    )
    return transport
