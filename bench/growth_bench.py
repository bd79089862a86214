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
2. The cookie jar. CDNs' bot-management cookies (one or two per site) stay in the client's jar
   between polls: building a request, and the next hop of a redirect (a feed that moved is
   redirected at every poll), is timed with the cookies of 0, 100 and 1,000 sites in it, for
   the collector's client and, as the baseline, httpx's own client with the same jar.

Flat is 1x: a poll must not cost more because the deployment is older or larger.
"""

from __future__ import annotations

import http.cookiejar
import logging
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import httpx

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


def site_cookie(n: int) -> http.cookiejar.Cookie:
    return http.cookiejar.Cookie(
        0, "__cf_bm", "x" * 100, None, False, f"www.site{n}.co.nz", True, False, "/", True,
        False, None, False, None, None, {},
    )  # fmt: skip


def build_us(client: httpx.AsyncClient, requests: int) -> tuple[float, float]:
    """Median microseconds to build a request to a site whose cookie is in the jar, and the
    next hop when that site answers 301."""
    first, hop = [], []
    for _ in range(requests):
        t0 = time.perf_counter()
        request = client.build_request("GET", "https://www.site5.co.nz/rss")
        t1 = time.perf_counter()
        moved = httpx.Response(301, headers={"Location": "/feed/"}, request=request)
        t2 = time.perf_counter()
        client._build_redirect_request(request, moved)
        first.append((t1 - t0) * 1e6)
        hop.append((time.perf_counter() - t2) * 1e6)
    return round(statistics.median(first), 1), round(statistics.median(hop), 1)


def cookies(sites: tuple[int, ...], requests: int) -> dict[str, dict[str, float]]:
    figures = {}
    for n in sites:
        ours = Fetcher(contact="bench")._client(Limits())
        theirs = httpx.AsyncClient()
        for k in range(n):
            ours.cookies.jar.set_cookie(site_cookie(k))
            theirs.cookies.jar.set_cookie(site_cookie(k))
        # httpx's own client is timed on fewer requests: at 1,000 sites each takes 10-30 ms.
        (ours_us, ours_hop), (theirs_us, theirs_hop) = (
            build_us(ours, requests),
            build_us(theirs, max(requests // 10, 10)),
        )
        figures[str(n)] = {
            "ours_us": ours_us,
            "httpx_us": theirs_us,
            "ours_redirect_us": ours_hop,
            "httpx_redirect_us": theirs_hop,
        }
    return figures


def main() -> None:
    quick = quick_mode(__doc__, "100 polls and requests of each kind instead of 1,000")
    runs = 100 if quick else 1000
    growth: Figures = {"health": health(runs), "cookies": cookies(SITES, runs)}
    results(RESULTS, "growth", growth)
    h, jar = growth["health"], growth["cookies"]
    print(f"1. Recording a poll answered 304, median ms of {h['polls']}")
    print(f"   {'a new source (the baseline)':<52} {h['new_ms']:>7}")
    print(
        f"   {f'a source with {MONTH:,} past polls that brought news':<52} {h['busy_ms']:>7}  {h['ratio']}x"
    )
    print("2. Building a request to a site in the jar, median us, with the cookies of N sites")
    print(f"   {'':>6} {'the request':>30} {'a redirect (301) next hop':>30}")
    print(f"   {'sites':>6} {'ours':>8} {'httpx (the baseline)':>21} {'ours':>8} {'httpx':>21}")
    for n, f in jar.items():
        print(
            f"   {int(n):>6,} {f['ours_us']:>8} {f['httpx_us']:>21}"
            f" {f['ours_redirect_us']:>8} {f['httpx_redirect_us']:>21}"
        )
    for key, what in (("ours_us", "a request"), ("ours_redirect_us", "a redirect")):
        few, many = (jar[str(n)][key] for n in SITES[1:])
        print(f"   ours from {SITES[1]:,} to {SITES[2]:,} sites, {what}: {many / few:.2f}x")


if __name__ == "__main__":
    main()
