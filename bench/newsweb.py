"""A loopback news web for benchmarks: N realistic feeds served over real HTTP.

Feeds alternate RSS 2.0 and Atom, carry ~50 items with HTML summaries of a few hundred
characters, answer If-None-Match with 304, and every tenth is slow (a 50 ms pause). The content
of every feed changes when `cycle` is bumped, so a pass can be "all changed" or "all unchanged".
The same feeds under /plain/ come without an ETag, as from a server that sends none: every
poll gets the whole body.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from bench.synthetic import text

ITEMS = 50


def feed_body(n: int, cycle: int) -> bytes:
    rng = random.Random(n * 1_000_003 + cycle)
    entries = []
    for i in range(ITEMS):
        title = text(rng, 8).capitalize()
        summary = f"<p>{text(rng, 25)}.</p><p><strong>{text(rng, 12)}</strong> {text(rng, 18)}.</p>"
        link = f"https://outlet{n % 40}.example/news/{cycle}/{n}/{i}/{title.split()[0]}"
        minute = (cycle * ITEMS + i) % 60
        if n % 2:
            entries.append(
                f"<entry><id>urn:{n}:{cycle}:{i}</id><title>{title}</title>"
                f'<link href="{link}"/><updated>2026-11-24T10:{minute:02d}:00+13:00</updated>'
                f'<summary type="html"><![CDATA[{summary}]]></summary></entry>'
            )
        else:
            entries.append(
                f"<item><title>{title}</title><link>{link}</link>"
                f'<guid isPermaLink="false">{n}-{cycle}-{i}</guid>'
                f"<pubDate>Tue, 24 Nov 2026 10:{minute:02d}:00 +1300</pubDate>"
                f"<description><![CDATA[{summary}]]></description></item>"
            )
    if n % 2:
        return (
            '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
            f"<title>Outlet {n}</title><id>urn:feed:{n}</id>{''.join(entries)}</feed>"
        ).encode()
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>Outlet {n}</title>{''.join(entries)}</channel></rss>"
    ).encode()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # A class attribute: the constructor listens, so one set on the instance leaves the backlog
    # at 5, and of the 32 connections a collector opens at once some have their SYN dropped and
    # retried a second later (the unchanged cycle's wall time 1.5-10 s for the same CPU).
    request_queue_size = 256


class NewsWeb:
    def __init__(self, feeds: int) -> None:
        self.feeds = feeds
        self.cycle = 0
        self._cache: dict[tuple[int, int], tuple[bytes, str]] = {}
        web = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                validators = not self.path.startswith("/plain/")
                n = int(self.path.rsplit("/", 1)[1].split(".")[0].removeprefix("feed"))
                body, etag = web.body(n)
                if n % 10 == 0:
                    time.sleep(0.05)
                if validators and self.headers.get("If-None-Match") == etag:
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                kind = "application/atom+xml" if n % 2 else "application/rss+xml"
                self.send_header("Content-Type", f"{kind}; charset=utf-8")
                if validators:
                    self.send_header("ETag", etag)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = _Server(("127.0.0.1", 0), Handler)

    def body(self, n: int) -> tuple[bytes, str]:
        key = (n, self.cycle)
        if key not in self._cache:
            body = feed_body(n, self.cycle)
            self._cache[key] = (body, '"' + hashlib.sha1(body).hexdigest()[:16] + '"')
        return self._cache[key]

    def warm(self) -> None:
        """Generate every body up front, so the server's own CPU is not in the figures."""
        for n in range(self.feeds):
            self.body(n)

    def url(self, n: int, validators: bool = True) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}/{'' if validators else 'plain/'}feed{n}.xml"

    def start(self) -> None:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
