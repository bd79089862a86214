"""The public headlines as files: written by the collector, served from memory with ETags."""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET

from monitor import publish, store
from monitor.serve import build_datasette
from tests.test_serve import ENVIRON, HOSTILE, fill


def test_publish_writes_json_and_atom_only_when_changed(db_path):
    fill(db_path)
    directory = publish.public_dir(db_path)
    with store.opened(db_path) as db:
        first = publish.publish(db, directory)
        again = publish.publish(db, directory)
        db.execute("INSERT INTO triage (by, action, story_id) VALUES ('alice', 'pin', 4)")
        pinned = publish.publish(db, directory)
    assert (first, again, pinned) == (True, False, True)
    rows = json.loads((directory / "latest_headlines.json").read_text())
    assert [(r["story_id"], r["pinned"]) for r in rows] == [(4, 1), (1, 0), (3, 0)]
    feed = ET.fromstring((directory / "breaking_news.atom").read_bytes())
    titles = [e.text for e in feed.iter("{http://www.w3.org/2005/Atom}title")][1:]
    assert titles[0] == "Tāmaki Makaurau rally for refugees" and HOSTILE in titles
    assert not list(directory.glob("*.partial"))


def test_datasette_serves_the_files_with_etags_cors_and_caching(db_path):
    fill(db_path)
    with store.opened(db_path) as db:
        publish.publish(db, publish.public_dir(db_path))
    ds = build_datasette(db_path, ENVIRON)
    r = asyncio.run(ds.client.get("/public/latest_headlines.json"))
    assert r.status_code == 200
    assert [row["story_id"] for row in r.json()] == [1, 3, 4]
    assert r.headers["access-control-allow-origin"] == "*"
    assert r.headers["cache-control"] == "public, max-age=60"
    etag = r.headers["etag"]
    again = asyncio.run(
        ds.client.get("/public/latest_headlines.json", headers={"if-none-match": etag})
    )
    assert again.status_code == 304 and again.content == b""
    atom = asyncio.run(ds.client.get("/public/breaking_news.atom"))
    assert atom.status_code == 200 and atom.headers["content-type"].startswith(
        "application/atom+xml"
    )
    assert asyncio.run(ds.client.get("/public/other.json")).status_code == 404


def test_before_the_first_publish_it_says_so(tmp_path):
    ds = build_datasette(tmp_path / "new.db", ENVIRON)
    r = asyncio.run(ds.client.get("/public/latest_headlines.json"))
    assert r.status_code == 503 and r.headers["retry-after"] == "60"
