"""A real HTTP server on 127.0.0.1 for tests: fixture feeds plus hostile behaviours.

Routes map a path to a handler that writes the whole response itself, so a test can serve a file,
an error, a redirect loop, a stall or a trickle over real sockets. Every request is logged.
"""

from __future__ import annotations

import contextlib
import gzip
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"

Handler = Callable[["RequestHandler"], None]


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    client: tuple[str, int]
    """The client's address and port: one per connection."""


class RequestHandler(BaseHTTPRequestHandler):
    server: FixtureHTTPServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    def _handle(self) -> None:
        self.server.requests.append(
            Request(self.path, {k.lower(): v for k, v in self.headers.items()}, self.client_address)
        )
        handler = self.server.routes.get(self.path.split("?")[0])
        if handler is None:
            send(self, 404, b"not found", "text/plain")
            return
        handler(self)

    def log_message(self, format: str, *args: object) -> None:
        pass


class FixtureHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # Dozens of sources connect at once; the default backlog of 5 drops SYNs under load, and a
    # dropped SYN is retried after a second: a spurious connect timeout in the fault suite.
    request_queue_size = 128

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), RequestHandler)
        self.routes: dict[str, Handler] = {}
        self.requests: list[Request] = []
        self.stopping = threading.Event()


@dataclass
class FeedServer:
    httpd: FixtureHTTPServer = field(default_factory=FixtureHTTPServer)

    @property
    def base(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def url(self, path: str) -> str:
        return self.base + path

    def route(self, path: str, handler: Handler) -> str:
        self.httpd.routes[path] = handler
        return self.url(path)

    def feed(self, path: str, fixture: str, **kwargs: object) -> str:
        """Serve a file from tests/fixtures/feeds/, with {base} replaced by this server's URL."""
        body = (FIXTURES / "feeds" / fixture).read_bytes().replace(b"{base}", self.base.encode())
        return self.route(path, static(body, **kwargs))  # type: ignore[arg-type]

    def requests_to(self, path: str) -> list[Request]:
        return [r for r in self.httpd.requests if r.path.split("?")[0] == path]

    def start(self) -> None:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def send(
    h: RequestHandler,
    status: int,
    body: bytes = b"",
    content_type: str = "application/rss+xml; charset=utf-8",
    headers: dict[str, str] | None = None,
) -> None:
    h.send_response(status)
    h.send_header("Content-Type", content_type)
    h.send_header("Content-Length", str(len(body)))
    for key, value in (headers or {}).items():
        h.send_header(key, value)
    h.end_headers()
    if h.command != "HEAD":
        h.wfile.write(body)


def static(
    body: bytes,
    content_type: str = "application/rss+xml; charset=utf-8",
    etag: str | None = None,
    gzipped: bool = False,
    headers: dict[str, str] | None = None,
) -> Handler:
    """A body with optional ETag (answering 304 to If-None-Match) and gzip encoding."""

    extra = headers or {}

    def handler(h: RequestHandler) -> None:
        headers = dict(extra)
        if etag:
            headers["ETag"] = etag
            if h.headers.get("If-None-Match") == etag:
                h.send_response(304)
                h.send_header("ETag", etag)
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
        payload = body
        if gzipped:
            payload = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
        send(h, 200, payload, content_type, headers)

    return handler


def status(code: int, headers: dict[str, str] | None = None, body: bytes = b"error") -> Handler:
    return lambda h: send(h, code, body, "text/html", headers)


def redirect(to: str, code: int = 302) -> Handler:
    return lambda h: send(h, code, b"", "text/html", {"Location": to})


def stall(h: RequestHandler) -> None:
    """Accept the connection and never answer."""
    h.server.stopping.wait(60)
    h.close_connection = True


def headers_then_stall(h: RequestHandler) -> None:
    h.send_response(200)
    h.send_header("Content-Type", "application/rss+xml")
    h.send_header("Content-Length", "100000")
    h.end_headers()
    h.wfile.flush()
    h.server.stopping.wait(60)
    h.close_connection = True


def trickle(h: RequestHandler) -> None:
    """A byte every 0.2 s, forever: only a total deadline stops this one."""
    h.send_response(200)
    h.send_header("Content-Type", "application/rss+xml")
    h.send_header("Content-Length", "100000")
    h.end_headers()
    h.wfile.write(b'<?xml version="1.0"?><rss version="2.0"><channel>')
    h.wfile.flush()
    while not h.server.stopping.wait(0.2):
        try:
            h.wfile.write(b" ")
            h.wfile.flush()
        except OSError:
            break
    h.close_connection = True


def reset_mid_body(h: RequestHandler) -> None:
    h.send_response(200)
    h.send_header("Content-Type", "application/rss+xml")
    h.send_header("Content-Length", "5000")
    h.end_headers()
    h.wfile.write(b'<?xml version="1.0"?><rss version="2.0"><channel><title>cut')
    h.wfile.flush()
    time.sleep(0.05)
    # SO_LINGER 0 makes close() send a TCP RST instead of a FIN.
    h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    h.connection.close()
    h.close_connection = True


def oversize(declared: bool, size: int) -> Handler:
    def handler(h: RequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/rss+xml")
        if declared:
            h.send_header("Content-Length", str(size))
        else:
            h.send_header("Connection", "close")
        h.end_headers()
        chunk = b"<!-- padding -->" * 4096
        sent = 0
        try:
            while sent < size:
                h.wfile.write(chunk)
                sent += len(chunk)
        except OSError:
            pass
        h.close_connection = True

    return handler


class Blackhole:
    """A port whose accept queue is full, so a new connection is never established."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(0)
        self.port = self.listener.getsockname()[1]
        self.fillers = []
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", self.port))
            self.fillers.append(filler)
        time.sleep(0.1)

    def close(self) -> None:
        for s in [*self.fillers, self.listener]:
            s.close()


class Replies:
    """A bare TCP server that answers each of its first `connections` connections with `reply`,
    whatever was asked, and hangs up: bytes no HTTP server can be made to send."""

    def __init__(self, reply: bytes, connections: int) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, args=(reply, connections))
        self._thread.start()

    def _serve(self, reply: bytes, connections: int) -> None:
        for _ in range(connections):
            try:
                conn, _ = self.listener.accept()
            except OSError:  # closed before the connections came
                return
            with conn:
                conn.recv(65536)
                conn.sendall(reply)

    def __enter__(self) -> Replies:
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):  # shutdown() wakes an accept() still waiting
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self._thread.join(timeout=5)
