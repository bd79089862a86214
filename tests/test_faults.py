"""The fault suite: one collect over healthy sources and every hostile endpoint we know of.

All healthy sources land in full, every hostile source gets a specific, human-readable status,
stored data is untouched, and the database passes PRAGMA integrity_check.
"""

from __future__ import annotations

import asyncio
import gc
import gzip
import socket
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.cookies import SimpleCookie

import aiohttp
import pytest
from yarl import URL

from monitor import netguard, store
from monitor.collect import collect
from monitor.config import load_config
from monitor.errors import BlockedAddress, FetchError, Unreachable
from monitor.fetch import Fetcher, Limits, Response
from monitor.netguard import Pool, is_public
from tests import server as srv
from tests.conftest import write_config

GOOD = {
    "RNZ": ("/rnz.xml", "rnz_national.xml", 3),
    "Stuff": ("/stuff.xml", "stuff_atom.xml", 2),
    "Scoop": ("/scoop.rdf", "scoop_rss1.rdf", 1),
}


def rss(items: str, declaration: bytes = b'<?xml version="1.0" encoding="utf-8"?>') -> bytes:
    return (
        declaration
        + f'<rss version="2.0"><channel><title>T</title>{items}</channel></rss>'.encode()
    )


def item(
    n: int | str, title: str = "", guid: str | None = None, link: str | None = None, date: str = ""
) -> str:
    guid_xml = f"<guid isPermaLink='false'>{guid}</guid>" if guid else ""
    date_xml = f"<pubDate>{date}</pubDate>" if date else ""
    link = link or f"https://example.org/{n}"
    return (
        f"<item><title>{title or f'Item {n}'}</title><link>{link}</link>{guid_xml}{date_xml}</item>"
    )


CHALLENGE = b"""<!DOCTYPE html><html><head><title>Just a moment...</title></head>
<body><div id="challenge-platform">Checking your browser before accessing the site.</div></body></html>"""
BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
<!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
<!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
<!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
<!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
<!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">]>
<rss version="2.0"><channel><title>bomb</title>
<item><title>&lol9;</title><link>https://example.org/bomb</link></item></channel></rss>"""


def in_2h() -> str:
    return format_datetime(datetime.now(UTC) + timedelta(hours=2), usegmt=True)


def redirect_chain(server, prefix: str, hops: int) -> None:
    for n in range(hops):
        server.route(f"{prefix}{n}", srv.redirect(f"{prefix}{n + 1}"))
    server.route(f"{prefix}{hops}", srv.static(rss(item("chain"))))


# name -> (handler, expected status, words the error or warning must contain)
FAILING = {
    "http-400": (srv.status(400), "http_error", "HTTP 400"),
    "http-403": (srv.status(403), "http_error", "HTTP 403"),
    "http-404": (srv.status(404), "http_error", "HTTP 404"),
    "http-410": (srv.status(410), "http_error", "gone for good"),
    "http-500": (srv.status(500), "http_error", "HTTP 500"),
    "http-502": (srv.status(502), "http_error", "HTTP 502"),
    "http-503": (srv.status(503), "http_error", "HTTP 503"),
    "429-seconds": (srv.status(429, {"Retry-After": "3600"}), "retry_later", "asked us to wait until"),
    "503-date": (lambda h: srv.status(503, {"Retry-After": in_2h()})(h), "retry_later", "asked us to wait until"),
    "bot-challenge": (srv.status(403, body=CHALLENGE), "bot_challenge", "bot challenge (Cloudflare)"),
    "redirect-loop": (srv.redirect("/hostile/redirect-loop"), "redirect_error", "more than 5 redirects"),
    "redirect-ftp": (srv.redirect("ftp://example.org/feed"), "redirect_error", "non-HTTP"),
    "redirect-nowhere": (lambda h: srv.send(h, 302, headers={}), "redirect_error", "HTTP 302 without an address"),
    "redirect-empty": (srv.redirect(""), "redirect_error", "HTTP 302 without an address"),
    "stall": (srv.stall, "timeout", "sent nothing for 1.5s"),
    "headers-then-stall": (srv.headers_then_stall, "timeout", ""),
    "trickle": (srv.trickle, "timeout", "total deadline of 3s"),
    "reset-mid-body": (srv.reset_mid_body, "unreachable", "broke mid-response"),
    "over-cap-declared": (srv.oversize(True, 3_000_000), "too_large", "the cap is 2,097,152"),
    "over-cap-chunked": (srv.oversize(False, 3_000_000), "too_large", "over the cap"),
    "gzip-bomb": (None, "too_large", "over the cap"),  # body made once, below
    "corrupt-gzip": (srv.static(b"\x1f\x8b\x08\x00garbage" * 10, headers={"Content-Encoding": "gzip"}), "fetch_error", "the compressed body is corrupt"),
    "html": (srv.static(b"<!DOCTYPE html><html><body>hi</body></html>", "text/html"), "not_a_feed", "HTML page"),
    "empty": (srv.static(b""), "not_a_feed", "empty"),
    "random-bytes": (srv.static(bytes(range(256)) * 40), "not_a_feed", "not a"),
    "truncated-no-items": (srv.static(b'<?xml version="1.0"?><rss version="2.0"><chan'), "not_a_feed", "not a usable feed"),
}  # fmt: skip

