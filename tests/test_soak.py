"""Datasette keeps answering while the collector writes: no errors, no 'database is locked'."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from monitor import store
from monitor.collect import collect
from monitor.config import load_config
from tests.conftest import write_config
from tests.server import RequestHandler, send
from tests.test_schedule import free_port, wait_for

MONITOR = str(Path(sys.executable).parent / "monitor")
REQUESTS = 2000


def changing_feed(n: int):
    """Every request brings 20 new items, so every pass writes."""
    counter = itertools.count()

    def handler(h: RequestHandler) -> None:
        batch = next(counter)
        items = "".join(
            f"<item><title>Asylum seekers held in prison, update {n}-{batch}-{i}</title>"
            f"<link>https://example.org/{n}/{batch}/{i}</link></item>"
            for i in range(20)
        )
        send(
            h,
            200,
            f'<?xml version="1.0"?><rss version="2.0"><channel>{items}</channel></rss>'.encode(),
        )

    return handler


def test_readers_never_fail_while_the_collector_writes(server, tmp_path, db_path):
    sources = [
        {"name": f"S{n}", "url": server.route(f"/s{n}.xml", changing_feed(n))} for n in range(5)
    ]
    config = load_config(write_config(tmp_path, sources, topics={"detention": "asylum AND prison"}))
    store.open_db(db_path).close()
    port = free_port()
    datasette = subprocess.Popen(
        [MONITOR, "serve", "--db", str(db_path), "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/coverage/latest_headlines.json?_shape=array"
    done = threading.Event()
    passes = 0

    def writer() -> None:
        nonlocal passes
        db = store.open_db(db_path)
        try:
            while not done.is_set():
                asyncio.run(collect(config, db))
                passes += 1
        finally:
            db.close()

    local = threading.local()
    clients: list[httpx.Client] = []

    def read(_: int) -> str | None:
        if not hasattr(local, "client"):
            local.client = httpx.Client(timeout=10)  # one per thread: a client per call costs 50 ms
            clients.append(local.client)
        try:
            r = local.client.get(url)
        except httpx.HTTPError as e:
            return f"{type(e).__name__}: {e}"
        if r.status_code != 200 or "locked" in r.text:
            return f"HTTP {r.status_code}: {r.text[:200]}"
        return None

    try:
        wait_for(lambda: read(0) is None)
        thread = threading.Thread(target=writer)
        thread.start()
        with ThreadPoolExecutor(max_workers=8) as pool:
            errors = [e for e in pool.map(read, range(REQUESTS)) if e]
        done.set()
        thread.join(timeout=60)
    finally:
        for client in clients:
            client.close()
        datasette.terminate()
        datasette.wait(timeout=10)

    assert errors == []
    assert passes >= 2, "the collector should have written during the reads"
    db = store.open_db(db_path)
    assert db.execute("SELECT count(*) FROM articles").fetchone()[0] == passes * 100
    db.close()
