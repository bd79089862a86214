"""The long-running collector: due sources, config reload, and `monitor run` end to end."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from monitor import store, store_stories
from monitor.schedule import Collector
from tests.conftest import write_config

ROOT = Path(__file__).parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_poll_due_polls_each_due_source_once_and_reloads_config(server, tmp_path, db_path):
    rnz = server.feed("/rnz.xml", "rnz_national.xml")
    stuff = server.feed("/stuff.xml", "stuff_atom.xml")
    config_path = write_config(tmp_path, [{"name": "RNZ", "url": rnz}])

    async def scenario() -> list[str]:
        collector = Collector.open(config_path, db_path)
        db = collector.db
        await collector.poll_due()
        await asyncio.gather(*collector.in_flight.values())
        await collector.poll_due()  # RNZ is not due again for 10 minutes
        assert collector.in_flight == {}

        # An invalid edit keeps the running config.
        config_path.write_text("sources: [oops")
        os.utime(config_path, (time.time() + 5, time.time() + 5))
        await collector.poll_due()
        assert [s.name for s in collector.config.sources] == ["RNZ"]

        # A valid edit is picked up without a restart; the new source is due at once.
        write_config(tmp_path, [{"name": "RNZ", "url": rnz}, {"name": "Stuff", "url": stuff}])
        os.utime(config_path, (time.time() + 10, time.time() + 10))
        await collector.poll_due()
        await asyncio.gather(*collector.in_flight.values())
        await collector.stop()
        names = [r[0] for r in db.execute("SELECT source FROM fetches ORDER BY id").fetchall()]
        db.close()
        return names

    assert asyncio.run(scenario()) == ["RNZ", "Stuff"]
    assert len(server.requests_to("/rnz.xml")) == 1


def test_a_tick_polls_each_due_source_with_the_validators_it_stored(server, tmp_path, db_path):
    # A tick reads the due sources' states in one query; each poll must still get its own.
    rnz = server.feed("/rnz.xml", "rnz_national.xml", etag='"RNZ-1"')
    stuff = server.feed("/stuff.xml", "stuff_atom.xml", etag='"Stuff-1"')
    sources = [{"name": "RNZ", "url": rnz}, {"name": "Stuff", "url": stuff}]
    config_path = write_config(tmp_path, sources)

    async def scenario() -> None:
        collector = Collector.open(config_path, db_path)
        for _ in range(2):
            await collector.poll_due()
            await asyncio.gather(*collector.in_flight.values())
            await collector.polling.writer.drain()
            collector.db.execute("UPDATE sources SET next_poll = '2000-01-01T00:00:00Z'")
        await collector.stop()
        collector.db.close()

    asyncio.run(scenario())
    assert [r.headers.get("if-none-match") for r in server.requests_to("/rnz.xml")] == [
        None,
        '"RNZ-1"',
    ]
    assert server.requests_to("/stuff.xml")[-1].headers["if-none-match"] == '"Stuff-1"'


def test_daily_housekeeping_writes_through_the_writer_and_keeps_its_memory(
    server, tmp_path, db_path
):
    # Retention and the word counts' flush run on the writer's connection. Were they written
    # on the event loop's, the day's counts would stay in the writer's memory (lost if the
    # process is killed), and a pruning commit from another connection would make the next
    # batch drop the clusterer's memory and load its window again.
    rnz = server.feed("/rnz.xml", "rnz_national.xml")
    stuff = server.feed("/stuff.xml", "stuff_atom.xml")
    config_path = write_config(tmp_path, [{"name": "RNZ", "url": rnz}])

    def age(database) -> None:  # RNZ's articles match no topic: old ones are pruned
        database.execute("UPDATE articles SET first_seen = '2000-01-01T00:00:00Z'")

    async def scenario() -> tuple[int, int, bool]:
        collector = Collector.open(config_path, db_path)
        writer = collector.polling.writer
        await collector.poll_due()
        await asyncio.gather(*collector.in_flight.values())
        memory = store_stories._MEMORY[writer.db]
        await writer.call(age)
        await collector.daily()
        (words,) = collector.db.execute("SELECT count(*) FROM story_words").fetchone()
        (left,) = collector.db.execute("SELECT count(*) FROM articles").fetchone()
        write_config(tmp_path, [{"name": "RNZ", "url": rnz}, {"name": "Stuff", "url": stuff}])
        os.utime(config_path, (time.time() + 10, time.time() + 10))
        await collector.poll_due()  # a reload (sync_sources on the writer), then Stuff's poll
        await asyncio.gather(*collector.in_flight.values())
        kept = store_stories._MEMORY.get(writer.db) is memory
        await collector.stop()
        collector.db.close()
        return words, left, kept

    words, left, kept = asyncio.run(scenario())
    assert words > 0  # the day's word counts reached the table
    assert left == 0  # pruned
    assert kept


def wait_for(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def headlines(port: int) -> list[dict] | None:
    try:
        r = httpx.get(
            f"http://127.0.0.1:{port}/coverage/latest_headlines.json?_shape=array", timeout=2
        )
    except httpx.HTTPError:
        return None
    return r.json() if r.status_code == 200 else None


def start_monitor_run(server, tmp_path, db_path, **popen) -> tuple[subprocess.Popen[bytes], int]:
    """`monitor run` over the RNZ fixture, everything tagged, Datasette on a free port."""
    rnz = server.feed("/rnz.xml", "rnz_national.xml")
    config = write_config(
        tmp_path,
        [{"name": "RNZ", "url": rnz, "topics": ["detention"]}],
        topics={"detention": "asylum"},
    )
    port = free_port()
    monitor = Path(sys.executable).parent / "monitor"
    proc = subprocess.Popen(
        [str(monitor), "run", "--config", str(config), "--db", str(db_path), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        **popen,
    )
    return proc, port


def test_monitor_run_stops_and_says_why_when_datasette_cannot_start(server, tmp_path, db_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        rnz = server.feed("/rnz.xml", "rnz_national.xml")
        config = write_config(tmp_path, [{"name": "RNZ", "url": rnz}])
        monitor = Path(sys.executable).parent / "monitor"
        done = subprocess.run(
            [str(monitor), "run", "--config", str(config), "--db", str(db_path),
             "--port", str(port)],
            capture_output=True, timeout=60,
        )  # fmt: skip
    assert done.returncode == 1
    assert f"is 127.0.0.1:{port} already in use?" in done.stderr.decode()


def test_monitor_run_collects_serves_and_stops_cleanly_on_ctrl_c(server, tmp_path, db_path):
    proc, port = start_monitor_run(server, tmp_path, db_path, start_new_session=True)
    try:
        wait_for(lambda: bool(headlines(port)))
        titles = [row["title"] for row in headlines(port) or []]
        assert "Black Caps seal series win in Hamilton" in titles
        # The collector publishes the same headlines as a file the website can hammer.
        public = f"http://127.0.0.1:{port}/public/latest_headlines.json"
        wait_for(lambda: httpx.get(public, timeout=2).text.startswith('[{"'))
        assert {r["title"] for r in httpx.get(public, timeout=2).json()} == set(titles)
        # Ctrl-C reaches the whole foreground process group: the collector and Datasette.
        os.killpg(proc.pid, signal.SIGINT)
        output, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, output.decode()
    assert b"Traceback" not in output and b" ERROR " not in output
    assert headlines(port) is None  # Datasette is gone too
    db = store.open_db(db_path)
    assert db.execute("SELECT count(*) FROM articles").fetchone() == (3,)
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    db.close()


@pytest.mark.parametrize("args", [["--config", "missing.yaml"]])
def test_scheduler_py_exits_2_on_a_bad_config(tmp_path, args):
    result = subprocess.run(
        [sys.executable, str(ROOT / "scheduler.py"), *args, "--db", str(tmp_path / "c.db")],
        capture_output=True, text=True, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "missing.yaml: (file): file not found" in result.stderr


def test_sigterm_finishes_cleanly_and_stops_datasette(server, tmp_path, db_path):
    proc, port = start_monitor_run(server, tmp_path, db_path)
    try:
        wait_for(lambda: bool(headlines(port)))
        proc.send_signal(signal.SIGTERM)  # to the collector only, as a service manager would
        output, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output.decode()
    assert b"stopping: finishing the write in progress" in output
    assert headlines(port) is None
    db = store.open_db(db_path)
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    db.close()
