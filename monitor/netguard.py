"""The collector's connections, and which addresses they may reach: public ones only, unless a
source allows more.

Feeds are fetched on aiohttp (`Pool`): its pool, its HTTP/1.1 parser in C, its redirects and
cookie jar, asyncio's sockets. A poll answered 304 costs 0.33-0.43 ms of CPU so, against
0.67-0.82 ms when httpx built the request and response around the same connections, and a
third more again on httpcore, whose parser and pool are Python (bench/HISTORY.md, the
nineteenth and twenty-fifth rounds).

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
import socket
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING

import aiohttp
import certifi

if TYPE_CHECKING:
    from aiohappyeyeballs import AddrInfoType

REFUSED = "refused to connect"
"""Start of the message of a blocked connection, so fetch.py can name the error precisely."""

READ_AHEAD = 128 * 1024
"""Body bytes received and not yet read at which a connection stops reading its socket (aiohttp
stops at twice this and starts again below it): a fast or hostile server cannot fill the
collector's memory faster than it reads."""

KEEPALIVE_S = 5.0
"""How long every connection a burst opened stays open: sources on one host (Google News
searches, an outlet's several feeds) poll on the connections the last ones used. With 8 kept
idle, a benchmark cycle of 1,000 feeds reconnected 450 times and took ~0.9 s longer
(bench/HISTORY.md)."""

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


class Pool:
    """One aiohttp session (its connection pool, its cookie jar), made on first use in the event
    loop that uses it, whose every connection may reach only addresses `is_allowed` accepts."""

    def __init__(
        self,
        max_connections: int,
        is_allowed: Callable[[str], bool] = is_public,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._max_connections = max_connections
        self._is_allowed = is_allowed
        # Pass one context to several pools: loading the CA bundle costs ~50 ms each time.
        self._ssl = ssl_context or trusted_context()
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                limit_per_host=0,  # fetch.Fetcher bounds requests per host itself
                keepalive_timeout=KEEPALIVE_S,
                ssl=self._ssl,
                socket_factory=_guarded_socket(self._is_allowed),
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                # Cookies a site sets come back to it (a consent wall's, through its redirects;
                # a CDN's, at the next poll), as they were set: aiohttp would put a value with
                # "=" or "/" in quotes (a CDN's base64 token), which is another value to the
                # site. `unsafe`: an address literal's too, as http.cookiejar keeps them.
                cookie_jar=aiohttp.CookieJar(unsafe=True, quote_cookie=False),
                auto_decompress=False,  # fetch._read_capped decodes, a bounded amount at a time
                trust_env=False,  # proxy settings from the environment would bypass the guard
                read_bufsize=READ_AHEAD,
                max_line_size=MAX_HEADER,
                max_field_size=MAX_HEADER,
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def trusted_context() -> ssl.SSLContext:
    """Certificates checked against Mozilla's authorities (certifi), not the machine's, so a
    feed that verifies on one machine verifies on every one."""
    return ssl.create_default_context(cafile=certifi.where())


def refused(host: str, reason: str) -> str:
    """The guard's refusal as a person reads it: the host, every address of it refused (happy
    eyeballs tried each), and what to do if it is meant."""
    addresses = [part.split()[0].rstrip(",") for part in reason.split(REFUSED)[1:]]
    return (
        f"{REFUSED} {host} ({', '.join(addresses)}): not a public address; set "
        "allow_private: true on the source if this is intended"
    )
