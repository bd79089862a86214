"""The public headlines as files, written by the collector, so the website's traffic never queries.

Datasette answers the `latest_headlines` canned query at ~220 requests/s here (8 clients, 2
cores shared with the collector); the website's tab can be asked far more often than that. So
after every scheduler tick the collector renders the default public feed (50 stories, pinned
first) as JSON and Atom next to the database, and the Datasette plugin serves those files from
memory with ETags (/public/latest_headlines.json, /public/breaking_news.atom). A file is
rewritten only when its content changed, atomically.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import sqlite_utils

log = logging.getLogger(__name__)

FILES = ("latest_headlines.json", "breaking_news.atom")
LIMIT = 50
COLUMNS = ("title", "url", "outlet", "published", "topics", "story_id", "outlets", "pinned", "note")


def public_dir(db_path: Path) -> Path:
    """Where the public files of a database live: beside it, in `public/`."""
    return db_path.parent / "public"


_TOPIC = "(:topic = '' OR EXISTS (SELECT 1 FROM json_each(topics) WHERE value = :topic))"
_LIMIT = f"max(1, min(100, coalesce(nullif(CAST(:limit AS integer), 0), {LIMIT})))"
HEADLINES_SQL = f"""SELECT {", ".join(COLUMNS)} FROM (
    SELECT * FROM public_headlines WHERE pinned AND {_TOPIC}
    UNION ALL
    SELECT * FROM (SELECT * FROM public_headlines WHERE NOT pinned AND {_TOPIC}
                   ORDER BY published DESC LIMIT {_LIMIT})
) ORDER BY pinned DESC, published DESC LIMIT {_LIMIT}"""
"""The public headlines: pinned stories first, then the newest relevant ones; parameters
`topic` ('' for all) and `limit` (1-100, default 50). The one definition behind the public files
and the `latest_headlines` and `breaking_news` canned queries (serve.py). The newest N are taken
before the pins are put first so that SQLite reads the index newest first and stops at N."""

ATOM_SQL = f"""SELECT 'tag:coverage-monitor,2026:story-' || story_id AS atom_id,
    title AS atom_title, published AS atom_updated, url AS atom_link,
    outlet || CASE WHEN note != '' THEN ' - ' || note ELSE '' END AS atom_content
FROM ({HEADLINES_SQL})"""


def headlines(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    rows = db.execute(HEADLINES_SQL, {"topic": "", "limit": LIMIT}).fetchall()
    return [dict(zip(COLUMNS, row, strict=True)) for row in rows]


def atom(rows: list[dict[str, Any]], self_url: str = "/public/breaking_news.atom") -> str:
    updated = max((r["published"] for r in rows), default="1970-01-01T00:00:00Z")
    parts = [
        '<?xml version="1.0" encoding="utf-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom">',
        "<id>tag:coverage-monitor,2026:breaking-news</id><title>Breaking news</title>",
        f'<updated>{escape(updated)}</updated><link href="{escape(self_url)}" rel="self"/>',
    ]
    for r in rows:
        content = r["outlet"] + (f" - {r['note']}" if r["note"] else "")
        parts.append(
            f"<entry><id>tag:coverage-monitor,2026:story-{r['story_id']}</id>"
            f"<title>{escape(r['title'])}</title><updated>{escape(r['published'])}</updated>"
            f'<link href="{escape(r["url"], {chr(34): "&quot;"})}" rel="alternate"/>'
            f'<content type="text">{escape(content)}</content></entry>'
        )
    parts.append("</feed>")
    return "".join(parts)


def publish(db: sqlite_utils.Database, directory: Path) -> bool:
    """Write the public files if their content changed; whether it had."""
    rows = headlines(db)
    body = json.dumps(rows, ensure_ascii=False, separators=(",", ":")).encode()
    target = directory / FILES[0]
    if target.exists() and target.read_bytes() == body:
        return False
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in ((FILES[1], atom(rows).encode()), (FILES[0], body)):
        partial = directory / (name + ".partial")
        partial.write_bytes(content)
        partial.replace(directory / name)  # readers see the old file or the new, never half
    log.info("published %d public headlines", len(rows))
    return True
