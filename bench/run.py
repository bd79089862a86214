"""`make bench`: the collector and the store under load, each against a baseline in the same run.

    python -m bench.run [--quick]

0. The machine: the issue's reference figures (feedparser's and bare lxml's parsing speed)
   measured again, for how fast this machine is in this run beside the issue's.
1. Full cycle, every feed changed: our collector (the median of RUNS runs, the first before
   the baseline and the rest after it) vs the naive collector every tutorial writes
   (sequential GET, feedparser.parse of the body, one sqlite-utils upsert per item).
2. Unchanged cycle (every feed answers 304): time and CPU as a fraction of the changed cycle,
   for `monitor collect` (a fresh interpreter each time) and for passes of a running collector
   (bench/passes.py: what the scheduler pays each pass once it is up; the median of 5 passes);
   the passes again with every feed sent whole, the same bytes, without an ETag.
3. Ingest into a store already holding 0 and 100K articles (1M without --quick), FTS and
   indexes on: items/s through the collector's writer (polls arriving together; the median of
   RUNS runs) and a poll at a time, against raw executemany into the same store without FTS
   (the ceiling).
Story clustering at 10K/100K/1M is bench/stories_bench.py. Each collector runs in its own
process (a fresh interpreter: CPU seconds and peak RSS are its own). Figures go to the terminal
and bench/results.json.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import feedparser
import lxml.etree
import yaml

from bench.newsweb import ITEMS, NewsWeb, feed_body
from bench.synthetic import END, Figures, headline, quick_mode, results, store_of
from monitor import store
from monitor.normalise import Item
from monitor.store import Poll, Written
from monitor.writer import Writer

log = logging.getLogger("bench")
RESULTS = Path(__file__).with_name("results.json")

NAIVE = """
import sys, httpx, feedparser, sqlite_utils
urls = sys.argv[2:]
db = sqlite_utils.Database(sys.argv[1])
with httpx.Client() as client:
    for url in urls:
        feed = feedparser.parse(client.get(url).content)
        for e in feed.entries:
            db["articles"].upsert({"url": e.get("link"), "title": e.get("title"),
                                   "summary": e.get("summary"), "published": e.get("published")},
                                  pk="url")
"""


LAUNCHER = """
import json, os, subprocess, sys, time
t0 = time.perf_counter()
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(proc.pid, 0)
print(json.dumps([status, time.perf_counter() - t0, usage.ru_utime + usage.ru_stime,
                  usage.ru_maxrss]))
"""
"""Runs a command and reports its wall time, CPU and peak RSS. Linux counts a process's peak
RSS from its parent's at the fork it was started by (exec records the copied memory's
high-water mark), and this benchmark holds 100-300 MB by figure 3: a command started from it
was reported at least that large (the collector's 257 MB at 1M stored as 312 MB). Started
from this small interpreter instead, a command's peak is its own."""


def run_child(args: list[str]) -> dict[str, float]:
    """Run a command; its wall time, CPU seconds and peak RSS (from wait4)."""
    launched = subprocess.run([sys.executable, "-c", LAUNCHER, *args], capture_output=True)
    if launched.returncode != 0 or not launched.stdout:
        raise SystemExit(f"{args[:3]}: {launched.stderr.decode()[-2000:]}")
    status, wall, cpu, maxrss = json.loads(launched.stdout)
    if status != 0:
        raise SystemExit(f"{args[:3]} failed: {launched.stderr.decode()[-2000:]}")
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "peak_rss_mb": round(maxrss / 1024, 1),
    }


MONITOR = str(Path(sys.executable).parent / "monitor")


def write_config(web: NewsWeb, feeds: int, directory: Path, validators: bool = True) -> Path:
    config = directory / ("feeds.yaml" if validators else "feeds-plain.yaml")
    config.write_text(yaml.safe_dump({
        "defaults": {"interval": "10m", "timeout": "120s", "allow_private": True},
        # One loopback host plays a thousand outlets: the per-host limit must not be the gate.
        "collector": {"concurrency": 32, "per_host": 1000},
        "sources": [{"name": f"feed{n}", "url": web.url(n, validators)} for n in range(feeds)],
    }))  # fmt: skip
    return config


