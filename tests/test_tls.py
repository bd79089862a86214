"""Feeds over HTTPS, through the collector's own connections (netguard.Pool): a real TLS server
on 127.0.0.1 with a certificate from a test authority."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Iterator

import pytest
import trustme

from monitor.errors import FetchTimeout, Unreachable
from monitor.fetch import Fetcher, Limits, Response
from monitor.netguard import Pool
from tests import server as srv
from tests.server import FeedServer

AT_ONCE = Limits(total=10)

BIG = bytes(range(256)) * 12_000
"""3 MB: more than the connection reads ahead, so reading stops and starts again."""


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def https(authority: trustme.CA) -> Iterator[FeedServer]:
    s = FeedServer()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    s.httpd.socket = context.wrap_socket(s.httpd.socket, server_side=True)
    s.start()
    yield s
    s.stop()


def until_hang_up(body: bytes) -> srv.Handler:
    """A body without a length, ended by closing the connection (without TLS's close_notify,
    as many servers do)."""

    def handler(h: srv.RequestHandler) -> None:
        h.send_response(200)
        h.send_header("Connection", "close")
        h.end_headers()
        h.wfile.write(body)
        h.close_connection = True

    return handler


def url(s: FeedServer, path: str) -> str:
    return s.base.replace("http://", "https://") + path


def trusting(authority: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    authority.configure_trust(context)
    return context


async def fetch(
    context: ssl.SSLContext, *urls: str, etag: str | None = None, limits: Limits = AT_ONCE
) -> list[Response]:
    pool = Pool(1, is_allowed=lambda _: True, ssl_context=context)
    async with Fetcher(contact="test", pool=pool) as fetcher:
        return [await fetcher.get(u, limits=limits, etag=etag) for u in urls]


def test_a_feed_over_https_arrives_whole_and_its_connection_is_kept(https, authority):
    https.feed("/rnz.xml", "rnz_national.xml", etag='"v1"')
    rnz = (srv.FIXTURES / "feeds" / "rnz_national.xml").read_bytes()
    https.route("/big.bin", srv.static(BIG, content_type="application/octet-stream"))
    https.route("/unsized.bin", until_hang_up(BIG))
    feed, big, unsized = asyncio.run(
        fetch(
            trusting(authority), *(url(https, p) for p in ("/rnz.xml", "/big.bin", "/unsized.bin"))
        )
    )
    assert feed.status == 200
    assert feed.body == rnz.replace(b"{base}", https.base.encode())
    assert big.body == BIG
    assert unsized.body == BIG
    (again,) = asyncio.run(fetch(trusting(authority), url(https, "/rnz.xml"), etag='"v1"'))
    assert again.not_modified
    # One TLS connection served both requests of the first client: the idle connection was
    # seen as still open (the server's session tickets are not mistaken for its hang-up).
    first, second, *_ = https.httpd.requests
    assert first.client == second.client


def test_a_certificate_from_an_authority_not_trusted_is_refused(https):
    https.feed("/rnz.xml", "rnz_national.xml")
    with pytest.raises(Unreachable, match="CERTIFICATE_VERIFY_FAILED"):
        asyncio.run(fetch(ssl.create_default_context(), url(https, "/rnz.xml")))
    assert https.httpd.requests == []


def test_a_server_that_never_starts_tls_is_given_up_on_at_the_connect_deadline(authority):
    listener = socket.create_server(("127.0.0.1", 0))  # accepts (the kernel does), never speaks
    port = listener.getsockname()[1]

    stalled = Limits(total=10, connect=0.3)
    try:
        with pytest.raises(FetchTimeout, match=r"could not connect within 0\.3s"):
            asyncio.run(
                fetch(trusting(authority), f"https://127.0.0.1:{port}/feed", limits=stalled)
            )
    finally:
        listener.close()


def test_https_to_a_port_that_speaks_plain_http_is_a_clear_connection_error(server, authority):
    server.feed("/rnz.xml", "rnz_national.xml")
    with pytest.raises(Unreachable, match=r"cannot connect to 127\.0\.0\.1:.*WRONG_VERSION_NUMBER"):
        asyncio.run(fetch(trusting(authority), url(server, "/rnz.xml")))
