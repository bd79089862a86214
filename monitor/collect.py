"""One pass over sources: fetch -> parse -> normalise -> tag -> store, each source on its own.

Sources are polled concurrently (bounded by the Fetcher). Whatever goes wrong with one source,
including a bug of ours, becomes that source's recorded error; the others carry on.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import importlib.metadata
import logging
import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import sqlite_utils

from monitor import store, urls
from monitor.config import Config, Source
from monitor.dates import iso
from monitor.entries import ParsedFeed
from monitor.errors import FetchError, HTTPStatusError, NoArticles, ParseError, RetryLater
from monitor.fetch import Fetcher, Limits, Response
from monitor.normalise import Item
from monitor.pages import Robots, article_links, read_pages
from monitor.read import items_of, read_feed
from monitor.sitemap import parse_sitemap, recent_children
from monitor.store import Counts, Poll, Written
from monitor.workers import Workers
from monitor.writer import Writer

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


LOGIN_FORM = re.compile(rb"<input[^>]+type=[\"']?password", re.IGNORECASE)
"""A password field on a section page: a login wall, not a layout change."""


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Report:
    """The outcome of one source in one pass, as `monitor collect` prints it."""

    source: str
    status: str
    """'ok', 'not_modified', 'deferred', or an error code."""
    counts: Counts = dataclasses.field(default_factory=Counts)
    error: str | None = None
    warnings: tuple[str, ...] = ()
    filtered: int = 0

    @property
    def failed(self) -> bool:
        return self.status not in ("ok", "not_modified", "deferred")

    def line(self) -> str:
        if self.status == "ok":
            c = self.counts
            text = f"{c.new} new, {c.updated} updated, {c.unchanged} unchanged"
            if self.filtered:
                text += f", {self.filtered} matched no topic (not kept)"
            if self.warnings:
                text += f" ({len(self.warnings)} warning(s): {self.warnings[0]})"
        elif self.status == "not_modified":
            text = "unchanged (not modified since last poll)"
        elif self.status == "deferred":
            text = f"deferred: {self.error}"
        else:
            text = f"error [{self.status}]: {self.error}"
        return f"{self.source}: {text}"


def limits_for(source: Source) -> Limits:
    return Limits(
        total=source.timeout,
        connect=min(10.0, source.timeout / 2),
        read=min(15.0, source.timeout / 2),
        max_bytes=source.max_size,
        allow_private=source.allow_private,
    )


@dataclass
class Polling:
    """What polls share, for one pass (`collect`) or the scheduler's life: a connection to
    read the database, the HTTP client, the topics, the feed-reading worker, the writer (its
    own thread and connection; polls that finish together share a transaction), and WAL
    checkpoints on their own thread while the database is written."""

    db: sqlite_utils.Database
    """Read on the event loop; every write goes through `writer`."""
    fetcher: Fetcher
    topics: Mapping[str, str]
    """Replaced when topics change; polls in flight keep the ones they started with."""
    workers: Workers
    writer: Writer
    checkpointer: store.Checkpointer
    under_way: asyncio.Semaphore
    """Polls between their fetch and their write (see PIPELINE)."""

    @classmethod
    def start(cls, config: Config, db: sqlite_utils.Database) -> Polling:
        c = config.collector
        fetcher = Fetcher(contact=c.contact, concurrency=c.concurrency, per_host=c.per_host)
        writer = Writer(store.path_of(db))
        polling = cls(
            db, fetcher, config.topics, Workers(), writer, store.Checkpointer(writer.db),
            asyncio.Semaphore(PIPELINE * c.concurrency),
        )  # fmt: skip
        polling.checkpointer.start()
        return polling

    async def close(self) -> None:
        """Release it all, once the polls waiting to be written are; the word counts kept in
        memory between polls are written."""
        await self.writer.drain()
        await self.fetcher.aclose()
        self.workers.close()
        self.checkpointer.stop()
        await self.writer.close()


async def collect(
    config: Config,
    db: sqlite_utils.Database,
    *,
    only: Iterable[str] | None = None,
    clock: Clock = utcnow,
) -> list[Report]:
    """Poll every source (or the named ones) once, now. Retry-After is still honoured."""
    store.sync_sources(db, config)
    wanted = set(only) if only is not None else None
    sources = [s for s in config.sources if wanted is None or s.name in wanted]
    polling = Polling.start(config, db)
    try:
        return await poll_sources(sources, polling, clock)
    finally:
        await polling.close()


PIPELINE = 4
"""Polls under way at once (fetched or being fetched, not yet written), per request allowed in
flight: enough to keep the writer's batches full and the feed-reading worker busy, few enough
that a pass of changed feeds does not pile up parsed items faster than they are written
(500 MB for 1,000 feeds of 50 items without it)."""


async def poll_sources(
    sources: Sequence[Source], polling: Polling, clock: Clock = utcnow
) -> list[Report]:
    """Poll these sources at once."""
    states = store.source_states(polling.db, [s.name for s in sources])
    polls = (poll_source(s, states[s.name], polling, clock) for s in sources)
    return list(await asyncio.gather(*polls))


async def poll_source(
    source: Source, state: store.SourceState, polling: Polling, clock: Clock = utcnow
) -> Report:
    """Poll one source; `state` is its state as stored when the caller read it for a pass
    (store.source_states: only this source's polls change it, and a caller polls it once at a
    time)."""
    async with polling.under_way:
        return await _poll(source, polling, clock, state)


async def _poll(source: Source, polling: Polling, clock: Clock, state: store.SourceState) -> Report:
    started = clock()
    if state.retry_after and state.retry_after > iso(started):
        wait = f"the server asked us to wait until {state.retry_after}"
        return Report(source.name, "deferred", error=wait)
    polling.writer.expect()  # every path from here comes to record()
    t0 = time.monotonic()
    items: list[Item] = []
    try:
        poll, items = await _fetch_and_parse(source, polling, state, started)
    except RetryLater as e:
        poll = _failure(source, started, e, http_status=e.status, retry_after=e.until)
    except HTTPStatusError as e:
        poll = _failure(source, started, e, http_status=e.status)
    except (FetchError, ParseError) as e:
        poll = _failure(source, started, e)
    except Exception as e:  # a bug of ours must not stop the other sources
        log.exception("unexpected error polling %s", source.name)
        poll = Poll(source.name, started, 0, "internal_error", error=f"{type(e).__name__}: {e}")
    poll = dataclasses.replace(poll, duration_ms=int((time.monotonic() - t0) * 1000))
    try:
        counts = await polling.writer.record(Written(poll, source.interval, items, started))
    except sqlite3.Error as e:
        log.error("could not record poll of %s: %s", source.name, e)
        return Report(source.name, "database_error", error=f"could not save: {e}")
    except Exception as e:  # a bug of ours in writing: this poll's error, not the pass's end
        log.exception("unexpected error recording %s", source.name)
        return Report(source.name, "internal_error", error=f"could not save: {e!r}")
    return Report(source.name, poll.status, counts, poll.error, poll.warnings, poll.filtered)


async def _fetch_and_parse(
    source: Source, polling: Polling, state: store.SourceState, started: datetime
) -> tuple[Poll, list[Item]]:
    db, fetcher, topics = polling.db, polling.fetcher, polling.topics
    limits = limits_for(source)
    response = await fetcher.get(
        source.url, limits=limits, etag=state.etag, last_modified=state.last_modified
    )
    poll = Poll(
        source.name,
        started,
        0,
        "not_modified" if response.not_modified else "ok",
        http_status=response.status,
        bytes=len(response.body),
        etag=response.etag,
        last_modified=response.last_modified,
    )
    if response.not_modified:
        return poll, []
    read_as = digest(response, source, topics) if source.type == "feed" else None
    if read_as is not None and read_as == state.body_digest:
        # The bytes the last poll read, read the same way: the same items, already stored.
        return dataclasses.replace(poll, status="not_modified"), []
    polling.writer.expect_articles()
    if source.type == "feed":
        # CPU-bound: off the event loop (in a second process where there is a core for it),
        # so other sources' deadlines keep ticking and the writes keep a core to themselves.
        args = (response.body, response.url, dict(response.headers), source, started, dict(topics))
        read = await polling.workers.run(read_feed, *args)
    else:
        if source.type == "sitemap":
            feed = await _read_sitemap(source, db, fetcher, limits, response.body, started)
        else:
            feed = await _read_section_page(source, db, fetcher, limits, response)
        read = items_of(feed, response.url, source, started, topics)
    # Only items kept (tagged, and matching a topic where the source requires one) are resolved.
    items = await _resolve_aggregator_links(read.items, db, fetcher, limits)
    warnings = read.warnings
    if response.moved_to:  # the source still works, through a hop every poll: worth fixing
        warnings = (f"moved permanently to {response.moved_to}: update its url", *warnings)
    done = dataclasses.replace(poll, warnings=warnings, filtered=read.filtered, body_digest=read_as)
    return done, items


READ_WITH = ("content-type", "content-language")
"""The response headers reading a feed depends on (its encoding, its language)."""


def digest(response: Response, source: Source, topics: Mapping[str, str]) -> str:
    """What reading a feed depends on, hashed: its body, the headers and address it is read
    with, the source's settings and the topics, and the collector reading it (_reader()). A
    server without ETag or Last-Modified sends the same feed again and again; with its digest
    as last read, the poll skips the reading (~4 ms a feed of 50 items, and the writer's
    lookups of each), and a change to the config or the collector has the same bytes read
    afresh. SHA-256 for its speed here (23 µs for 30 KB, BLAKE2b 44-62 µs: the CPU computes
    SHA-256 itself), 128 bits of it kept."""
    headers = sorted((k.lower(), v) for k, v in response.headers.items() if k.lower() in READ_WITH)
    hashed = hashlib.sha256(_reader())
    hashed.update(_settings(source, tuple(sorted(topics.items()))))
    hashed.update(repr((response.url, headers)).encode())
    hashed.update(response.body)
    return hashed.hexdigest()[:32]


READ_BY = ("feedparser", "lxml", "python-dateutil", "courlan")
"""The libraries reading a feed goes through (parsing, dates, canonical URLs)."""


@functools.cache
def _reader(package: Path = Path(__file__).parent) -> bytes:
    """Which collector reads: its own code and the versions of READ_BY, hashed once a process.
    A digest made by another collector never matches, so after an upgrade (a parsing fix, a
    better date or URL rule) the same bytes are read afresh once, not skipped until they change.
    All of the package's modules, not a list of the reading ones, which would go stale; a
    change elsewhere costs one read of the unchanged feeds."""
    hashed = hashlib.sha256()
    for module in sorted(package.glob("*.py")):
        hashed.update(module.name.encode() + b"\0" + module.read_bytes())
    for library in READ_BY:
        hashed.update(f"{library} {importlib.metadata.version(library)}".encode())
    return hashed.digest()


@functools.lru_cache(maxsize=4096)
def _settings(source: Source, topics: tuple[tuple[str, str], ...]) -> bytes:
    """What of the config a feed is read with, as bytes: the same for months (its repr took
    ~40 µs a poll, half a digest's time)."""
    return repr((source, topics)).encode()


async def _read_sitemap(
    source: Source,
    db: sqlite_utils.Database,
    fetcher: Fetcher,
    limits: Limits,
    body: bytes,
    now: datetime,
) -> ParsedFeed:
    """A sitemap's recent entries; for a sitemap index, those of its recent children."""
    zone, lookback = ZoneInfo(source.timezone), timedelta(seconds=source.lookback)
    top = parse_sitemap(body, zone, now, lookback)
    sitemaps = [top]
    warnings: list[str] = []
    for url in recent_children(top, now, lookback):
        try:
            child = await fetcher.get(url, limits=limits)
            sitemaps.append(parse_sitemap(child.body, zone, now, lookback))
        except (FetchError, ParseError) as e:
            warnings.append(f"child sitemap {url} skipped: {e}")
    entries = [e for s in sitemaps for e in s.feed.entries]
    untitled = [u for s in sitemaps for u in s.untitled]
    new = store.unknown_urls(db, untitled)  # a page is read once, never again once stored
    if new:
        read, skipped = await read_pages(new, source, fetcher, Robots(fetcher), limits)
        entries += read
        warnings += skipped
    return ParsedFeed(None, tuple(entries[: source.max_items]), tuple(warnings))


async def _read_section_page(
    source: Source, db: sqlite_utils.Database, fetcher: Fetcher, limits: Limits, page: Response
) -> ParsedFeed:
    """The articles linked from a section page; each new one read once from its own page."""
    links = article_links(page.body, page.url, source.links)
    if not links and LOGIN_FORM.search(page.body):
        raise NoArticles(
            "the page asks for a login (a login wall) instead of listing articles; use a public "
            "section page, the outlet's feed, or its sitemap"
        )
    if not links:
        how = f"the selector {source.links!r} matches" if source.links else "we can recognise"
        raise NoArticles(
            f"no article links {how} on the page: its layout may have changed, or it is a "
            "login wall; check the page and the source's `links:`"
        )
    new = store.unknown_urls(db, links)
    entries, warnings = await read_pages(new, source, fetcher, Robots(fetcher), limits)
    return ParsedFeed(None, tuple(entries), tuple(warnings))


async def _resolve_aggregator_links(
    items: list[Item], db: sqlite_utils.Database, fetcher: Fetcher, limits: Limits
) -> list[Item]:
    """Aggregator links -> the publisher's URL, by following the redirect once (once ever)."""

    async def resolve(item: Item) -> Item:
        url = store.resolved_alias(db, item.link)
        if url is None:
            target = await fetcher.resolve_redirect(item.link, limits)
            # Unresolvable: keep the aggregator link; the outlet still comes from <source>.
            url = urls.canonical_url(target) if target else item.url
        return dataclasses.replace(item, url=url, via_aggregator=False)

    resolved = iter(await asyncio.gather(*(resolve(i) for i in items if i.via_aggregator)))
    return [next(resolved) if item.via_aggregator else item for item in items]


def _failure(
    source: Source,
    started: datetime,
    error: FetchError | ParseError,
    *,
    http_status: int | None = None,
    retry_after: datetime | None = None,
) -> Poll:
    return Poll(
        source.name,
        started,
        0,
        error.code,
        http_status=http_status,
        error=str(error),
        retry_after=retry_after,
    )
