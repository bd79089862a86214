"""What one poll costs as a deployment ages and grows: a source's history, the sites' cookies.

    python -m bench.growth_bench [--quick]

The figures of bench/run.py start from an empty store and a server that sets no cookies; a
collector a month into polling 1,000 real sources has neither. Two per-poll costs that grow:

1. A source's health after a month. Every poll updates its source's health and flag, and the
   flag judges the source's usual rate from its past polls that brought something new. A Google
   News search polled every 10 minutes finds something nearly every time: 4,320 such polls in
   30 days. Polls answered 304 are recorded (store.record_poll, one transaction each, as a
   running collector writes a poll that falls due alone) for a source with that month behind
   it and, as the baseline, for a new source, in turns: the median ms a poll for each.
2. The cookie jar. CDNs' bot-management cookies (one or two per site) stay in the collector's
   jar between polls: the jar's work for a request (the cookies to send), and for the next hop
   of a redirect that sets the site's cookie again (a feed that moved is redirected at every
   poll), is timed with the cookies of 100 and 1,000 sites in it and, as the baseline, of
   none.

Flat is 1x: a poll must not cost more because the deployment is older or larger.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import tempfile
import time
from datetime import timedelta
from http.cookies import SimpleCookie
from pathlib import Path

from yarl import URL

from bench.synthetic import END, Figures, quick_mode, results
from monitor import store
from monitor.config import Config, Source
from monitor.dates import iso
from monitor.fetch import Fetcher, Limits
from monitor.store import Poll

log = logging.getLogger("bench.growth")
RESULTS = Path(__file__).with_name("results.json")
MONTH = 30 * 24 * 6
"""Polls every 10 minutes for 30 days, each bringing something new."""
SITES = (0, 100, 1000)


def health(polls: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        db = store.open_db(Path(tmp) / "health.db")
        sources = (
            Source("busy", "https://example.org/busy"),
            Source("new", "https://example.org/new"),
        )
        store.sync_sources(db, Config(Path(tmp) / "feeds.yaml", sources))
        start = END - timedelta(days=30)
        with db.conn:
            db.conn.executemany(
                "INSERT INTO fetches (source, started, status, new, duration_ms)"
                " VALUES ('busy', ?, 'ok', 3, 100)",
                [(iso(start + timedelta(minutes=10 * k)),) for k in range(MONTH)],
            )
        log.info(
            "health: %d polls each of a source with %d past polls and of a new one", polls, MONTH
        )
        took: dict[str, list[float]] = {"busy": [], "new": []}
        for n in range(polls):
            at = END + timedelta(seconds=n)
            for name in took:
                t0 = time.perf_counter()
                store.record_poll(db, Poll(name, at, 5, "not_modified", http_status=304), 600)
                took[name].append((time.perf_counter() - t0) * 1000)
        db.close()
    busy, new = (round(statistics.median(took[name]), 3) for name in ("busy", "new"))
    return {
        "polls": polls,
        "history": MONTH,
        "busy_ms": busy,
        "new_ms": new,
        "ratio": round(busy / new, 2),
    }


async def cookies(sites: tuple[int, ...], requests: int) -> dict[str, dict[str, float]]:
    figures = {}
    feed, moved = URL("https://www.site5.co.nz/rss"), URL("https://www.site5.co.nz/feed/")
    for n in sites:
        async with Fetcher(contact="bench") as fetcher:
            jar = fetcher._session(Limits()).cookie_jar
            for k in range(n):
                jar.update_cookies({"__cf_bm": "x" * 100}, URL(f"https://www.site{k}.co.nz/"))
            first, hop = [], []
            for _ in range(requests):
                t0 = time.perf_counter()
                jar.filter_cookies(feed)
                t1 = time.perf_counter()
                jar.update_cookies(SimpleCookie("__cf_bm=y; Path=/"), feed)
                jar.filter_cookies(moved)
                first.append((t1 - t0) * 1e6)
                hop.append((time.perf_counter() - t1) * 1e6)
        figures[str(n)] = {
            "request_us": round(statistics.median(first), 1),
            "redirect_us": round(statistics.median(hop), 1),
        }
    return figures


def main() -> None:
    quick = quick_mode(__doc__, "100 polls and requests of each kind instead of 1,000")
    runs = 100 if quick else 1000
    growth: Figures = {"health": health(runs), "cookies": asyncio.run(cookies(SITES, runs))}
    results(RESULTS, "growth", growth)
    h, jar = growth["health"], growth["cookies"]
    print(f"1. Recording a poll answered 304, median ms of {h['polls']}")
    print(f"   {'a new source (the baseline)':<52} {h['new_ms']:>7}")
    print(
        f"   {f'a source with {MONTH:,} past polls that brought news':<52} {h['busy_ms']:>7}  {h['ratio']}x"
    )
    print("2. The jar's work for a request to a site in it, median us, with the cookies of N sites")
    print(f"   {'sites':>6} {'the request':>12} {'a redirect (301) next hop':>26}")
    for n, f in jar.items():
        print(f"   {int(n):>6,} {f['request_us']:>12} {f['redirect_us']:>26}")
    for key, what in (("request_us", "a request"), ("redirect_us", "a redirect")):
        none, *_, many = (jar[str(n)][key] for n in SITES)
        print(f"   {SITES[-1]:,} sites against none (the baseline), {what}: {many / none:.2f}x")


if __name__ == "__main__":
    main()
