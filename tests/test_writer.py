"""Group commit: polls that finish together share a transaction; one that fails, fails alone."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import threading

import pytest

from monitor import store
from monitor import writer as writer_module
from monitor.config import Config, Source
from monitor.normalise import Item
from monitor.store import Counts, Written
from monitor.writer import Writer
from tests.test_store import item, ok, rows


@pytest.fixture
def db(tmp_path):
    database = store.open_db(tmp_path / "coverage.db")
    sources = (
        Source("RNZ", "https://www.rnz.co.nz/rss"),
        Source("Stuff", "https://stuff.co.nz/rss"),
    )
    store.sync_sources(database, Config(tmp_path / "feeds.yaml", sources))
    yield database
    database.close()


def commits(db) -> list[str]:
    seen: list[str] = []
    db.conn.set_trace_callback(lambda sql: seen.append(sql) if sql == "COMMIT" else None)
    return seen


def test_polls_finishing_together_share_one_transaction(db):
    writer = Writer(store.path_of(db))
    committed = commits(writer.db)

    async def finish_together() -> tuple[list[Counts], int]:
        counts = await asyncio.gather(
            writer.record(Written(ok("RNZ"), 600, [item(1), item(2)])),
            writer.record(Written(ok("Stuff"), 600, [item(3)])),
        )
        transactions = len(committed)  # before close(), which commits the word counts
        await writer.close()
        return list(counts), transactions

    assert asyncio.run(finish_together()) == ([Counts(2, 0, 0), Counts(1, 0, 0)], 1)
    assert rows(db, "SELECT source, new FROM fetches ORDER BY id") == [("RNZ", 2), ("Stuff", 1)]


def test_a_poll_the_database_refuses_fails_alone(db):
    # No URL: SQLite refuses the row (NOT NULL), which rolls back the whole batch; the writer
    # then writes the polls one by one, and only that one fails.
    broken = Item(
        url=None,  # type: ignore[arg-type]
        link="x", guid=None, title="No URL", summary="", published=None, outlet="RNZ",
    )  # fmt: skip
    writer = Writer(store.path_of(db))

    async def finish_together() -> tuple[object, ...]:
        outcomes = await asyncio.gather(
            writer.record(Written(ok("RNZ"), 600, [item(1)])),
            writer.record(Written(ok("Stuff"), 600, [broken])),
            writer.record(Written(ok("RNZ"), 600, [item(2)])),
            return_exceptions=True,
        )
        await writer.close()
        return tuple(outcomes)

    first, failed, last = asyncio.run(finish_together())
    assert first == last == Counts(1, 0, 0)
    assert isinstance(failed, sqlite3.IntegrityError)
    assert rows(db, "SELECT id, url FROM articles ORDER BY id") == [
        (1, item(1).url), (2, item(2).url),
    ]  # fmt: skip
    assert rows(db, "SELECT source FROM fetches ORDER BY id") == [("RNZ",), ("RNZ",)]


def test_close_waits_for_the_polls_waiting_to_be_written(db):
    writer = Writer(store.path_of(db))

    async def record_then_close() -> None:
        task = asyncio.create_task(writer.record(Written(ok("RNZ"), 600, [item(1)])))
        await asyncio.sleep(0)  # the poll is waiting (the writer gathers for a moment)
        await writer.drain()
        assert task.done()
        await writer.close()

    asyncio.run(record_then_close())
    assert store.source_states(db, ["RNZ"])["RNZ"].consecutive_failures == 0
    assert rows(db, "SELECT count(*) FROM articles") == [(1,)]


def test_a_poll_waits_for_company_from_when_it_arrived_not_again_after_each_batch(db, monkeypatch):
    # Polls left over from a full batch have waited while it was written: gathering counts
    # from their arrival (it used to start again, and 50 polls arriving together waited a
    # quarter of a second more after each full batch).
    monkeypatch.setattr(writer_module, "GATHER_S", 3600.0)
    writer = Writer(store.path_of(db))

    async def left_over() -> None:
        future = asyncio.get_running_loop().create_future()
        waited_an_hour = asyncio.get_running_loop().time() - 3601
        writer._waiting.append((Written(ok("RNZ"), 600, [item(1)]), future, waited_an_hour))
        await asyncio.wait_for(writer._gathered(), timeout=30)
        await writer.close()

    asyncio.run(left_over())


def test_a_bug_while_writing_reaches_its_poll_and_hangs_none(db, monkeypatch):
    # Not an SQLite error: an exception of our own code. The batch is written again poll by
    # poll; the poll that raises gets the exception, the others their counts, none waits on.
    record_polls = store.record_polls

    def buggy(database, polls):
        if any(not written.items for written in polls):
            raise TypeError("a bug of ours")
        return record_polls(database, polls)

    monkeypatch.setattr(store, "record_polls", buggy)
    writer = Writer(store.path_of(db))

    async def finish_together() -> list[object]:
        records = [
            writer.record(Written(ok("RNZ"), 600, [item(1)])),
            writer.record(Written(ok("Stuff"), 600, [])),
        ]
        together = asyncio.gather(*records, return_exceptions=True)
        outcomes: list[object] = list(await asyncio.wait_for(together, timeout=30))
        await writer.close()
        return outcomes

    written, failed = asyncio.run(finish_together())
    assert written == Counts(1, 0, 0)
    assert isinstance(failed, TypeError)


def test_the_event_loop_goes_on_while_a_batch_is_written(db, monkeypatch):
    # The batch is written on the writer's thread: a write that takes long (here, until the
    # loop has done something else) must not stop fetches and other polls meanwhile.
    record_polls = store.record_polls
    loop_ran = threading.Event()

    def slow(database, polls):
        assert loop_ran.wait(timeout=30), "the event loop stood still while a batch was written"
        return record_polls(database, polls)

    monkeypatch.setattr(store, "record_polls", slow)
    writer = Writer(store.path_of(db))

    async def write_while_the_loop_runs() -> Counts:
        task = asyncio.create_task(writer.record(Written(ok("RNZ"), 600, [item(1)])))
        await asyncio.sleep(writer_module.GATHER_S * 2)  # the batch is being written now
        loop_ran.set()
        counts = await task
        await writer.close()
        return counts

    assert asyncio.run(write_while_the_loop_runs()) == Counts(1, 0, 0)
    assert rows(db, "SELECT count(*) FROM articles") == [(1,)]


def test_other_writes_go_through_the_writers_thread_and_connection(db):
    # The scheduler's own writes (config reloads, retention) run on the writer's thread and
    # connection: one writer, so the clusterer's memory of that connection stays valid.
    writer = Writer(store.path_of(db))
    main = threading.current_thread()
    seen: list[object] = []

    def on_the_writer(database, value: int) -> int:
        seen.append((database is writer.db, threading.current_thread() is not main))
        return value * 2

    async def call_then_record() -> int:
        doubled = await writer.call(on_the_writer, 21)
        await writer.record(Written(ok("RNZ"), 600, [item(1)]))
        await writer.close()
        return doubled

    assert asyncio.run(call_then_record()) == 42
    assert seen == [(True, True)]


def test_a_poll_with_news_loads_the_clusterer_once_on_the_writers_thread(db, monkeypatch):
    from monitor import store_stories

    main = threading.current_thread()
    loaded: list[bool] = []
    monkeypatch.setattr(
        store_stories, "warm", lambda: loaded.append(threading.current_thread() is not main)
    )
    writer = Writer(store.path_of(db))

    async def two_polls_with_news() -> None:
        writer.expect_articles()
        writer.expect_articles()
        await writer.close()  # after what was submitted to its thread

    asyncio.run(two_polls_with_news())
    assert loaded == [True]


def test_a_poll_waits_for_company_only_while_other_polls_are_under_way(db, monkeypatch):
    # With another poll expected, the first to finish waits for it (one transaction for both);
    # once none is under way, what waits is written at once, not after GATHER_S (an hour here:
    # the wait_for would time out).
    monkeypatch.setattr(writer_module, "GATHER_S", 3600.0)
    writer = Writer(store.path_of(db))
    committed = commits(writer.db)

    async def two_polls_then_a_lone_one() -> list[int]:
        writer.expect()
        writer.expect()
        first = asyncio.create_task(writer.record(Written(ok("RNZ"), 600, [item(1)])))
        await asyncio.sleep(0.05)
        transactions = [len(committed)]  # the first is still waiting for the second
        second = writer.record(Written(ok("Stuff"), 600, [item(2)]))
        await asyncio.wait_for(asyncio.gather(first, second), timeout=10)
        transactions.append(len(committed))
        writer.expect()
        await asyncio.wait_for(writer.record(Written(ok("RNZ"), 600, [item(3)])), timeout=10)
        transactions.append(len(committed))
        await writer.close()
        return transactions

    assert asyncio.run(two_polls_then_a_lone_one()) == [0, 1, 2]
    assert rows(db, "SELECT source, new FROM fetches ORDER BY id") == [
        ("RNZ", 1), ("Stuff", 1), ("RNZ", 1),
    ]  # fmt: skip


def test_polls_without_items_wait_for_no_more_than_a_batch_of_polls(db, monkeypatch):
    # Polls answered 304 bring no items, so BATCH_ITEMS never fills: with others still under
    # way, BATCH_POLLS of them are written at once, not after GATHER_S (an hour here).
    monkeypatch.setattr(writer_module, "GATHER_S", 3600.0)
    monkeypatch.setattr(writer_module, "BATCH_POLLS", 3)
    writer = Writer(store.path_of(db))
    committed = commits(writer.db)
    unchanged = Written(dataclasses.replace(ok("RNZ"), status="not_modified"), 600, [])

    async def three_of_five_polls() -> int:
        for _ in range(5):
            writer.expect()  # two stay under way: without BATCH_POLLS the batch would wait
        await asyncio.wait_for(asyncio.gather(*(writer.record(unchanged) for _ in range(3))), 10)
        transactions = len(committed)
        await writer.close()
        return transactions

    assert asyncio.run(three_of_five_polls()) == 1
    assert rows(db, "SELECT count(*), min(status) FROM fetches") == [(3, "not_modified")]
