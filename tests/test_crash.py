"""Crash safety: `monitor collect` killed with SIGKILL at random points never corrupts or loses.

Each kill lands somewhere in fetching, parsing or writing. After every kill the database must pass
its integrity checks and still hold every article it held before; a final clean run must end with
exactly the articles that a run that was never interrupted stores.
"""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tests import server as srv
from tests.conftest import write_config

FEEDS = 30
ITEMS = 200
MONITOR = str(Path(sys.executable).parent / "monitor")


def feed(n: int) -> bytes:
    items = "".join(
        f"<item><title>Feed {n} story {i} about asylum and prisons</title>"
        f"<link>https://example.org/{n}/{i}</link><guid>{n}-{i}</guid>"
        f"<description>Summary {i} of feed {n}, long enough to give the full-text index work.</description>"
        f"<pubDate>Tue, 24 Nov 2026 10:{i % 60:02d}:00 +1300</pubDate></item>"
        for i in range(ITEMS)
    )
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>F{n}</title>{items}</channel></rss>'.encode()


def urls(db_path: Path) -> set[str]:
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        # The full-text index agrees with the table it indexes.
        conn.execute("INSERT INTO articles_fts (articles_fts) VALUES ('integrity-check')")
        orphans = conn.execute(
            "SELECT count(*) FROM articles WHERE id NOT IN (SELECT article_id FROM sightings)"
        ).fetchone()
        assert orphans == (0,)
        return {row[0] for row in conn.execute("SELECT url FROM articles")}
    finally:
        conn.close()


def collect(config: Path, db_path: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [MONITOR, "collect", "--config", str(config), "--db", str(db_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_sigkill_at_random_points_loses_nothing(server, tmp_path):
    sources = [
        {"name": f"F{n}", "url": server.route(f"/f{n}.xml", srv.static(feed(n))), "timeout": "60s"}
        for n in range(FEEDS)
    ]
    config = write_config(tmp_path, sources, topics={"detention": "asylum AND prison*"})

    clean_db = tmp_path / "clean.db"
    assert collect(config, clean_db).wait(timeout=120) == 0
    clean = urls(clean_db)
    assert len(clean) == FEEDS * ITEMS

    crash_db = tmp_path / "crash.db"
    rng = random.Random(20261125)
    held: set[str] = set()
    killed = 0
    for _ in range(8):
        proc = collect(config, crash_db)
        time.sleep(rng.uniform(0.3, 2.5))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.wait(timeout=60)
        now_held = urls(crash_db) if crash_db.exists() else set()
        assert held <= now_held, "a committed article was lost"
        held = now_held
    assert killed >= 3, "the kills should land mid-run; make the run longer if this fails"

    assert collect(config, crash_db).wait(timeout=120) == 0
    assert urls(crash_db) == clean
