"""CPU-bound steps (reading a feed: parse, normalise, match topics) in a second process.

The collector is one event loop: fetching and writing share its core. On a machine
with more than one core, reading the feeds goes to a worker process, so a pass of many changed
feeds uses two cores instead of one. The worker starts on first use (a pass where every feed
answers 304 never pays for it). With one core, or `processes=0`, the work runs in a thread as
before. Jobs must be module-level functions of picklable arguments.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

from monitor.errors import ParseError

log = logging.getLogger(__name__)

T = TypeVar("T")

ORPHAN_CHECK_S = 1.0
"""How often a worker checks that its collector is still alive."""


def default_processes() -> int:
    """One worker per core beyond the event loop's own (none on a one-core machine)."""
    return max((os.cpu_count() or 1) - 1, 0)


class Workers:
    def __init__(self, processes: int | None = None) -> None:
        self.processes = default_processes() if processes is None else processes
        self._pool: ProcessPoolExecutor | None = None

    async def run(self, job: Callable[..., T], *args: object) -> T:
        if not self.processes:
            return await asyncio.to_thread(job, *args)
        if self._pool is None:
            # spawn: the worker does not inherit the event loop, its threads or the database
            # connection, as a plain fork would; and it is our child, so its CPU time is ours.
            context = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(
                self.processes,
                mp_context=context,
                initializer=_worker_started,
                initargs=(os.getpid(),),
            )
        pool = self._pool
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, job, *args)
        except BrokenProcessPool as e:
            # A parser library crashed the worker (or it was killed): a new one starts with
            # the next job; the feeds being read at that moment are retried at their next poll.
            if self._pool is pool:
                log.error("the feed-reading process stopped unexpectedly; starting another")
                self._pool = None
                pool.shutdown(wait=False, cancel_futures=True)
            raise ParseError("the process reading this feed stopped unexpectedly") from e

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _worker_started(collector: int) -> None:
    # Ctrl-C reaches the whole process group; the collector decides when its worker stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The collector's pid comes from the collector: it may be gone before this process is up.
    threading.Thread(
        target=_leave_with, args=(collector,), name="leave-with-collector", daemon=True
    ).start()


def _leave_with(parent: int) -> None:
    """Exit when the collector is gone. A collector killed outright (SIGKILL, the OOM killer)
    cannot stop its worker, and a worker sending it a result then blocks forever: the pipe's
    other end is open in the worker itself (concurrent.futures hands both ends to it)."""
    while os.getppid() == parent:
        time.sleep(ORPHAN_CHECK_S)
    os._exit(1)
