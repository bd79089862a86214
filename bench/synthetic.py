"""Synthetic news for benchmarks: a Zipf-like vocabulary, headlines, summaries, rewrites."""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import random
import shutil
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlite_utils

from monitor import schema, store, stories
from monitor.cli import tune_gc
from monitor.dates import iso

log = logging.getLogger("bench")


def _word(n: int) -> str:
    letters = "abcdefghijklmnopqrstuvwxyz"
    out = ""
    for _ in range(5):  # five letters: distinct after stems() cuts words to five
        n, digit = divmod(n, 26)
        out += letters[digit]
    return out + "a"


VOCABULARY = [_word(n * 7919) for n in range(10_000)]
# Mildly skewed word use (Zipf exponent 0.5): some words common, most rare, as in headlines.
CUMULATIVE = list(itertools.accumulate(1 / (rank + 1) ** 0.5 for rank in range(len(VOCABULARY))))
END = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
"""Synthetic archives end at the start of today (UTC), so pages that look at the last N days
(today's coverage, ranked search) see what they would in a live archive of that size."""
DAILY = 2740
"""Articles a day in the synthetic archives: a million a year."""
CACHE = Path(__file__).with_name(".cache")
FILL_VERSION = 2
"""Bump when fill() changes: cached stores of another version are not reused."""
Figures = dict[str, Any]
"""A benchmark's figures as they go to bench/results.json: numbers, lists of them, and more
figures."""


def days_for(size: int) -> int:
    """How many days a store of `size` articles spans at DAILY (at least four)."""
    return max(4, round(size / DAILY))


def store_of(size: int, target: Path) -> sqlite_utils.Database:
    """A store of `size` articles (a tenth of them relevant), open at `target`.

    Filling a million articles takes minutes, so each size is filled once (per schema and
    FILL_VERSION) into bench/.cache and copied for every benchmark that needs it. The copy is
    flushed to disk before it is used: otherwise the kernel writes its 1.4 GB back (at 1M)
    while the figures are being timed, which halved some ingest runs at 1M (12,109 items/s,
    then 6,720 and 6,102 as the writeback started), a cost of the benchmark's set-up, not of
    the collector's writes.
    """
    master = CACHE / f"store-{size}-{END:%Y%m%d}-v{FILL_VERSION}-m{len(schema.MIGRATIONS)}.db"
    if not master.exists():
        CACHE.mkdir(exist_ok=True)
        partial = master.with_name(master.name + ".partial")
        partial.unlink(missing_ok=True)
        t0 = time.perf_counter()
        db = store.open_db(partial)
        db.execute("INSERT INTO sources (name, url, interval) VALUES ('bench', 'http://b/', 600)")
        fill(db, size, random.Random(size), days_for(size))
        db.execute("UPDATE articles SET topics = '[\"campaign\"]' WHERE id % 10 = 0")
        db.execute("UPDATE stories SET topics = '[\"campaign\"]' WHERE id % 10 = 0")
        store.checkpoint(db)
        db.close()
        partial.replace(master)
        log.info("filled a store of %d articles in %.0f s (cached)", size, time.perf_counter() - t0)
    shutil.copyfile(master, target)
    with target.open("rb") as copy:
        os.fsync(copy.fileno())
    return store.open_db(target)


def text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choices(VOCABULARY, cum_weights=CUMULATIVE, k=words))


def headline(rng: random.Random) -> tuple[str, str]:
    return text(rng, 8), text(rng, 30)


def fill(db: sqlite_utils.Database, count: int, rng: random.Random, days: int) -> None:
    """`count` stored articles spread over the `days` before END, each its own story, written
    in bulk, the full-text index built once at the end."""
    conn = db.conn
    conn.execute("BEGIN")
    docs: Counter[str] = Counter()
    step = timedelta(days=days) / max(count, 1)
    batch_articles, batch_stories = [], []
    for n in range(1, count + 1):
        title, summary = headline(rng)
        seen = iso(END - timedelta(days=days) + step * n)
        text = stories.text_of(title, summary)  # as the collector reads an article
        docs.update(text.distinct_words().tolist())
        batch_articles.append(
            (n, f"https://bench.example/{n}", title, summary, seen, seen, seen, "bench", "Bench",
             n, "[]", text.words, "first report")
        )  # fmt: skip
        batch_stories.append((n, title, f"https://bench.example/{n}", "Bench", seen, seen, seen,
                              1, '["Bench"]', 1, "[]"))  # fmt: skip
        if len(batch_articles) >= 20_000 or n == count:
            conn.executemany(
                """INSERT INTO articles (id, url, title, summary, published, first_seen, updated,
                    source, outlet, story_id, topics, words, match_reason)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                batch_articles,
            )
            conn.executemany(
                "INSERT INTO stories VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", batch_stories
            )
            batch_articles, batch_stories = [], []
    conn.executemany("INSERT INTO story_words VALUES (?, ?)", docs.items())
    conn.execute("INSERT INTO articles_fts (articles_fts) VALUES ('rebuild')")
    # One merged index, as FTS5's incremental merges leave a long-lived archive; straight after
    # a rebuild the first polls would pay for merging the rebuild's segments.
    conn.execute("INSERT INTO articles_fts (articles_fts) VALUES ('optimize')")
    conn.execute("COMMIT")


def quick_mode(doc: str | None, quick_help: str) -> bool:
    """A benchmark's command line (`--quick`, described by `quick_help`), its logging (progress
    from the benchmark, only warnings from the monitor and httpx, which logs every request
    the page benchmark makes at INFO) and its garbage collector, set as every `monitor`
    command sets it, so that what a benchmark runs in its own process (figure 3's writer,
    placing) pays for collections what the collector does (bench/HISTORY.md, twentieth round).
    Whether --quick was given."""
    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("monitor", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    quick = bool(parser.parse_args().quick)
    tune_gc()
    return quick


def results(path: Path, section: str, data: object) -> None:
    """Merge one benchmark's figures into bench/results.json."""
    try:
        existing = json.loads(path.read_text())
    except (OSError, ValueError):
        existing = {}
    existing[section] = data
    path.write_text(json.dumps(existing, indent=2) + "\n")
