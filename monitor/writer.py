"""Group commit: polls that finish while the database is busy are written in one transaction.

Every poll is written after its network I/O, in a transaction of its own when it finishes
alone (the usual case for a running collector: sources fall due one by one). When many finish
together (a first pass, a burst of changed feeds), whatever a transaction costs once is paid
once for all of them instead of once each: the commit (writing the log's pages, flushing the
full-text index's new segment), the lookups, placing the new articles in stories. Measured on
1,000 changed feeds: one transaction per poll wrote ~2.3 pages of log per article, 20 polls
per transaction ~0.6.

If a batch fails, its polls are written again one by one, so an error in one poll (a bug, a
value SQLite refuses) is that poll's alone, raised where the poll awaits its write.

The writing itself runs on a thread of its own, with a connection of its own: while a batch
is written (SQLite releases the GIL while it works) the event loop goes on fetching, reading
and gathering the next batch, instead of every fetch waiting for the write. That connection is
the collector's only writer (`call` runs the scheduler's other writes there too), so the
clusterer's memory of it stays valid; the loop's own connection only reads, and WAL lets it
read while a batch is written.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

import sqlite_utils

from monitor import store, store_stories
from monitor.store import Counts, Written

log = logging.getLogger(__name__)

BATCH_ITEMS = 2_000
"""A batch is written as soon as this many items wait, and holds about this many..."""
BATCH_POLLS = 100
"""...or this many polls (polls answered 304 bring no items: without it each batch of them
waited the whole GATHER_S, and 1,000 unchanged feeds took 3 s instead of 1)..."""
GATHER_S = 0.25
"""...or when its first poll has waited this long: what a poll's items wait for company, while
polls are under way that could join (expect()); with none, the batch is written at once."""


P = ParamSpec("P")
T = TypeVar("T")

Outcome = Counts | Exception
"""What writing a poll came to: its counts, or the error that kept it out of the database."""


class Writer:
    def __init__(self, path: Path) -> None:
        self.db = store.open_db(path)
        """The writer's own connection: used on its thread, but for the Checkpointer setting
        its checkpoint PRAGMA before the first batch and after the last."""
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="writer")
        self._waiting: list[tuple[Written, asyncio.Future[Counts], float]] = []
        """Each poll waiting, the future its poll awaits, and when it began to wait (loop time)."""
        self._running: asyncio.Task[None] | None = None
        self._arrived = asyncio.Event()
        self._expected = 0
        """Polls under way that have not yet come to record(): what a batch may wait for."""
        self._warmed = False

    def expect(self) -> None:
        """A poll has started and will come to record(). A batch waits for company (up to
        GATHER_S) only while such polls are under way: the last polls of a pass, and a poll
        that falls due alone, are written at once instead of waiting for none. (A poll
        cancelled before record() leaves the count high: batches then wait GATHER_S, as they
        would without this; polls are cancelled only when the collector stops.)"""
        self._expected += 1

    def expect_articles(self) -> None:
        """A poll has something new to read: load the clusterer's compiled loops on the
        writer's thread now (once; ~0.5 s, which would hold the GIL), while the feed is read
        and, at a first pass, the feed-reading worker starts, rather than when the first batch
        of articles arrives. A pass where every feed answers 304 never loads them."""
        if not self._warmed:
            self._warmed = True
            self._thread.submit(store_stories.warm).add_done_callback(_warmed)

    async def record(self, written: Written) -> Counts:
        """Write a poll (with others waiting, if any); its counts, or the error that kept it
        out of the database (sqlite3.Error, or a bug's own exception)."""
        self._expected = max(self._expected - 1, 0)  # record() without expect() is fine too
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Counts] = loop.create_future()
        self._waiting.append((written, future, loop.time()))
        self._arrived.set()
        if self._running is None:
            self._running = asyncio.create_task(self._write_waiting())
        return await future

    async def call(
        self,
        job: Callable[Concatenate[sqlite_utils.Database, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """`job(db, ...)` on the writer's thread and connection, in turn with the batches:
        how every write of the collector (batches, config reloads, retention) reaches it."""
        work = functools.partial(job, self.db, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._thread, work)

    async def drain(self) -> None:
        """Wait for the polls already waiting to be written."""
        if self._running is not None:
            await self._running

    async def close(self) -> None:
        """Write the polls waiting and what the store keeps in memory (store.finish), then
        close the connection."""
        await self.drain()
        await self.call(store.finish)
        self._thread.shutdown()
        self.db.close()

    async def _write_waiting(self) -> None:
        try:
            while self._waiting:
                await self._gathered()
                batch = self._take()
                outcomes = await self.call(_write, [written for written, _ in batch])
                for (_, future), outcome in zip(batch, outcomes, strict=True):
                    _settle(future, outcome)
        finally:
            self._running = None

    async def _gathered(self) -> None:
        """Until BATCH_ITEMS items or BATCH_POLLS polls wait, GATHER_S has passed, or no other
        poll is under way (polls finishing meanwhile join the batch: during a burst they
        finish many a second)."""
        deadline = self._waiting[0][2] + GATHER_S  # polls left from the last batch have waited
        while (
            self._expected
            and len(self._waiting) < BATCH_POLLS
            and sum(len(w.items) for w, _, _ in self._waiting) < BATCH_ITEMS
        ):
            self._arrived.clear()
            try:
                async with asyncio.timeout_at(deadline):
                    await self._arrived.wait()
            except TimeoutError:
                return

    def _take(self) -> list[tuple[Written, asyncio.Future[Counts]]]:
        taken, items = 0, 0
        for written, _, _ in self._waiting:
            if taken == BATCH_POLLS or (taken and items + len(written.items) > BATCH_ITEMS):
                break
            taken += 1
            items += len(written.items)
        batch = [(written, future) for written, future, _ in self._waiting[:taken]]
        del self._waiting[:taken]
        return batch


def _write(db: sqlite_utils.Database, batch: list[Written]) -> Sequence[Outcome]:
    """On the writer's thread: the batch in one transaction, or poll by poll if it fails."""
    try:
        return store.record_polls(db, batch)
    except Exception as e:  # a bug of ours too: it must reach its poll, never hang them
        if len(batch) == 1:
            return [e]
        log.warning("writing %d polls together failed (%s); one by one now", len(batch), e)
        return [outcome for one in batch for outcome in _write(db, [one])]


def _warmed(done: Future[None]) -> None:
    if (e := done.exception()) is not None:  # placing articles will raise it where it matters
        log.warning("could not load the clusterer ahead of the first articles: %r", e)


def _settle(future: asyncio.Future[Counts], outcome: Outcome) -> None:
    if future.cancelled():  # the poll was cancelled (shutdown) while waiting: nothing to tell
        return
    if isinstance(outcome, Exception):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
