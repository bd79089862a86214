"""Passes of a running collector: what each costs once the process is up, as the scheduler pays.

    python -m bench.passes CONFIG DB

`monitor collect` (figure 1's command) pays for starting an interpreter and importing the
collector on every run; `monitor run` pays that once and then polls for months. This polls
every source of CONFIG twice with one Polling (client, matcher, feed-reading worker, writer),
as the scheduler's ticks do, and prints the wall time and CPU seconds of each pass as JSON:
this process and its children (the feed-reading worker), read from /proc. The first pass finds
every feed changed; the UNCHANGED passes after it find every feed answering 304 (or, from the
loopback web's /plain/ feeds, sending the same bytes again).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

from monitor import store
from monitor.cli import tune_gc
from monitor.collect import Polling, poll_sources
from monitor.config import load_config

TICKS = os.sysconf("SC_CLK_TCK")
UNCHANGED = 5
"""Unchanged passes after the changed one: one pass of 304s (~0.7 s) moves by a fifth from
one pass to the next on this machine, so the figure is their median, as figure 1's is."""


def cpu_seconds() -> float:
    """CPU seconds of this process and its live children (utime + stime from /proc)."""
    me = os.getpid()
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        pid, ppid = int(entry.name), int(fields[1])
        if pid == me or ppid == me:
            total += (int(fields[11]) + int(fields[12])) / TICKS
    return total


async def passes(config_path: Path, db_path: Path, count: int) -> list[dict[str, float]]:
    config = load_config(config_path)
    db = store.open_db(db_path)
    store.sync_sources(db, config)
    polling = Polling.start(config, db)
    figures = []
    try:
        for _ in range(count):
            t0, c0 = time.perf_counter(), cpu_seconds()
            await poll_sources(config.sources, polling)
            # What the pass wrote is written before the clock stops (the writer gathers).
            await polling.writer.drain()
            figures.append(
                {
                    "wall_s": round(time.perf_counter() - t0, 2),
                    "cpu_s": round(cpu_seconds() - c0, 2),
                }
            )
    finally:
        await polling.close()
        db.close()
    return figures


def main() -> None:
    tune_gc()  # as `monitor run` does
    config, db = Path(sys.argv[1]), Path(sys.argv[2])
    print(json.dumps(asyncio.run(passes(config, db, 1 + UNCHANGED))))


if __name__ == "__main__":
    main()
