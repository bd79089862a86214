"""The feed-reading worker process: results as in-process, and a crashed worker is replaced."""

from __future__ import annotations

import asyncio
import os

import pytest

from monitor.errors import ParseError
from monitor.workers import Workers


def pid_and_square(n: int) -> tuple[int, int]:
    return os.getpid(), n * n


def die(code: int) -> None:
    os._exit(code)  # what a segfault in a parser library looks like from the collector


def test_jobs_run_in_another_process_and_a_crash_is_one_feed_error():
    async def scenario() -> None:
        workers = Workers(1)
        try:
            pid, square = await workers.run(pid_and_square, 7)
            assert square == 49 and pid != os.getpid()
            with pytest.raises(ParseError, match="stopped unexpectedly"):
                await workers.run(die, 3)
            again, square = await workers.run(pid_and_square, 8)
            assert square == 64 and again not in (pid, os.getpid())  # a fresh worker
        finally:
            workers.close()

    asyncio.run(scenario())


def test_no_processes_means_a_thread_of_this_process():
    async def scenario() -> None:
        workers = Workers(0)
        pid, square = await workers.run(pid_and_square, 3)
        assert (pid, square) == (os.getpid(), 9)
        workers.close()

    asyncio.run(scenario())
