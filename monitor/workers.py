"""CPU-bound steps (reading a feed: parse, normalise, match topics) in a second process.

The collector is one event loop: fetching and writing share its core. On a machine
with more than one core, reading the feeds goes to a worker process, so a pass of many changed
feeds uses two cores instead of one. The worker starts on first use (a pass where every feed
answers 304 never pays for it). With one core, or `processes=0`, the work runs in a thread as
before. Jobs must be module-level functions of picklable arguments.

Jobs and results cross a socket as length-prefixed pickles, read and written by the event loop
itself. concurrent.futures' process pool puts two threads of its own in the collector (one
feeding the pipe, one reading results and waking the loop) and a wake-up per job: for a pass of
1,000 changed feeds, 1.2-1.3 s of the collector's CPU against 0.8-0.9 s this way, in the
process that is a full cycle's bottleneck (bench/HISTORY.md).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import io
import logging
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from monitor.errors import ParseError

log = logging.getLogger(__name__)

T = TypeVar("T")

ORPHAN_CHECK_S = 1.0
"""How often a worker checks that its collector is still alive."""
STOP_WAIT_S = 10.0
"""How long close() lets a worker finish the job in hand before killing it."""

_LENGTH = struct.Struct("!Q")
_BOOT = "import sys; sys.path[:] = sys.argv[3:]; from monitor.workers import serve; serve()"
"""The worker's command: the collector's import path, then the loop of jobs."""


def default_processes() -> int:
    """One worker per core beyond the event loop's own (none on a one-core machine)."""
    return max((os.cpu_count() or 1) - 1, 0)


class Workers:
    def __init__(self, processes: int | None = None) -> None:
        self.processes = default_processes() if processes is None else processes
        self._workers: list[_Worker] = []
        self._starting = asyncio.Lock()

    async def run(self, job: Callable[..., T], *args: object) -> T:
        if not self.processes:
            return await asyncio.to_thread(job, *args)
        if len(self._workers) < self.processes or not all(w.alive for w in self._workers):
            async with self._starting:  # the first polls of a pass all ask at once
                self._workers = [w for w in self._workers if w.alive]
                while len(self._workers) < self.processes:
                    self._workers.append(await _Worker.start())
        worker = min(self._workers, key=lambda w: len(w.pending))
        result: T = await worker.call(job, args)
        return result

    def close(self) -> None:
        """Stop the workers: each finishes the job in hand (a job waiting is cancelled)."""
        workers, self._workers = self._workers, []
        for worker in workers:
            worker.stop()
        for worker in workers:
            worker.reap()