# name -> (body, expected new articles, a warning it must carry or "")
ODD_BUT_USABLE = {
    "truncated-with-items": (rss(item(1) + item(2))[:-20], 2, "ill-formed feed"),
    "wrong-declared-encoding": (rss(item(3, "Caf\xe9 society")).replace("Café".encode(), b"Caf\xe9"), 1, "ill-formed"),
    "nul-and-control-chars": (rss(item(4, "Breaking&#0; news")).replace(b"Breaking", b"Break\x00ing\x07"), 1, ""),
    "dates-1900-and-2100": (rss(item(5, date="Mon, 01 Jan 1900 00:00:00 GMT") + item(6, date="Fri, 01 Jan 2100 00:00:00 GMT")), 2, ""),
    "duplicate-guids": (rss(item(7, guid="same") + item(8, guid="same")), 2, ""),
    "same-link-two-guids": (rss(item(9, guid="a", link="https://example.org/same") + item(10, guid="b", link="https://example.org/same")), 1, ""),
    "one-mb-title": (rss(item(11, "x" * 1_000_000)), 1, ""),
    "hundred-thousand-items": (rss("".join(item(f"k{n}") for n in range(100_000))), 1000, "only the first 1,000"),
    "entity-bomb": (BILLION_LAUGHS, 1, "ill-formed"),
}  # fmt: skip


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    return gzip.compress(b"\0" * 60_000_000, compresslevel=9)  # ~60 KB on the wire


