"""Datasette plugin: what the coverage instance adds to Datasette 0.65.

- SQL functions the canned queries use: fts_query() (topic syntax, e.g. hyphenated words),
  nz_time(), nz_date(), nz_midnight_utc() (New Zealand time for people, UTC in the data).
- Timestamps shown in New Zealand time on every HTML page (the JSON stays UTC).
- Headers for the public endpoints: CORS for any origin and about a minute of shared caching on
  those only (Datasette's --cors would open every path); robots.txt blocking crawlers.
- /-/chart: coverage over time by topic and outlet share, drawn as SVG on the server (no
  JavaScript, nothing fetched from elsewhere), for logged-in staff only.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape as xml_escape
from zoneinfo import ZoneInfo

from datasette import Forbidden, hookimpl
from datasette.utils.asgi import Response
from markupsafe import Markup

from monitor.charts import bar_chart, daily_chart
from monitor.dates import from_iso
from monitor.publish import public_dir
from monitor.topics import fts_query

NZ = ZoneInfo("Pacific/Auckland")
PUBLIC_PREFIXES = ("/coverage/latest_headlines", "/coverage/breaking_news", "/public/")
PUBLIC_MAX_AGE = 60
_STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def is_public(path: str) -> bool:
    return path.startswith(PUBLIC_PREFIXES)


def _parse(stamp: str | None) -> datetime | None:
    if not stamp or not _STAMP.match(stamp):
        return None
    return from_iso(stamp)


def nz_time(stamp: str | None) -> str | None:
    value = _parse(stamp)
    return value.astimezone(NZ).strftime("%Y-%m-%d %H:%M %Z") if value else stamp


def nz_date(stamp: str | None) -> str | None:
    value = _parse(stamp)
    return value.astimezone(NZ).strftime("%Y-%m-%d") if value else stamp


def nz_midnight_utc(days_back: int | str | None = 0) -> str:
    """Midnight in New Zealand `days_back` days ago, as a UTC timestamp like the data's."""
    try:
        days = max(0, min(int(days_back or 0), 36_500))
    except ValueError:
        days = 0
    today = datetime.now(NZ).date() - timedelta(days=days)
    midnight = datetime.combine(today, time(0, 0), tzinfo=NZ)
    return midnight.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@hookimpl
def prepare_connection(conn: sqlite3.Connection) -> None:
    # An empty search is the empty phrase (no rows), not an FTS5 syntax error.
    conn.create_function(
        "fts_query", 1, lambda q: fts_query(q) if (q or "").strip() else '""', deterministic=True
    )
    conn.create_function("nz_time", 1, nz_time, deterministic=True)
    conn.create_function("nz_date", 1, nz_date, deterministic=True)
    conn.create_function("nz_midnight_utc", 1, nz_midnight_utc)


@hookimpl
def render_cell(value: object) -> Markup | None:
    if isinstance(value, str) and _STAMP.match(value):
        return Markup('<time datetime="{0}" title="{0} UTC">{1}</time>').format(
            value, nz_time(value)
        )
    return None


@hookimpl
def register_routes() -> list[tuple[str, Callable[..., Awaitable[Response]]]]:
    return [
        (r"^/robots\.txt$", robots),
        (r"^/-/chart$", chart),
        (r"^/public/(?P<name>latest_headlines\.json|breaking_news\.atom)$", public_file),
    ]


_FILES: dict[str, tuple[float, bytes, str]] = {}
"""name -> (mtime, body, etag): the public files, re-read only when the collector rewrites them."""


async def public_file(datasette: Any, request: Any) -> Response:
    """The collector's published headlines, from memory, with an ETag (publish.py)."""
    name = request.url_vars["name"]
    path = public_dir(Path(datasette.get_database("coverage").path)) / name
    try:
        mtime = path.stat().st_mtime
    except OSError:
        return Response.text("not published yet", status=503, headers={"Retry-After": "60"})
    cached = _FILES.get(name)
    if cached is None or cached[0] != mtime:
        body = path.read_bytes()
        cached = _FILES[name] = (mtime, body, '"' + hashlib.sha256(body).hexdigest()[:20] + '"')
    _, body, etag = cached
    if request.headers.get("if-none-match") == etag:
        return Response("", status=304, headers={"ETag": etag})
    kind = "application/json" if name.endswith(".json") else "application/atom+xml"
    return Response(body, content_type=f"{kind}; charset=utf-8", headers={"ETag": etag})


async def robots() -> Response:
    return Response.text("User-agent: *\nDisallow: /\n")