class _Worker:
    """One worker process and the socket to it: jobs go in order, results come back in order."""

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.process = process
        self.reader = reader
        self.writer = writer
        self.pending: collections.deque[asyncio.Future[Any]] = collections.deque()
        """The callers of the jobs sent and not yet answered, oldest first."""
        self.alive = True
        self._results = asyncio.create_task(self._read_results())

    @classmethod
    async def start(cls) -> _Worker:
        process, ours = _spawn()
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        # No flow control on jobs (the pass bounds the polls under way): with asyncio's default
        # of 64 KB a job's drain() waited until the worker had read every job queued before it,
        # which it does only as it finishes them, so answers ready in turn were taken up all at
        # once when the queue ran dry, and the writer waited meanwhile (bench/HISTORY.md).
        writer.transport.set_write_buffer_limits(high=2**62)
        return cls(process, reader, writer)

    async def call(self, job: Callable[..., Any], args: tuple[object, ...]) -> Any:
        message = pickle.dumps((job, args), pickle.HIGHEST_PROTOCOL)
        answer = asyncio.get_running_loop().create_future()
        self.pending.append(answer)
        self.writer.writelines((_LENGTH.pack(len(message)), message))
        try:
            await self.writer.drain()
        except OSError:
            self._lost()  # the worker is gone: its answer, and every other, is the error
        return await answer

    def stop(self) -> None:
        """Hang up: the worker sees the end of its input once the job in hand is done (now:
        closing the transport alone would wait for the event loop, which reap() blocks)."""
        self.alive = False
        self._results.cancel()
        for answer in self.pending:
            answer.cancel()
        with contextlib.suppress(OSError):
            self.writer.get_extra_info("socket").shutdown(socket.SHUT_WR)
        self.writer.close()

    def reap(self) -> None:
        try:
            self.process.wait(STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            log.warning("the feed-reading process did not stop; killing it")
            self.process.kill()
            self.process.wait()

    async def _read_results(self) -> None:
        try:
            while True:
                (length,) = _LENGTH.unpack(await self.reader.readexactly(_LENGTH.size))
                # Trusted: our own child, over a socket pair no other process holds.
                ok, value = pickle.loads(await self.reader.readexactly(length))  # noqa: S301
                answer = self.pending.popleft()
                if answer.cancelled():  # its poll was cancelled meanwhile: nobody to tell
                    continue
                if ok:
                    answer.set_result(value)
                else:
                    answer.set_exception(value)
        except (asyncio.IncompleteReadError, OSError):
            self._lost()

    def _lost(self) -> None:
        """A parser library crashed the worker (or it was killed): a new one starts with the
        next job; the feeds it was reading are retried at their next poll."""
        if not self.alive:
            return
        log.error("the feed-reading process stopped unexpectedly; starting another")
        self.alive = False
        for answer in self.pending:
            if not answer.done():
                answer.set_exception(_stopped())
        self.pending.clear()
        self.writer.close()
        self.process.kill()  # gone already, or of no more use
        self.process.wait()


def _spawn() -> tuple[subprocess.Popen[bytes], socket.socket]:
    """A worker process (no event loop needed: fork and exec take milliseconds) and our end of
    its socket."""
    ours, theirs = socket.socketpair()
    with theirs:
        process = subprocess.Popen(
            [sys.executable, "-c", _BOOT, str(theirs.fileno()), str(os.getpid()), *sys.path],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
        )
    return process, ours


def _stopped() -> ParseError:
    return ParseError("the process reading this feed stopped unexpectedly")


def serve() -> None:
    """The worker process (see _BOOT): jobs from the socket, each answered in turn, until the
    collector hangs up."""
    fd, collector = int(sys.argv[1]), int(sys.argv[2])
    # Ctrl-C reaches the whole process group; the collector decides when its worker stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(
        target=_leave_with, args=(collector,), name="leave-with-collector", daemon=True
    ).start()
    with socket.socket(fileno=fd) as sock, sock.makefile("rwb") as channel:
        while (message := _receive(channel)) is not None:
            try:
                job, args = pickle.loads(message)  # noqa: S301 (from the collector that started us)
                answer = pickle.dumps((True, job(*args)), pickle.HIGHEST_PROTOCOL)
            except Exception as e:  # the job's error is its caller's, as if it ran there
                answer = _pickled_error(e)
            try:
                channel.write(_LENGTH.pack(len(answer)))
                channel.write(answer)
                channel.flush()
            except OSError:  # the collector hung up while the job ran
                break
    # The collector waits for this exit (a pass ends with it), and nothing is left to write
    # but stderr: the interpreter's own teardown (every module the parsers import) took 0.06 s.
    sys.stderr.flush()
    os._exit(0)


def _receive(channel: io.BufferedIOBase) -> bytes | None:
    head = channel.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        return None
    (length,) = _LENGTH.unpack(head)
    message = channel.read(length)
    return message if len(message) == length else None  # cut short: the collector hung up


def _pickled_error(e: Exception) -> bytes:
    try:
        return pickle.dumps((False, e), pickle.HIGHEST_PROTOCOL)
    except Exception:  # an exception that cannot cross: its words can
        return pickle.dumps((False, RuntimeError(f"{type(e).__name__}: {e}")))


def _leave_with(parent: int) -> None:
    """Exit when the collector is gone. A collector killed outright (SIGKILL, the OOM killer)
    closes its end of the socket, but a worker in the middle of a job would not see it until
    the job ends."""
    while os.getppid() == parent:
        time.sleep(ORPHAN_CHECK_S)
    os._exit(1)
