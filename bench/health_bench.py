"""A source's health after a month of polls: what recording one poll costs as its history grows.

    python -m bench.health_bench [--quick]

Every poll updates its source's health and flag, and the flag judges the source's usual rate
from its past polls that brought something new. A Google News search polled every 10 minutes
finds something nearly every time: 4,320 such polls in 30 days. This records polls answered 304
for a source with that month behind it and, as the baseline in the same run, for a source with
none, in turns, through store.record_poll (one transaction each, as a running collector writes
a poll that falls due alone). Reported: the median ms a poll for each, and their ratio (flat is
1x: the cost must not grow with the source's age).
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from bench.synthetic import END, quick_mode, results
from monitor import store
from monitor.config import Config, Source
from monitor.dates import iso
from monitor.store import Poll

log = logging.getLogger("bench.health")
RESULTS = Path(__file__).with_name("results.json")
MONTH = 30 * 24 * 6
"""Polls every 10 minutes for 30 days, each bringing something new."""


def main() -> None:
    quick = quick_mode(__doc__, "100 polls of each source instead of 1,000")
    polls = 100 if quick else 1000
    with tempfile.TemporaryDirectory() as tmp:
        db = store.open_db(Path(tmp) / "health.db")
        sources = (
            Source("busy", "https://example.org/busy"),
            Source("new", "https://example.org/new"),
        )
        store.sync_sources(db, Config(Path(tmp) / "feeds.yaml", sources))
        start = END - timedelta(days=30)
        history = [(iso(start + timedelta(minutes=10 * k)),) for k in range(MONTH)]
        with db.conn:
            db.conn.executemany(
                "INSERT INTO fetches (source, started, status, new, duration_ms)"
                " VALUES ('busy', ?, 'ok', 3, 100)",
                history,
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
    figures = {"polls": polls, "history": MONTH, "busy_ms": busy, "new_ms": new,
               "ratio": round(busy / new, 2)}  # fmt: skip
    results(RESULTS, "health", figures)
    print(f"{'source':>40} {'ms a poll (median)':>20}")
    print(f"{'new (no history: the baseline)':>40} {new:>20}")
    print(f"{f'busy ({MONTH:,} past polls that brought news)':>40} {busy:>20}")
    print(f"{'ratio':>40} {figures['ratio']:>19}x")


if __name__ == "__main__":
    main()
