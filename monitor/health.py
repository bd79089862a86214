"""When a source is polled next: its interval, backed off after failures, never disabled.

A failing source is retried sooner than a day but later each time (interval x 2^(failures-1),
capped at MAX_BACKOFF), and a server's Retry-After always wins when it is later. A success
resets it. Miniflux's habit of switching a feed off after a few errors is the complaint this avoids.
"""

from __future__ import annotations

from datetime import datetime, timedelta

MAX_BACKOFF = timedelta(hours=24)


def next_poll(
    now: datetime, interval: int, failures: int, retry_after: datetime | None = None
) -> datetime:
    wait = timedelta(seconds=interval)
    if failures > 0:
        wait = min(wait * 2 ** min(failures - 1, 16), MAX_BACKOFF)
        wait = max(wait, timedelta(seconds=interval))
    due = now + wait
    if retry_after is not None and retry_after > due:
        return retry_after
    return due
