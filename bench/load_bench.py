"""What the website and staff wait on under load, while the collector writes.

    python -m bench.load_bench [--quick]

A store of 1M articles (100K with --quick), `monitor serve` in its own process, a writer adding
articles and republishing the public files every second, and a second process of 8 client
threads (throughput) or one (what a single person waits for): requests/s, p50 and p95 for the
published headlines file, the same headlines through Datasette's canned query (the baseline),
and a ranked search.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

import httpx

from bench.synthetic import END, VOCABULARY, headline, quick_mode, results, store_of
from monitor import publish, store
from monitor.normalise import Item
from monitor.store import Poll

CLIENT = r"""
import http.client, json, sys, threading, time, urllib.parse
url, total, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[4])
cookie = "; ".join(f"{k}={v}" for k, v in json.loads(sys.argv[3]).items())
parts = urllib.parse.urlsplit(url)
target = parts.path + ("?" + parts.query if parts.query else "")
latencies, errors, lock = [], [], threading.Lock()
def work(n):
    # http.client, one keep-alive connection a thread: httpx's client cost this process 1.4 ms of
    # CPU a request, more than the server's, and the figure was the client's (bench/HISTORY.md).
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    for _ in range(n):
        t0 = time.perf_counter()
        conn.request("GET", target, headers={"Cookie": cookie})
        r = conn.getresponse()
        body = r.read()
        ms = (time.perf_counter() - t0) * 1000
        with lock:
            latencies.append(ms)
            if r.status != 200 or b"locked" in body:
                errors.append(r.status)
    conn.close()
t0 = time.perf_counter()
ts = [threading.Thread(target=work, args=(total // threads,)) for _ in range(threads)]
[t.start() for t in ts]; [t.join() for t in ts]
wall = time.perf_counter() - t0
latencies.sort()
print(json.dumps({"requests": len(latencies), "errors": len(errors), "rps": round(len(latencies) / wall),
                  "p50_ms": round(latencies[len(latencies) // 2], 1),
                  "p95_ms": round(latencies[int(len(latencies) * 0.95)], 1)}))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    quick = quick_mode(__doc__, "100K articles instead of 1M")
    size = 100_000 if quick else 1_000_000
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "load.db"
        db = store_of(size, path)
        publish.publish(db, publish.public_dir(path))
        port = free_port()
        env = {**os.environ, "MONITOR_SECRET": "bench"}
        server = subprocess.Popen(
            [str(Path(sys.executable).parent / "monitor"), "serve", "--db", str(path), "--port", str(port)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                httpx.get(base + "/robots.txt", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        from datasette.app import Datasette

        cookie = {"ds_actor": Datasette(secret="bench").sign({"a": {"id": "bench"}}, "actor")}
        stop = threading.Event()
        written = 0

        def writer() -> None:
            with store.Checkpointer(db):  # as the collector writes: checkpoints off its path
                write_until_stopped()

        def write_until_stopped() -> None:
            nonlocal written
            rng = random.Random(1)
            now = END + timedelta(hours=1)
            while not stop.is_set():
                batch = []
                for _ in range(20):
                    title, summary = headline(rng)
                    url = f"https://bench.example/load/{written}"
                    written += 1
                    batch.append(Item(url=url, link=url, guid=None, title=title, summary=summary,
                                      published=None, outlet="Bench", topics=("campaign",)))  # fmt: skip
                store.record_poll(db, Poll("bench", now, 1, "ok"), 600, batch, now=now)
                publish.publish(db, publish.public_dir(path))
                now += timedelta(seconds=30)
                time.sleep(1)

        thread = threading.Thread(target=writer)
        thread.start()
        figures = {}
        try:
            headlines = "/coverage/latest_headlines.json?_shape=array"
            search = f"/coverage/search.json?q={VOCABULARY[9000]}"
            for name, page, total, clients in [
                ("published file /public/latest_headlines.json", "/public/latest_headlines.json", 4000, 8),
                ("canned query /coverage/latest_headlines.json", headlines, 2000, 8),
                ("canned query, one client", headlines, 300, 1),
                ("ranked search, rare word", search, 800, 8),
                ("ranked search, rare word, one client", search, 300, 1),
            ]:  # fmt: skip
                out = subprocess.run(
                    [sys.executable, "-c", CLIENT, base + page, str(total), json.dumps(cookie),
                     str(clients)],
                    capture_output=True, text=True, check=True,
                )  # fmt: skip
                figures[name] = json.loads(out.stdout)
        finally:
            stop.set()
            thread.join()
            server.terminate()
            server.wait(timeout=10)
            db.close()
    print(f"{size:,} articles stored; the collector wrote {written} more during the run")
    print(
        f"{'endpoint (second process)':48} {'req/s':>7} {'p50 ms':>8} {'p95 ms':>8} {'errors':>7}"
    )
    for name, f in figures.items():
        print(f"{name:48} {f['rps']:>7} {f['p50_ms']:>8} {f['p95_ms']:>8} {f['errors']:>7}")
    results(Path(__file__).with_name("results.json"), "load", {"size": size, **figures})


if __name__ == "__main__":
    main()
