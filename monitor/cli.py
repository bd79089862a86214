"""The `monitor` command: thin wrappers over collect, serve, schedule and store."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import getpass
import logging
import os
import re
import secrets
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from pathlib import Path
from typing import Any, ParamSpec, TypeVar
from zoneinfo import ZoneInfo

import click

from monitor import store, store_stories
from monitor.collect import collect
from monitor.config import load_config
from monitor.dates import from_iso, iso
from monitor.errors import ConfigError, DatabaseError, FetchError
from monitor.topics import query_problem

DEFAULT_CONFIG = Path("feeds.yaml")
DEFAULT_DB = Path("db/coverage.db")
DISPLAY_ZONE = ZoneInfo("Pacific/Auckland")
GC_THRESHOLD = 100_000
"""Allocations between passes of Python's cyclic garbage collector over young objects (its
default is 700). A collection pass makes and drops many small objects per item (parsed entries,
unpickled items, rows), none in cycles (tests/test_faults.py checks a poll's): at 700 a pass
of 50,000 items ran ~1,800 collections, 1.2-1.4 s of the collector's CPU; at 20,000, 30 young
ones, 0.3 s (the count crossed it as each batch of ~2,000 items arrived); at 100,000, one,
0.04 s."""

P = ParamSpec("P")
R = TypeVar("R")

config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=DEFAULT_CONFIG,
    show_default=True,
    help="The sources and topics to watch.",
)
db_option = click.option(
    "--db",
    "db_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=DEFAULT_DB,
    show_default=True,
    help="The SQLite database (created if missing).",
)
host_option = click.option("--host", default="127.0.0.1", show_default=True)
port_option = click.option("--port", default=8001, show_default=True, type=int)


def user_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Config and database problems: a clear message and exit status 2, no traceback."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except (ConfigError, DatabaseError) as e:
            click.echo(f"Error: {e}", err=True)
            sys.exit(2)

    return wrapper


@click.group()
@click.version_option(package_name="coverage-monitor")
@click.option("-v", "--verbose", count=True, help="More logging (-vv for debug).")
def main(verbose: int) -> None:
    """Media monitoring for campaign teams: feeds -> SQLite -> Datasette."""
    setup_logging(verbose)
    tune_gc()


def tune_gc() -> None:
    """The garbage collector as every command runs it (call it once the imports are done)."""
    gc.set_threshold(GC_THRESHOLD)
    # What is loaded by now (~40,000 objects: modules, classes, functions) lives as long as the
    # process: out of the collector's passes over old objects, and its passes at exit.
    gc.freeze()


def setup_logging(verbose: int = 0) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The monitor's own progress is worth seeing by default; libraries only when asked.
    logging.getLogger("monitor").setLevel(logging.DEBUG if verbose > 1 else logging.INFO)
    for chatty in ("httpx", "aiohttp", "apscheduler", "uvicorn.access"):
        logging.getLogger(chatty).setLevel(logging.WARNING)


@main.command("collect")
@config_option
@db_option
@click.option("--source", "sources", multiple=True, help="Poll only this source (repeatable).")
@user_errors
def collect_command(config_path: Path, db_path: Path, sources: tuple[str, ...]) -> None:
    """Poll every source once now and print a line per source."""
    config = load_config(config_path)
    unknown = [name for name in sources if name not in {s.name for s in config.sources}]
    if unknown:
        names = ", ".join(map(repr, unknown))
        raise click.BadParameter(f"no source named {names} in {config_path}")
    with store.opened(db_path) as db:
        reports = asyncio.run(collect(config, db, only=sources or None))
    for report in reports:
        click.echo(report.line())
    failed = sum(r.failed for r in reports)
    new = sum(r.counts.new for r in reports)
    click.echo(f"{len(reports)} sources polled, {new} new articles, {failed} failed")


@main.command("serve")
@db_option
@host_option
@port_option
@user_errors
def serve_command(db_path: Path, host: str, port: int) -> None:
    """Serve the database with Datasette (metadata, public queries, plugins, settings)."""
    from monitor.serve import serve

    serve(db_path, host, port)


@main.command("run")
@config_option
@db_option
@host_option
@port_option
@user_errors
def run_command(config_path: Path, db_path: Path, host: str, port: int) -> None:
    """The collector on its schedule plus Datasette; Ctrl-C stops both."""
    from monitor.schedule import run_scheduler

    load_config(config_path)  # fail fast, before starting Datasette
    store.open_db(db_path).close()
    datasette = subprocess.Popen(
        [sys.executable, "-m", "monitor", "serve", "--db", str(db_path), "--host", host,
         "--port", str(port)]
    )  # fmt: skip
    click.echo(f"Datasette: http://{host}:{port}/  Collector: {config_path}.  Ctrl-C stops both.")

    async def collect_while_serving() -> None:
        # If Datasette stops on its own (the port is taken, it crashed), so does the collector:
        # a monitor nobody can see is worse than one that says why it stopped.
        stop, loop = asyncio.Event(), asyncio.get_running_loop()

        def watch() -> None:
            datasette.wait()
            with contextlib.suppress(RuntimeError):  # the collector has already stopped
                loop.call_soon_threadsafe(stop.set)

        threading.Thread(target=watch, name="watch-datasette", daemon=True).start()
        await run_scheduler(config_path, db_path, stop=stop)

    try:
        asyncio.run(collect_while_serving())
    finally:
        datasette.terminate()
        try:
            datasette.wait(timeout=10)
        except subprocess.TimeoutExpired:
            datasette.kill()
    if datasette.returncode and datasette.returncode > 0:
        raise click.ClickException(
            f"Datasette stopped (exit code {datasette.returncode}; is {host}:{port} already in "
            "use? --port chooses another), so the collector stopped too"
        )


@main.command("discover")
@click.argument("url")
@click.option("--allow-private", is_flag=True, help="Allow a loopback or private address.")
@user_errors
def discover_command(url: str, allow_private: bool) -> None:
    """List the feeds and sitemaps a site offers, as feeds.yaml entries."""
    from monitor.discover import as_yaml, discover
    from monitor.fetch import Fetcher, Limits

    async def run() -> list[Any]:
        async with Fetcher(contact="https://github.com/amnesty-nz/coverage-monitor") as fetcher:
            return await discover(fetcher, url, Limits(total=20, allow_private=allow_private))

    try:
        found = asyncio.run(run())
    except FetchError as e:
        click.echo(f"Error: cannot read {url}: {e}", err=True)
        sys.exit(1)
    if not found:
        click.echo(f"No feeds or sitemaps found at {url}.")
        return
    for item in found:
        click.echo(f"# {item.kind}: {item.url}  (found via {item.how})")
    click.echo(as_yaml(found, url), nl=False)


@main.group("topics")
def topics_group() -> None:
    """Try out and inspect topic queries."""


@topics_group.command("test")
@click.argument("query")
@db_option
@click.option("--limit", default=10, show_default=True, help="How many examples to show.")
@user_errors
def topics_test_command(query: str, db_path: Path, limit: int) -> None:
    """How many stored articles QUERY matches, with the newest examples. Saves nothing."""
    problem = query_problem(query)
    if problem is not None:
        click.echo(f"Error: not a valid search query: {problem}", err=True)
        sys.exit(2)
    with store.opened(db_path) as db:
        total, examples = store.preview_query(db, query, limit)
    click.echo(f"{total} stored article(s) match {query}")
    for published, outlet, title, terms in examples:
        click.echo(f"  {_local(published)}  {outlet}: {title}")
        click.echo(f"      matched: {', '.join(terms)}")


@topics_group.command("list")
@config_option
@db_option
@user_errors
def topics_list_command(config_path: Path, db_path: Path) -> None:
    """Each topic in feeds.yaml, its query, and how many stored articles carry it."""
    config = load_config(config_path)
    with store.opened(db_path) as db:
        counts = store.topic_counts(db)
    for name, query in config.topics.items():
        click.echo(f"{name}: {counts.get(name, 0)} article(s)\n    {query}")


@main.command("retag")
@config_option
@db_option
@user_errors
def retag_command(config_path: Path, db_path: Path) -> None:
    """Re-apply the topics in feeds.yaml to every stored article."""
    config = load_config(config_path)
    with store.opened(db_path) as db:
        result = store.retag(db, config)
    click.echo(f"{result.changed} article(s) changed topics")
    for name, count in result.per_topic.items():
        click.echo(f"  {name}: {count}")


@main.command("prune")
@config_option
@db_option
@user_errors
def prune_command(config_path: Path, db_path: Path) -> None:
    """Delete stored articles that match no topic once older than keep_unmatched."""
    config = load_config(config_path)
    with store.opened(db_path) as db:
        removed = store.prune_unmatched(db, config, datetime.now(UTC))
        polls = store.prune_fetches(db, datetime.now(UTC))
    click.echo(f"removed {sum(removed.values())} article(s) that match no topic")
    for source, count in sorted(removed.items()):
        click.echo(f"  {source}: {count}")
    click.echo(f"removed {polls} poll record(s) older than 90 days")


@main.group("stories")
def stories_group() -> None:
    """Correct the story clustering by hand (the clusterer respects these from then on)."""


def _staff_name() -> str:
    return os.environ.get("MONITOR_STAFF") or getpass.getuser()


@stories_group.command("merge")
@click.argument("into", type=int)
@click.argument("other", type=int)
@db_option
@user_errors
def stories_merge_command(into: int, other: int, db_path: Path) -> None:
    """Move every article of story OTHER into story INTO."""
    with store.opened(db_path) as db, store.transaction(db):
        for story in (into, other):
            if not db.execute("SELECT 1 FROM stories WHERE id = ?", [story]).fetchone():
                raise click.BadParameter(f"there is no story {story}")
        moved = store_stories.merge(db, into, other, _staff_name(), iso(datetime.now(UTC)))
    click.echo(f"moved {moved} article(s) from story {other} into story {into}")


@stories_group.command("split")
@click.argument("article", type=int)
@db_option
@user_errors
def stories_split_command(article: int, db_path: Path) -> None:
    """Take ARTICLE out of its story into a story of its own."""
    with store.opened(db_path) as db, store.transaction(db):
        if not db.execute("SELECT 1 FROM articles WHERE id = ?", [article]).fetchone():
            raise click.BadParameter(f"there is no article {article}")
        old = store_stories.split(db, article, _staff_name(), iso(datetime.now(UTC)))
    click.echo(f"article {article} left story {old}; it is now story {article}")


@main.command("restory")
@db_option
@user_errors
def restory_command(db_path: Path) -> None:
    """Re-cluster every article into stories from scratch (deterministic; keeps staff fixes)."""
    with store.opened(db_path) as db, store.transaction(db):
        count = store_stories.restory(db)
    click.echo(f"{count} stories")


@main.group("user")
def user_group() -> None:
    """Staff accounts for the Datasette pages."""


@user_group.command("add")
@click.argument("name")
@click.password_option(prompt="Password for the new account")
def user_add_command(name: str, password: str) -> None:
    """Print the environment variable that lets NAME log in with PASSWORD.

    Set it where `monitor run` runs (with MONITOR_SECRET) and restart; the hash never goes in
    the repository.
    """
    from datasette_auth_passwords.utils import hash_password

    from monitor.serve import PASSWORD_PREFIX, SECRET_VARIABLE

    name = name.strip().lower()
    if not re.match(r"^[a-z0-9_.-]{1,40}$", name):
        raise click.BadParameter("use 1-40 lower-case letters, digits, '.', '_' or '-'")
    click.echo(f"{PASSWORD_PREFIX}{name.upper()}='{hash_password(password)}'")
    click.echo(f"# and once, for all staff: {SECRET_VARIABLE}='{secrets.token_hex(32)}'", err=True)


@main.command("backup")
@click.argument("target", type=click.Path(path_type=Path, dir_okay=False))
@db_option
@user_errors
def backup_command(target: Path, db_path: Path) -> None:
    """A consistent copy of the live database at TARGET (safe while the collector runs)."""
    with store.opened(db_path) as db:
        try:
            size = store.backup(db, target)
        except (OSError, sqlite3.Error) as e:
            raise DatabaseError(f"cannot write the backup to {target}: {e}") from e
    click.echo(f"backed up {db_path} to {target} ({size:,} bytes)")


@main.command("sources")
@db_option
@user_errors
def sources_command(db_path: Path) -> None:
    """Each source's health: status, failures, last success, next poll, last error."""
    with store.opened(db_path) as db:
        rows = db.execute(
            """SELECT name, active, last_status, consecutive_failures, last_ok, next_poll,
                last_error, flag
            FROM sources ORDER BY active DESC, flag IS NULL, consecutive_failures DESC, name"""
        ).fetchall()
    if not rows:
        click.echo("No sources yet: run `monitor collect` or `monitor run` first.")
        return
    for name, active, status, failures, last_ok, next_poll, error, flag in rows:
        state = status or "never polled"
        if not active:
            state = "inactive (no longer in feeds.yaml)"
        line = (
            f"{name}: {state}; failures {failures}; last ok {_local(last_ok)}; "
            f"next poll {_local(next_poll)}"
        )
        if flag:
            line = f"[!] {line}\n    {flag}"
        if error:
            line += f"\n    last error: {error}"
        click.echo(line)


def _local(stamp: Any) -> str:
    if not stamp:
        return "never"
    value = from_iso(str(stamp)).astimezone(DISPLAY_ZONE)
    return value.strftime("%Y-%m-%d %H:%M %Z")
