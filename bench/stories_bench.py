"""Story clustering: the cost of adding one article to a store of 10K, 100K and 1M articles.

    python -m bench.stories_bench [--quick]

Each size gets a fresh store filled in bulk at the same density (2,740 articles a day: a
million a year), so that only the size of the archive differs, then 1,000 new articles
(a third of them rewrites of recent stories, so matching does real work) are added through the
collector's own write path. Reported: the time spent deciding stories (store_stories.place_all,
including loading the recent window), and the whole write path for reference (which also pays
for SQLite's B-trees and FTS5 segment merges). The baseline is the same work on the smallest
store: the ratio shows whether the cost per article stays flat as the archive grows. Each
figure is the median of three runs.
"""

from __future__ import annotations

import logging
import random
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlite_utils

from bench.synthetic import END, headline, quick_mode, results, store_of, text
from monitor import store, store_stories
from monitor.normalise import Item
from monitor.store import Poll
from monitor.stories import Assignment

log = logging.getLogger("bench.stories")
ADDED = 1000


def added_items(rng: random.Random, db: sqlite_utils.Database, base_n: int) -> list[Item]:
    recent = db.execute(
        "SELECT title, summary FROM articles ORDER BY first_seen DESC LIMIT 200"
    ).fetchall()
    items = []
    for n in range(ADDED):
        if n % 3 == 0:
            title, summary = rng.choice(recent)
            words = title.split()
            title = " ".join(words[:-2] + text(rng, 2).split())  # a rewrite of a recent story
        else:
            title, summary = headline(rng)
        url = f"https://bench.example/new/{base_n + n}"
        items.append(Item(url=url, link=url, guid=None, title=title, summary=summary,
                          published=None, outlet="Bench"))  # fmt: skip
    return items


RUNS = 3
"""Each size is measured this many times, on fresh copies, and the median taken: one run places
1,000 articles in a quarter of a second, which one hiccup of the machine doubles."""


def measure(size: int, directory: Path) -> tuple[float, float]:
    """The median of RUNS runs of run()."""
    runs = [run(size, directory / f"stories-{size}-{n}.db") for n in range(RUNS)]
    placing = statistics.median(cost for cost, _ in runs)
    whole = statistics.median(whole for _, whole in runs)
    log.info("size %d: ms deciding the story in each run %s", size, [round(c, 2) for c, _ in runs])
    return placing, whole


def run(size: int, path: Path) -> tuple[float, float]:
    """(ms deciding stories, ms for the whole write path) per added article, in a fresh copy of
    the store of `size` at `path` (removed afterwards)."""
    rng = random.Random(size)
    db = store_of(size, path)
    items = added_items(rng, db, size)
    now = END + timedelta(hours=1)
    placing = 0.0
    place = store_stories.place_all

    def timed(*args: Any, **kwargs: Any) -> list[Assignment]:
        nonlocal placing
        t = time.perf_counter()
        try:
            return place(*args, **kwargs)
        finally:
            placing += time.perf_counter() - t

    # Untimed, as the collector does it before the first articles arrive (Writer.expect_articles).
    store_stories.warm()
    store_stories.place_all = timed
    t0 = time.perf_counter()
    try:
        with store.Checkpointer(db):  # as the collector writes: checkpoints off the write path
            for start in range(0, ADDED, 100):
                batch = items[start : start + 100]
                store.record_poll(db, Poll("bench", now, 1, "ok"), 600, batch, now=now)
                now += timedelta(minutes=1)
    finally:
        store_stories.place_all = place
    elapsed = time.perf_counter() - t0
    joined = db.execute(
        "SELECT count(*) FROM articles WHERE url LIKE '%/new/%' AND match_reason != 'first report'"
    ).fetchone()[0]
    db.close()
    for file in path.parent.glob(path.name + "*"):
        file.unlink()
    log.info("size %d: %d of %d added articles joined a story", size, joined, ADDED)
    return placing / ADDED * 1000, elapsed / ADDED * 1000


def main() -> None:
    quick = quick_mode(__doc__, "10K and 100K only")
    sizes = [10_000, 100_000] if quick else [10_000, 100_000, 1_000_000]
    with tempfile.TemporaryDirectory() as tmp:
        costs = {size: measure(size, Path(tmp)) for size in sizes}
    base, base_all = costs[sizes[0]]
    print(f"{'stored articles':>16} {'ms deciding the story':>22} {'ratio':>6}"
          f" {'ms whole write path':>20} {'ratio':>6}")  # fmt: skip
    for size, (cost, whole) in costs.items():
        print(
            f"{size:>16,} {cost:>22.2f} {cost / base:>6.2f} {whole:>20.2f} {whole / base_all:>6.2f}"
        )
    results(
        Path(__file__).with_name("results.json"),
        "stories",
        {str(size): {"ms_per_article": round(cost, 3), "ratio": round(cost / base, 2),
                     "write_path_ms_per_article": round(whole, 3),
                     "write_path_ratio": round(whole / base_all, 2)}
         for size, (cost, whole) in costs.items()},
    )  # fmt: skip


if __name__ == "__main__":
    main()
