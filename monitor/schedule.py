"""The long-running collector: polls each source when it is due, reloads feeds.yaml on change.

When a source is due lives in the database (`sources.next_poll`, with back-off and Retry-After
already applied), so restarts neither lose a schedule nor hammer a server that asked us to wait.
APScheduler runs one small job on a tick that starts a task for every due source not already in
flight; a slow source never holds up the others.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import sqlite_utils
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from monitor import publish, store
from monitor.collect import Polling, Report, poll_source, utcnow
from monitor.config import Config, load_config
from monitor.errors import ConfigError

log = logging.getLogger(__name__)

TICK_SECONDS = 5.0


@dataclass
class Collector:
    config_path: Path
    config: Config
    db: sqlite_utils.Database
    polling: Polling
    public: Path
    config_mtime: float = 0.0
    in_flight: dict[str, asyncio.Task[Report]] = field(default_factory=dict)

    @classmethod
    def open(cls, config_path: Path, db_path: Path) -> Collector:
        """Load the config (ConfigError if invalid), open the database, sync the sources."""
        config = load_config(config_path)
        db = store.open_db(db_path)
        store.sync_sources(db, config)
        collector = cls(
            config_path, config, db, Polling.start(config, db), publish.public_dir(db_path)
        )
        collector.config_mtime = config_path.stat().st_mtime
        return collector

    async def reload_if_changed(self) -> None:
        """Pick up an edited feeds.yaml; an invalid edit keeps the running config."""
        try:
            mtime = self.config_path.stat().st_mtime
        except OSError as e:
            log.error("cannot read %s (keeping the running configuration): %s", self.config_path, e)
            return
        if mtime == self.config_mtime:
            return
        self.config_mtime = mtime
        try:
            config = load_config(self.config_path)
        except ConfigError as e:
            log.error(
                "%s changed but is invalid; keeping the running configuration.\n%s",
                self.config_path,
                e,
            )
            return
        if config.collector != self.config.collector:
            log.warning("collector: settings change takes effect after a restart")
        old = self.config
        self.config = config
        writer = self.polling.writer
        await writer.call(store.sync_sources, config)
        if config.topics != old.topics or _source_topics(config) != _source_topics(old):
            # Polls in flight keep the topics they started with; they are short.
            self.polling.topics = config.topics
            result = await writer.call(store.retag, config)
            log.info("topics changed: re-tagged %d articles %s", result.changed, result.per_topic)
        log.info("loaded %s: %d sources", self.config_path, len(config.sources))

    async def poll_due(self) -> None:
        await self.reload_if_changed()
        self.publish()
        due = [n for n in store.due_sources(self.db, utcnow()) if n not in self.in_flight]
        for name, state in store.source_states(self.db, due).items():
            source = self.config.source(name)
            poll = poll_source(source, state, self.polling)
            task = asyncio.create_task(poll)
            self.in_flight[name] = task
            task.add_done_callback(functools.partial(self._done, name))

    def _done(self, name: str, task: asyncio.Task[Report]) -> None:
        self.in_flight.pop(name, None)
        if task.cancelled():
            return
        report = task.result()
        (log.warning if report.failed else log.info)("%s", report.line())

    def publish(self) -> None:
        """Refresh the public files (new stories, and staff pins made in Datasette)."""
        try:
            publish.publish(self.db, self.public)
        except (OSError, sqlite3.Error) as e:
            log.error("could not publish the public headlines (kept the last ones): %s", e)

    async def daily(self) -> None:
        """Retention and WAL housekeeping, once a day, on the writer's connection (the
        collector's only writer: see writer.py)."""
        writer = self.polling.writer
        try:
            removed = await writer.call(store.prune_unmatched, self.config, utcnow())
            if removed:
                log.info("pruned articles that match no topic: %s", removed)
            await writer.call(store.finish)  # a day's word counts, should the process be killed
            polls = await writer.call(store.prune_fetches, utcnow())
            if polls:
                log.info("pruned %d poll records older than 90 days", polls)
            busy, pages, _ = await writer.call(store.checkpoint)
        except sqlite3.Error as e:
            log.error("daily housekeeping failed (tried again tomorrow): %s", e)
            return
        log.info("WAL checkpoint: %d pages%s", pages, " (readers busy; retried tomorrow)" * busy)

    async def stop(self) -> None:
        for task in self.in_flight.values():
            # Safe: a task is only ever suspended on the network, never inside a DB transaction.
            task.cancel()
        await asyncio.gather(*self.in_flight.values(), return_exceptions=True)
        await self.polling.close()


def _source_topics(config: Config) -> dict[str, tuple[str, ...]]:
    return {s.name: s.topics for s in config.sources}


async def run_scheduler(
    config_path: Path,
    db_path: Path,
    *,
    tick: float = TICK_SECONDS,
    stop: asyncio.Event | None = None,
) -> None:
    """Run until SIGINT/SIGTERM (or `stop` is set). Raises ConfigError if the config is invalid."""
    collector = Collector.open(config_path, db_path)
    config, db = collector.config, collector.db
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    scheduler = AsyncIOScheduler(timezone=UTC)
    scheduler.add_job(
        collector.poll_due,
        IntervalTrigger(seconds=tick),
        next_run_time=datetime.now(UTC),
        max_instances=1,
        coalesce=True,
        id="poll_due",
    )
    scheduler.add_job(
        collector.daily, IntervalTrigger(hours=24), next_run_time=datetime.now(UTC), id="daily"
    )
    scheduler.start()
    log.info("collector: %d sources from %s into %s", len(config.sources), config_path, db_path)
    try:
        await stop.wait()
    finally:
        log.info("stopping: finishing the write in progress")
        scheduler.shutdown(wait=False)
        await collector.stop()
        db.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