def test_fault_suite(server, tmp_path, db_path, gzip_bomb):
    sources = []
    for name, (path, fixture, _) in GOOD.items():
        sources.append({"name": name, "url": server.feed(path, fixture)})
    for name, (handler, _, _) in FAILING.items():
        if name == "gzip-bomb":
            handler = srv.static(gzip_bomb, gzipped=False, headers={"Content-Encoding": "gzip"})
        url = server.route(f"/hostile/{name}", handler)
        sources.append({"name": name, "url": url, "max_size": "2MB"})
    redirect_chain(server, "/chain/", 6)
    sources.append({"name": "redirect-chain-too-long", "url": server.url("/chain/0")})
    for name, (body, _, _) in ODD_BUT_USABLE.items():
        sources.append({"name": name, "url": server.route(f"/odd/{name}", srv.static(body))})
    # http.server sends headers in Latin-1: an ETag aiohttp cannot read as UTF-8.
    latin1 = srv.static(rss(item(12)), etag='"café"')
    sources.append({"name": "latin-1-etag", "url": server.route("/odd/latin-1-etag", latin1)})
    sources.append({"name": "refused", "url": f"http://127.0.0.1:{closed_port()}/feed"})
    sources.append({"name": "no-dns", "url": "http://feeds.nonexistent.invalid/feed"})
    blackhole = srv.Blackhole()
    sources.append({"name": "connect-timeout", "url": f"http://127.0.0.1:{blackhole.port}/feed"})
    sources.append(
        {"name": "private-not-allowed", "url": server.url("/rnz.xml"), "allow_private": False}
    )

    config = load_config(write_config(tmp_path, sources))
    db = store.open_db(db_path)
    try:
        reports = {r.source: r for r in asyncio.run(collect(config, db))}
    finally:
        blackhole.close()

    for name, (_, _, new) in GOOD.items():
        assert (reports[name].status, reports[name].counts.new) == ("ok", new), reports[name].line()

    expected = {name: (code, words) for name, (_, code, words) in FAILING.items()}
    expected |= {
        "redirect-chain-too-long": ("redirect_error", "more than 5 redirects"),
        "refused": ("unreachable", "cannot connect to 127.0.0.1"),
        "no-dns": ("unreachable", "feeds.nonexistent.invalid"),
        "connect-timeout": ("timeout", "could not connect within 1.5s"),
        "private-not-allowed": ("blocked_address", "refused to connect 127.0.0.1"),
    }
    for name, (code, words) in expected.items():
        report = reports[name]
        assert report.status == code, report.line()
        assert words in (report.error or ""), report.line()

    for name, (_, new, warning) in ODD_BUT_USABLE.items():
        report = reports[name]
        assert report.status == "ok", report.line()
        assert report.counts.new == new, report.line()
        assert warning in " ".join(report.warnings), report.line()

    assert (reports["latin-1-etag"].status, reports["latin-1-etag"].counts.new) == ("ok", 1)
    assert db.execute("SELECT etag FROM sources WHERE name = 'latin-1-etag'").fetchone() == (
        '"café"',
    )

    titles = dict(db.execute("SELECT url, title FROM articles").fetchall())
    assert titles["https://example.org/4"] == "Break ing news"
    assert len(titles["https://example.org/11"]) == 500
    assert titles["https://example.org/bomb"].count("lol") < 100  # entities were not expanded
    published = dict(db.execute("SELECT url, published FROM articles").fetchall())
    first_seen = db.execute(
        "SELECT first_seen FROM articles WHERE url = 'https://example.org/5'"
    ).fetchone()[0]
    assert published["https://example.org/5"] == first_seen  # 1900: not a real date
    assert published["https://example.org/6"] <= first_seen  # 2100: clamped to now

    failing = dict(
        db.execute(
            "SELECT name, consecutive_failures FROM sources WHERE last_error IS NOT NULL"
        ).fetchall()
    )
    assert set(failing) == set(expected) and set(failing.values()) == {1}
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    db.close()


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True), ("2001:4860:4860::8888", True),
        ("127.0.0.1", False), ("10.1.2.3", False), ("172.16.0.1", False), ("192.168.1.1", False),
        ("169.254.169.254", False), ("100.64.0.1", False), ("0.0.0.0", False), ("224.0.0.1", False),
        ("::1", False), ("fe80::1", False), ("fd00::1", False), ("::ffff:127.0.0.1", False),
        ("ff02::1", False),
    ],
)  # fmt: skip
def test_public_addresses(address, public):
    assert is_public(address) is public


def test_redirect_to_an_internal_address_is_refused_at_that_hop(server):
    """127.0.0.1 plays the public internet here; 127.0.0.2 the private network behind it."""
    port = server.httpd.server_address[1]
    server.route("/public-feed", srv.redirect(f"http://127.0.0.2:{port}/rnz.xml"))
    server.feed("/rnz.xml", "rnz_national.xml")

    async def fetch(url: str):
        pool = Pool(4, is_allowed=lambda address: address == "127.0.0.1")
        async with Fetcher(contact="test", pool=pool) as fetcher:
            return await fetcher.get(url, limits=Limits(total=5))

    direct = asyncio.run(fetch(server.url("/rnz.xml")))
    assert direct.status == 200
    with pytest.raises(BlockedAddress, match=r"refused to connect 127\.0\.0\.2"):
        asyncio.run(fetch(server.url("/public-feed")))
    assert server.requests_to("/rnz.xml") and len(server.requests_to("/rnz.xml")) == 1


def test_a_name_whose_every_address_is_private_is_refused_naming_them(server):
    """The guard checks the addresses a name resolves to (aiohttp resolves names, and takes an
    address literal as it is), each as its socket is made: the error names the host and the
    addresses refused (127.0.0.1 for localhost here; ::1 too where it resolves to both)."""
    server.feed("/rnz.xml", "rnz_national.xml")
    url = f"http://localhost:{server.httpd.server_address[1]}/rnz.xml"

    async def fetch() -> None:
        async with Fetcher(contact="test") as fetcher:
            await fetcher.get(url, limits=Limits(total=5))

    with pytest.raises(BlockedAddress) as refused:
        asyncio.run(fetch())
    assert "refused to connect localhost (" in str(refused.value)
    assert "127.0.0.1" in str(refused.value)
    assert "not a public address" in str(refused.value)
    assert server.requests_to("/rnz.xml") == []