RUNS = 3
"""Our full cycle runs this many times (each into an empty store) and the median run is the
figure: the machine's speed drifts 20-40 % within minutes (the same code took 12 s and 19 s in
one afternoon). The naive collector (66-231 s) runs once, after the first of them."""


def collector_cycles(feeds: int, directory: Path) -> Figures:
    web = NewsWeb(feeds)
    web.warm()
    web.start()
    try:
        config = write_config(web, feeds, directory)
        stores = [directory / f"ours{n}.db" for n in range(RUNS)]

        def our_cycle(n: int) -> dict[str, float]:
            log.info("full cycle: our collector, %d feeds, run %d of %d", feeds, n + 1, RUNS)
            return run_child([MONITOR, "collect", "--config", str(config), "--db", str(stores[n])])

        # The naive collector runs between our runs, so that the ratio compares the same stretch
        # of the machine's drift: its speed moves by a third within minutes, and the naive
        # collector alone takes two to four.
        runs = [our_cycle(0)]
        log.info("full cycle: the naive collector")
        naive_db = directory / "naive.db"
        naive = run_child(
            [sys.executable, "-c", NAIVE, str(naive_db)] + [web.url(n) for n in range(feeds)]
        )
        runs += [our_cycle(n) for n in range(1, RUNS)]
        ours = sorted(runs, key=lambda r: r["wall_s"])[RUNS // 2]
        db = stores[runs.index(ours)]  # the unchanged cycle follows the median
        log.info("unchanged cycle: our collector")
        unchanged = run_child([MONITOR, "collect", "--config", str(config), "--db", str(db)])
        log.info("steady state: a changed pass, then unchanged ones, in one collector")
        steady = running_passes(config, directory / "passes.db")
        log.info("steady state again, the feeds sent whole every time (no ETag)")
        plain = write_config(web, feeds, directory, validators=False)
        identical = running_passes(plain, directory / "passes-plain.db")
    finally:
        web.stop()
    items = feeds * ITEMS
    stored = store.open_db(db).execute("SELECT count(*) FROM articles").fetchone()[0]
    return {
        "feeds": feeds,
        "items": items,
        "stored": stored,
        "ours": {**ours, "items_per_s": round(items / ours["wall_s"]),
                 "runs_wall_s": [r["wall_s"] for r in runs]},
        "naive": {**naive, "items_per_s": round(items / naive["wall_s"])},
        "speedup": round(naive["wall_s"] / ours["wall_s"], 2),
        "unchanged": {**unchanged,
                      "cpu_fraction_of_changed": round(unchanged["cpu_s"] / max(ours["cpu_s"], 0.01), 3)},
        "running_collector": steady,
        "running_collector_identical_bodies": identical,
    }  # fmt: skip


def running_passes(config: Path, db: Path) -> Figures:
    """bench/passes.py: a changed pass, then unchanged ones; the median unchanged pass."""
    passes = json.loads(
        subprocess.run(
            [sys.executable, "-m", "bench.passes", str(config), str(db)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    changed, rest = passes[0], passes[1:]
    quiet = sorted(rest, key=lambda r: r["cpu_s"])[len(rest) // 2]
    return {"changed_pass": changed, "unchanged_pass": quiet,
            "unchanged_passes_cpu_s": [r["cpu_s"] for r in rest],
            "cpu_fraction_of_changed": round(quiet["cpu_s"] / max(changed["cpu_s"], 0.01), 3)}  # fmt: skip


def ingest(size: int, directory: Path) -> Figures:
    """Items/s adding 5,000 articles to a store of `size` (our write path vs raw executemany),
    and the collector's peak memory over that store.

    Our write path, 5,000 new articles at a time: as 50 polls of 100 arriving together and
    written by the collector's writer (group commit: a few transactions), three times (the
    median is the figure: one run takes ~0.5 s, and moved by a third from one run to the next),
    and as 50 polls arriving one after another (a transaction each: what a trickle of polls
    pays).
    """
    rng = random.Random(size)
    db = store_of(size, directory / f"ingest-{size}.db")
    now = END + timedelta(hours=1)
    batches = []
    for b in range(1 + 50 * RUNS + 51):
        batch = []
        for i in range(100):
            title, summary = headline(rng)
            url = f"https://bench.example/in/{b}/{i}"
            batch.append(Item(url=url, link=url, guid=None, title=title, summary=summary,
                              published=None, outlet="Bench"))  # fmt: skip
        batches.append(batch)
    warm_up, warm_up_alone, alone = batches[0], batches[1 + 50 * RUNS], batches[2 + 50 * RUNS :]
    together = [batches[1 + 50 * r : 51 + 50 * r] for r in range(RUNS)]

    async def arriving_together() -> list[float]:
        """Items/s through the writer, once it has written a first poll (not timed: it loads
        the clusterer's window and the indexes' upper pages, which a running collector did
        long ago)."""
        writer = Writer(store.path_of(db))
        rates = []
        with store.Checkpointer(writer.db):  # as the collector writes: checkpoints aside
            await writer.record(Written(Poll("bench", now, 1, "ok"), 600, warm_up, now))
            for r, run in enumerate(together, 1):
                later = now + timedelta(seconds=30 * r)
                polls = [Written(Poll("bench", later, 1, "ok"), 600, b, later) for b in run]
                t0 = time.perf_counter()
                await asyncio.gather(*(writer.record(p) for p in polls))
                rates.append(5000 / (time.perf_counter() - t0))
        await writer.close()
        return rates

    runs = asyncio.run(arriving_together())
    ours = statistics.median(runs)
    now += timedelta(seconds=30 * (RUNS + 1))
    with store.Checkpointer(db):
        # The loop's connection has its own clusterer memory to load, again not timed.
        store.record_poll(db, Poll("bench", now, 1, "ok"), 600, warm_up_alone, now=now)
        t0 = time.perf_counter()
        for batch in alone:
            now += timedelta(seconds=30)
            store.record_poll(db, Poll("bench", now, 1, "ok"), 600, batch, now=now)
        one_by_one = 5000 / (time.perf_counter() - t0)
    batches = together[0]
    # The ceiling: the same rows into the same store, one executemany, nothing else (no
    # full-text index, no stories, no lookups), rolled back so the store is left as it was.
    rows = [
        (item.url + "/raw", item.title, item.summary, "2026-01-01T00:00:00Z",
         "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z", "bench", "Bench")
        for batch in batches for item in batch
    ]  # fmt: skip
    db.execute("BEGIN IMMEDIATE")
    t0 = time.perf_counter()
    db.conn.executemany(
        """INSERT INTO articles (url, title, summary, published, first_seen, updated, source,
            outlet) VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
        rows,
    )
    ceiling = 5000 / (time.perf_counter() - t0)
    db.execute("ROLLBACK")
    db.close()
    memory = collector_memory(directory / f"ingest-{size}.db", directory)
    return {"ours_items_per_s": round(ours), "ours_runs_items_per_s": [round(r) for r in runs],
            "one_poll_per_transaction_items_per_s": round(one_by_one),
            "raw_executemany_items_per_s": round(ceiling),
            "fraction_of_ceiling": round(ours / ceiling, 3),
            "collector_peak_rss_mb": memory["peak_rss_mb"]}  # fmt: skip


def collector_memory(db: Path, directory: Path) -> dict[str, float]:
    """`monitor collect` of 100 changed feeds (5,000 new articles) into this store: its peak RSS
    (the clusterer loads the store's last days; SQLite's page cache is bounded at 64 MB)."""
    web = NewsWeb(100)
    web.cycle = 1  # other articles than the full-cycle run's
    web.warm()
    web.start()
    try:
        config = write_config(web, 100, directory)
        return run_child([MONITOR, "collect", "--config", str(config), "--db", str(db)])
    finally:
        web.stop()


REFERENCE = {"feedparser": (2_500, 2.7), "lxml": (205_000, 230.0)}
"""The issue's measurements of parsing on this machine kind, in items/s and MB/s: what its
absolute targets were set beside."""


def machine_speed() -> dict[str, float]:
    """The issue's reference figures measured again on the benchmark's own feeds (1,000 items,
    the best of three), against the issue's: how fast this machine is in this run beside the
    one the absolute targets were set on (its speed has moved 3x between days). feedparser is
    Python, lxml C. Both units, as the issue's feeds had larger items (~1.1 KB against
    ~0.7 KB): a parser's cost is partly per item and partly per byte."""
    bodies = [feed_body(n, 0) for n in range(20)]
    size = sum(map(len, bodies)) / 1e6
    figures: dict[str, float] = {}
    for name, parse in (("feedparser", feedparser.parse), ("lxml", lxml.etree.fromstring)):
        parse(bodies[0])  # its lazy imports and first-use set-up
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            for body in bodies:
                parse(body)
            best = min(best, time.perf_counter() - t0)
        items, mb = len(bodies) * ITEMS / best, size / best
        figures[f"{name}_items_per_s"] = round(items)
        figures[f"{name}_mb_per_s"] = round(mb, 1)
        figures[f"{name}_of_reference_items"] = round(items / REFERENCE[name][0], 2)
        figures[f"{name}_of_reference_mb"] = round(mb / REFERENCE[name][1], 2)
    return figures


def main() -> None:
    quick = quick_mode(__doc__, "100 feeds; stores of 0 and 100K")
    feeds = 100 if quick else 1000
    sizes = [0, 100_000] if quick else [0, 100_000, 1_000_000]
    speed = machine_speed()
    with tempfile.TemporaryDirectory() as tmp:
        cycles = collector_cycles(feeds, Path(tmp))
        stores = {str(size): ingest(size, Path(tmp)) for size in sizes}
    machine = {**speed, "cpus": os.cpu_count(), "python": sys.version.split()[0],
               "max_rss_self_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}  # fmt: skip
    results(RESULTS, "collector", cycles)
    results(RESULTS, "ingest", stores)
    results(RESULTS, "machine", machine)
    o, n, u = cycles["ours"], cycles["naive"], cycles["unchanged"]
    print("\nThis machine, parsing the benchmark's feeds (the issue's reference in brackets)")
    for name, (items, mb) in REFERENCE.items():
        print(f"   {name:10} {speed[f'{name}_items_per_s']:>8,} items/s ({items:,}), "
              f"{speed[f'{name}_mb_per_s']:>6} MB/s ({mb}): "
              f"{speed[f'{name}_of_reference_items']:.0%} / {speed[f'{name}_of_reference_mb']:.0%}"
              " of the speed the absolute targets were set at")  # fmt: skip
    print(f"\n1. Full cycle, {feeds} feeds, {cycles['items']:,} items")
    print(f"   {'':10} {'wall s':>8} {'items/s':>9} {'CPU s':>7} {'peak RSS MB':>12}")
    for name, r in (("ours", o), ("naive", n)):
        print(
            f"   {name:10} {r['wall_s']:>8} {r['items_per_s']:>9} {r['cpu_s']:>7} {r['peak_rss_mb']:>12}"
        )
    print(f"   speed-up over the naive collector: {cycles['speedup']}x "
          f"(ours: the median of {RUNS} runs, {o['runs_wall_s']} s)")  # fmt: skip
    print(
        f"2. Unchanged cycle: {u['wall_s']} s wall, {u['cpu_s']} s CPU "
        f"= {u['cpu_fraction_of_changed']:.1%} of the changed cycle's CPU (monitor collect)"
    )
    for key, what in (("running_collector", "every feed 304"),
                      ("running_collector_identical_bodies", "every feed the same body, no ETag")):  # fmt: skip
        running = cycles[key]
        changed, unchanged = running["changed_pass"], running["unchanged_pass"]
        print(
            f"   in a running collector, {what}: changed pass {changed['wall_s']} s wall, "
            f"{changed['cpu_s']} s CPU; unchanged pass {unchanged['wall_s']} s wall, "
            f"{unchanged['cpu_s']} s CPU = {running['cpu_fraction_of_changed']:.1%} "
            f"(the median of {running['unchanged_passes_cpu_s']} s)"
        )
    print("3. Ingest with FTS, stories and indexes, 5,000 articles")
    for size, r in stores.items():
        print(
            f"   store of {int(size):>9,}: {r['ours_items_per_s']:>7} items/s "
            f"(runs {r['ours_runs_items_per_s']}; {r['one_poll_per_transaction_items_per_s']} a poll at a time; "
            f"raw executemany, no FTS: {r['raw_executemany_items_per_s']}; "
            f"{r['fraction_of_ceiling']:.1%} of it); "
            f"collector peak RSS {r['collector_peak_rss_mb']} MB"
        )
    print(json.dumps({"results": str(RESULTS)}))


if __name__ == "__main__":
    main()