async def chart(datasette: Any, request: Any) -> Response:
    if not await datasette.permission_allowed(request.actor, "view-instance", default=True):
        raise Forbidden("view-instance")
    try:
        days = max(1, min(int(request.args.get("days") or 30), 365))
    except ValueError:
        days = 30
    db = datasette.get_database("coverage")
    since = nz_midnight_utc(days)
    daily = await db.execute(
        """SELECT nz_date(a.first_seen) AS day, j.value AS topic, count(*) AS articles,
            count(DISTINCT a.story_id) AS stories
        FROM articles a, json_each(a.topics) j
        WHERE a.topics != '[]' AND a.first_seen >= ?
        GROUP BY day, topic ORDER BY day, topic""",
        [since],
    )
    outlets = await db.execute(
        """SELECT outlet, count(*) AS articles FROM articles
        WHERE topics != '[]' AND first_seen >= ? GROUP BY outlet ORDER BY articles DESC LIMIT 15""",
        [since],
    )
    rows = [dict(r) for r in daily.rows]
    return Response.html(
        await datasette.render_template(
            "coverage_chart.html",
            {
                "days": days,
                # charts.py escapes every label it draws, so its SVG is safe markup.
                "daily_svg": Markup(daily_chart(rows)),  # noqa: S704
                "outlet_svg": Markup(  # noqa: S704
                    bar_chart([(r["outlet"], r["articles"]) for r in outlets])
                ),
                "rows": rows,
            },
            request=request,
        )
    )


ATOM_COLUMNS = {"atom_id", "atom_title", "atom_updated"}


def atom_time(value: object) -> str:
    """An RFC 3339 UTC time; a time written without a zone is taken as UTC."""
    text = str(value or "").strip()
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        parsed = datetime.now(UTC)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def render_atom(
    datasette: Any, request: Any, rows: list[Any], columns: list[str], query_name: str | None
) -> Response:
    """Atom for queries returning atom_id, atom_title, atom_updated (+ atom_link, atom_content).

    Our own renderer rather than datasette-atom 0.9, which fails with a 500 on an empty result
    (it takes max() of no rows) and on times without a zone.
    """
    if not ATOM_COLUMNS.issubset(columns):
        return Response.text(
            f"Atom needs the columns {', '.join(sorted(ATOM_COLUMNS))}", status=400
        )
    title = "Coverage"
    if query_name:
        queries = (datasette.metadata(database="coverage") or {}).get("queries") or {}
        title = (queries.get(query_name) or {}).get("title") or query_name
    entries = [dict(zip(columns, row, strict=False)) for row in rows]
    updated = max((atom_time(e["atom_updated"]) for e in entries), default=atom_time(None))
    parts = [
        '<?xml version="1.0" encoding="utf-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom">',
        f"<id>{xml_escape(str(request.url))}</id><title>{xml_escape(title)}</title>",
        f"<updated>{updated}</updated>",
        f'<link href="{xml_escape(str(request.url), {chr(34): "&quot;"})}" rel="self"/>',
    ]
    for e in entries:
        parts.append(
            f"<entry><id>{xml_escape(str(e['atom_id']))}</id>"
            f"<title>{xml_escape(str(e['atom_title']))}</title>"
            f"<updated>{atom_time(e['atom_updated'])}</updated>"
        )
        if e.get("atom_link"):
            href = xml_escape(str(e["atom_link"]), {'"': "&quot;"})
            parts.append(f'<link href="{href}" rel="alternate"/>')
        if e.get("atom_content"):
            parts.append(f'<content type="text">{xml_escape(str(e["atom_content"]))}</content>')
        parts.append("</entry>")
    parts.append("</feed>")
    return Response("".join(parts), content_type="application/atom+xml; charset=utf-8")


@hookimpl
def register_output_renderer() -> dict[str, Any]:
    return {
        "extension": "atom",
        "render": render_atom,
        "can_render": lambda columns: ATOM_COLUMNS.issubset(columns),
    }


@hookimpl
def asgi_wrapper(datasette: Any) -> Callable[[ASGIApp], ASGIApp]:
    def wrap(app: ASGIApp) -> ASGIApp:
        async def public_headers(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http" or not is_public(scope["path"]):
                await app(scope, receive, send)
                return

            async def send_with_headers(message: Message) -> None:
                if message["type"] == "http.response.start":
                    headers = [
                        (k, v)
                        for k, v in message.get("headers", [])
                        if k.lower() not in (b"cache-control", b"access-control-allow-origin")
                    ]
                    headers += [
                        (b"access-control-allow-origin", b"*"),
                        (b"cache-control", f"public, max-age={PUBLIC_MAX_AGE}".encode()),
                        (b"vary", b"Accept-Encoding"),
                    ]
                    message = {**message, "headers": headers}
                await send(message)

            await app(scope, receive, send_with_headers)

        return public_headers

    return wrap