@pytest.mark.parametrize(
    ("reply", "said"),
    [
        (b"\x00\x01garbage\r\n\r\n", "Bad status line: Expected HTTP/, RTSP/ or ICE/: b'\\x00\\x01garbage'"),
        (b"HTTP/1.1 200 OK\r\nX Bad: 1\r\nContent-Length: 2\r\n\r\nok", "Invalid header token: b'X Bad: 1'"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc", "(received 3 of 100 bytes)"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "Invalid character in chunk size"),
        (b"", "Server disconnected"),
    ],
)  # fmt: skip
def test_a_server_breaking_http_is_named_on_one_line(reply, said):
    """What the parser found wrong, as a person reads it in `monitor sources`: aiohttp quotes
    the offending line with a caret on the line below, and wraps a short body's cause."""

    async def fetch(port: int) -> None:
        async with Fetcher(contact="test") as fetcher:
            url = f"http://127.0.0.1:{port}/feed"
            await fetcher.get(url, limits=Limits(total=5, allow_private=True))

    # Two: a request the server drops is retried once (RFC 9112 9.3.1).
    with srv.Replies(reply, connections=2) as server, pytest.raises(Unreachable) as broke:
        asyncio.run(fetch(server.port))
    message = str(broke.value)
    assert message.startswith("the connection broke mid-response: ")
    assert said in message
    assert "\n" not in message and "^" not in message


def test_a_header_that_is_not_utf8_is_read_as_latin1():
    """aiohttp keeps such bytes as lone surrogates, which SQLite refuses to store (the fault
    suite's latin-1-etag source stores its poll through the collector)."""
    reply = (
        b'HTTP/1.1 200 OK\r\nETag: "caf\xe9"\r\nX-Place: caf\xc3\xa9\r\nContent-Length: 2\r\n\r\nok'
    )

    async def fetch(port: int) -> Response:
        async with Fetcher(contact="test") as fetcher:
            url = f"http://127.0.0.1:{port}/feed"
            return await fetcher.get(url, limits=Limits(total=5, allow_private=True))

    with srv.Replies(reply, connections=1) as server:
        response = asyncio.run(fetch(server.port))
    assert response.etag == '"café"'
    assert response.headers["x-place"] == "café"  # UTF-8 stays UTF-8


def test_a_corrupt_compressed_body_is_an_error_of_its_url(server):
    url = server.route("/corrupt.xml", FAILING["corrupt-gzip"][0])

    async def fetch() -> None:
        async with Fetcher(contact="test") as fetcher:
            await fetcher.get(url, limits=Limits(total=5, allow_private=True))

    with pytest.raises(FetchError, match="the compressed body is corrupt") as corrupt:
        asyncio.run(fetch())
    assert corrupt.value.url == url  # was "": the decoder did not know whose body it read


def test_a_pooled_connection_the_server_closed_is_not_reused():
    """A server that closed an idle connection must be seen by the pool, or the next request
    is sent down a dead socket."""
    # Each answer is followed by a hang-up, as servers do when their keep-alive time is up.
    response = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok"

    async def fetch_twice(port: int) -> list[int]:
        statuses = []
        async with Fetcher(contact="test", pool=Pool(1, is_allowed=lambda _: True)) as fetcher:
            for _ in range(2):
                r = await fetcher.get(f"http://127.0.0.1:{port}/feed", limits=Limits(total=5))
                statuses.append(r.status)
                await asyncio.sleep(0.05)  # the server's FIN arrives
        return statuses

    with srv.Replies(response, connections=2) as server:
        assert asyncio.run(fetch_twice(server.port)) == [200, 200]


def test_a_burst_of_requests_to_one_host_leaves_its_connections_open_for_the_next(server):
    """Fetcher keeps as many connections idle as it has requests in flight (for its 5 s
    keep-alive): sources on one host (Google News searches, an outlet's several feeds) poll on
    the connections the last ones used, instead of connecting (and, over TLS, a handshake)
    again. Kept to 8, a burst of 32 closed 24 as they came free and the next burst reopened
    them (a full cycle of the benchmark: 450 connects for 1,000 feeds)."""

    def slow(h) -> None:
        time.sleep(0.1)  # every request of a burst is in flight at once: 32 connections
        srv.send(h, 200, rss("<item><title>T</title><link>https://example.org/a</link></item>"))

    server.route("/feed.xml", slow)

    async def bursts() -> list[set[tuple[str, int]]]:
        seen = []
        async with Fetcher(contact="test", concurrency=32, per_host=32) as fetcher:
            limits = Limits(total=10, allow_private=True)
            for _ in range(2):
                before = len(server.requests_to("/feed.xml"))
                await asyncio.gather(
                    *(fetcher.get(server.url("/feed.xml"), limits=limits) for _ in range(32))
                )
                seen.append({r.client for r in server.requests_to("/feed.xml")[before:]})
        return seen

    first, second = asyncio.run(bursts())
    assert len(first) == 32
    assert second == first  # the same 32 connections, none opened anew


def test_a_sites_cookie_comes_back_to_it_at_the_next_poll_and_to_no_other_site(server):
    """A CDN sets a bot-management cookie (a token with "=" and "/") and expects it back as it
    was; a thousand sources' cookies wait in one jar, and each request carries its site's only."""
    seen: list[str | None] = []

    def feed(h) -> None:
        seen.append(h.headers.get("Cookie"))
        srv.send(h, 200, rss("<item><title>T</title><link>https://example.org/a</link></item>"),
                 headers={"Set-Cookie": "__cf_bm=a.b-c/d+e=; Path=/"})  # fmt: skip

    server.route("/feed.xml", feed)

    async def polls() -> int:
        async with Fetcher(contact="test") as fetcher:
            limits = Limits(total=5, allow_private=True)
            jar = fetcher._session(limits).cookie_jar
            for n in range(50):  # other sites' cookies, as a thousand sources' CDNs leave them
                jar.update_cookies({f"cdn{n}": "v"}, URL(f"https://www.site{n}.co.nz/"))
            for _ in range(2):
                await fetcher.get(server.url("/feed.xml"), limits=limits)
            return len(jar)

    assert asyncio.run(polls()) == 51
    assert seen == [None, "__cf_bm=a.b-c/d+e="]  # as it was set: not quoted, not another value


def test_the_jar_sends_a_request_its_own_sites_cookies_by_domain_path_secure_and_expiry():
    """What RFC 6265 says a browser sends, from a jar holding other sites' cookies too: the
    collector's jar as netguard.Pool sets it up."""
    set_by = {
        "https://www.stuff.co.nz/": [
            "wide=v; Domain=stuff.co.nz; Path=/",  # sent to every host under stuff.co.nz
            "host=v; Path=/",  # host-only
            "section=v; Path=/national",
            "tls=v; Path=/; Secure",
            "gone=v; Path=/; Max-Age=0",
            "kept=v; Path=/; Max-Age=3600",
        ],
        "https://www.stuff.com/": ["other=v; Path=/"],
        "http://10.0.0.5/": ["intranet=v; Path=/"],  # an address literal's (allow_private)
        **{f"https://www.site{n}.co.nz/": [f"cdn{n}=v; Path=/"] for n in range(100)},
    }

    async def sent() -> dict[str, list[str]]:
        pool = Pool(1)
        try:
            jar = pool.session().cookie_jar
            for origin, cookies in set_by.items():
                for header in cookies:
                    jar.update_cookies(SimpleCookie(header), URL(origin))
            urls = [
                "https://www.stuff.co.nz/national/rss", "http://www.stuff.co.nz/rss",
                "https://interactives.stuff.co.nz/x", "https://www.stuff.com/",
                "http://10.0.0.5/feed", "https://www.site7.co.nz/feed",
            ]  # fmt: skip
            return {url: sorted(jar.filter_cookies(URL(url))) for url in urls}
        finally:
            await pool.aclose()

    assert asyncio.run(sent()) == {
        "https://www.stuff.co.nz/national/rss": ["host", "kept", "section", "tls", "wide"],
        "http://www.stuff.co.nz/rss": ["host", "kept", "wide"],
        "https://interactives.stuff.co.nz/x": ["wide"],
        "https://www.stuff.com/": ["other"],
        "http://10.0.0.5/feed": ["intranet"],
        "https://www.site7.co.nz/feed": ["cdn7"],
    }


def test_a_poll_leaves_no_reference_cycle_for_the_garbage_collector(server):
    """A poll's objects (the request, the response, their streams) go by refcount when it is
    done, redirects too: what only the cyclic collector frees costs its passes over everything
    the collector holds (httpx's response and body stream pointed at each other, ~40 objects a
    request, 39,000 for a pass of 1,000 304s), and cli.tune_gc counts on there being none."""
    server.route("/feed.xml", srv.static(rss("<item><title>T</title></item>"), etag='"v1"'))
    server.route("/moved.xml", srv.redirect(server.url("/feed.xml")))

    async def polls() -> list[str]:
        async with Fetcher(contact="test") as fetcher:
            limits = Limits(total=5, allow_private=True)
            await fetcher.get(server.url("/feed.xml"), limits=limits)  # the pool's first use
            gc.collect()
            gc.disable()
            gc.set_debug(gc.DEBUG_SAVEALL)
            try:
                await fetcher.get(server.url("/feed.xml"), limits=limits)
                await fetcher.get(server.url("/feed.xml"), limits=limits, etag='"v1"')  # a 304
                await fetcher.get(server.url("/moved.xml"), limits=limits)
                gc.collect()
                return [type(o).__qualname__ for o in gc.garbage]
            finally:
                gc.set_debug(0)
                gc.garbage.clear()
                gc.enable()

    assert asyncio.run(polls()) == []


def test_a_server_sending_faster_than_we_read_fills_no_more_than_the_read_ahead(
    server, monkeypatch
):
    """A connection stops reading its socket once twice netguard.READ_AHEAD bytes of the body
    wait unread, and starts again as they are read: a fast server (or a hostile one) cannot
    fill the collector's memory faster than it reads, and the body still arrives whole."""
    body = bytes(range(256)) * 32_000  # 8 MB
    server.route("/big.bin", srv.static(body, content_type="application/octet-stream"))
    most = 0
    received = aiohttp.StreamReader.feed_data

    def counted(self: aiohttp.StreamReader, *args) -> None:
        nonlocal most
        received(self, *args)
        most = max(most, self._size)

    monkeypatch.setattr(aiohttp.StreamReader, "feed_data", counted)

    async def read_slowly() -> bytes:
        pool = Pool(1, is_allowed=lambda _: True)
        try:
            async with pool.session().get(server.url("/big.bin")) as r:
                chunks: list[bytes] = []
                async for chunk in r.content.iter_any():
                    if not chunks:
                        await asyncio.sleep(0.3)  # the server sends on meanwhile
                    chunks.append(chunk)
                return b"".join(chunks)
        finally:
            await pool.aclose()

    assert asyncio.run(read_slowly()) == body
    # Reached while we slept, never passed by more than one read of the socket (asyncio reads
    # up to 256 KB at a time); without the pause it was most of the 8 MB.
    assert 2 * netguard.READ_AHEAD < most <= 2 * netguard.READ_AHEAD + 256 * 1024


def test_a_cookie_set_on_the_way_comes_back_through_the_redirect_and_at_the_next_poll(server):
    # A consent or cookie-check wall: no cookie, a redirect that sets one and comes back. The
    # cookie must be kept from the redirect itself, or this would loop until the redirect limit.
    feed = rss("<item><title>T</title><link>https://example.org/a</link></item>")

    def gated(h) -> None:
        if "consent=yes" in h.headers.get("Cookie", ""):
            srv.send(h, 200, feed)
        else:
            srv.send(h, 302, headers={"Location": "/consent"})

    server.route("/feed.xml", gated)
    server.route(
        "/consent",
        lambda h: srv.send(h, 302, headers={"Location": "/feed.xml", "Set-Cookie": "consent=yes"}),
    )

    async def two_polls() -> list[int]:
        async with Fetcher(contact="test") as fetcher:
            limits = Limits(total=5, allow_private=True)
            return [(await fetcher.get(server.url("/feed.xml"), limits=limits)).status
                    for _ in range(2)]  # fmt: skip

    assert asyncio.run(two_polls()) == [200, 200]
    feed_requests = [r.headers.get("cookie") for r in server.requests_to("/feed.xml")]
    assert feed_requests == [None, "consent=yes", "consent=yes"]  # the second poll: no detour
