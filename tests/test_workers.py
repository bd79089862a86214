"""The feed-reading worker process: results as in-process, and a crashed worker is replaced."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import pytest

from monitor.errors import ParseError
from monitor.workers import Workers


def pid_and_square(n: int) -> tuple[int, int]:
    return os.getpid(), n * n


def die(code: int) -> None:
    os._exit(code)  # what a segfault in a parser library looks like from the collector


def with_a_worker(scenario: Callable[[Workers], Awaitable[None]]) -> None:
    """Run the scenario with one worker process, stopped afterwards whatever happens."""

    async def main() -> None:
        workers = Workers(1)
        try:
            await scenario(workers)
        finally:
            workers.close()

    asyncio.run(main())


def test_jobs_run_in_another_process_and_a_crash_is_one_feed_error():
    async def scenario(workers: Workers) -> None:
        pid, square = await workers.run(pid_and_square, 7)
        assert square == 49 and pid != os.getpid()
        with pytest.raises(ParseError, match="stopped unexpectedly"):
            await workers.run(die, 3)
        again, square = await workers.run(pid_and_square, 8)
        assert square == 64 and again not in (pid, os.getpid())  # a fresh worker

    with_a_worker(scenario)


def fail(message: str) -> None:
    raise ValueError(message)


def nap_then_pid(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def test_a_jobs_error_is_raised_where_it_was_awaited_and_the_worker_carries_on():
    async def scenario(workers: Workers) -> None:
        pid, _ = await workers.run(pid_and_square, 2)
        with pytest.raises(ValueError, match="not a feed"):
            await workers.run(fail, "not a feed")
        assert await workers.run(pid_and_square, 3) == (pid, 9)

    with_a_worker(scenario)


def test_answers_reach_their_own_callers_when_one_gave_up_waiting():
    # Results come back in the order jobs went: a caller cancelled (a poll's deadline) must not
    # shift the answers of the jobs behind it.
    async def scenario(workers: Workers) -> None:
        pid = await workers.run(nap_then_pid, 0)
        slow = asyncio.ensure_future(workers.run(nap_then_pid, 0.3))
        squares = [asyncio.ensure_future(workers.run(pid_and_square, n)) for n in range(5)]
        await asyncio.sleep(0.1)
        slow.cancel()
        assert await asyncio.gather(*squares) == [(pid, n * n) for n in range(5)]

    with_a_worker(scenario)


def nap_with(seconds: float, payload: bytes) -> float:
    started = time.monotonic()  # CLOCK_MONOTONIC: one clock for every process of the machine
    time.sleep(seconds)
    return started


def test_an_answer_is_taken_up_when_it_is_ready_not_when_the_queue_behind_it_is_read():
    # Jobs the size of feeds, queued together as a pass queues them: the first caller has its
    # answer while the last job still waits its turn (not once the worker has read them all).
    async def scenario(workers: Workers) -> None:
        await workers.run(pid_and_square, 1)  # the worker is up

        async def timed(n: int) -> tuple[float, float]:
            started = await workers.run(nap_with, 0.15, bytes(500_000 + n))
            return started, time.monotonic()

        jobs = await asyncio.gather(*(timed(n) for n in range(5)))
        first_answered, last_started = jobs[0][1], jobs[-1][0]
        assert first_answered < last_started

    with_a_worker(scenario)


def test_no_processes_means_a_thread_of_this_process():
    async def scenario() -> None:
        workers = Workers(0)
        pid, square = await workers.run(pid_and_square, 3)
        assert (pid, square) == (os.getpid(), 9)
        workers.close()

    asyncio.run(scenario())


ORPHANED = """
import asyncio, os, signal, sys, time
from monitor.workers import Workers

async def main():
    workers = Workers(1)
    if sys.argv[1] == "running":
        print(await workers.run(os.getpid), flush=True)
        await workers.run(time.sleep, 60)
    else:  # killed while its worker is still starting up
        job = asyncio.ensure_future(workers.run(time.sleep, 60))
        await asyncio.sleep(0)
        me = os.getpid()
        print(open(f"/proc/{me}/task/{me}/children").read(), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""


@pytest.mark.parametrize("moment", ["running", "starting"])
def test_the_worker_leaves_when_the_collector_is_killed_outright(moment):
    with subprocess.Popen(
        [sys.executable, "-c", ORPHANED, moment], stdout=subprocess.PIPE, text=True
    ) as parent:
        assert parent.stdout is not None
        worker = int(parent.stdout.readline())
        if parent.poll() is None:
            os.kill(parent.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(worker):
        time.sleep(0.1)
    assert not _alive(worker), "the worker outlived its collector"


def _alive(pid: int) -> bool:
    try:
        # Reaped by init once it exits; a zombie until then counts as gone.
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_the_worker_reads_feeds_without_importing_what_only_the_collector_needs():
    # Every article of a pass waits for the worker's first answer, which waits for its imports.
    script = (
        "import sys, monitor.read; "
        "print(sorted(m for m in ('sqlite_utils', 'aiohttp', 'monitor.collect', 'monitor.store')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
