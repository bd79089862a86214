"""Datasette over a real database file, through Datasette's own test client."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from monitor import store
from monitor.normalise import Item
from monitor.serve import build_datasette
from monitor.store import Poll

NOW = datetime(2026, 11, 25, 1, 0, tzinfo=UTC)


@pytest.fixture
def ds(db_path):
    db = store.open_db(db_path)
    db.execute(
        "INSERT INTO sources (name, url, interval) VALUES ('RNZ', 'https://www.rnz.co.nz/rss', 600)"
    )
    items = [
        Item(
            url=f"https://www.rnz.co.nz/news/{n}",
            link=f"https://www.rnz.co.nz/news/{n}",
            guid=None,
            title=title,
            summary="",
            published=NOW - timedelta(hours=n),
            outlet="RNZ",
            topics=topics,
        )
        for n, title, topics in [
            (1, "Asylum seekers held in prison", ("detention",)),
            (2, "Black Caps win", ()),
            (3, "<img src=x onerror=alert(1)> Amnesty report", ("campaign", "detention")),
        ]
    ]
    store.record_poll(db, Poll("RNZ", NOW, 1, "ok"), 600, items)
    db.close()
    return build_datasette(db_path)


def get(ds, path, **kwargs):
    return asyncio.run(ds.client.get(path, **kwargs))


def test_latest_headlines_is_public_json_with_cors_and_caching(ds):
    r = get(ds, "/coverage/latest_headlines.json?_shape=array")
    assert r.status_code == 200
    assert r.json() == [
        {
            "title": "Asylum seekers held in prison",
            "url": "https://www.rnz.co.nz/news/1",
            "outlet": "RNZ",
            "published": "2026-11-25T00:00:00Z",
            "topics": '["detention"]',
            "story_id": 1,
            "outlets": 1,
        },
        {
            "title": "<img src=x onerror=alert(1)> Amnesty report",
            "url": "https://www.rnz.co.nz/news/3",
            "outlet": "RNZ",
            "published": "2026-11-24T22:00:00Z",
            "topics": '["campaign", "detention"]',
            "story_id": 3,
            "outlets": 1,
        },
    ]
    assert r.headers["access-control-allow-origin"] == "*"
    assert r.headers["cache-control"] == "public, max-age=60"


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/coverage",
        "/coverage/articles",
        "/coverage/articles.json",
        "/coverage/sources.json",
        "/coverage/fetches",
        "/coverage.json?sql=select+1",
        "/coverage?sql=select+*+from+articles",
        "/coverage.db",
        "/-/metadata.json",
    ],
)
def test_everything_else_is_forbidden_to_anonymous_visitors(ds, path):
    r = get(ds, path)
    assert r.status_code == 403, path
    assert "access-control-allow-origin" not in r.headers


def test_staff_actor_can_browse_facets_and_search(ds):
    cookies = {"ds_actor": ds.sign({"a": {"id": "staff"}}, "actor")}
    r = get(ds, "/coverage/articles.json?_search=asylum&_shape=objects", cookies=cookies)
    assert r.status_code == 200
    data = r.json()
    assert [row["title"] for row in data["rows"]] == ["Asylum seekers held in prison"]
    # Default facets from the metadata: outlet, source, and topics as an array.
    facets = get(ds, "/coverage/articles.json", cookies=cookies).json()["facet_results"]
    assert {k: f["type"] for k, f in facets.items()} == {
        "outlet": "column", "source": "column", "topics": "array",
    }  # fmt: skip
    topics = {r["value"]: r["count"] for r in facets["topics"]["results"]}
    assert topics == {"detention": 2, "campaign": 1}


def test_staff_search_uses_boolean_syntax_and_folds_diacritics(ds):
    cookies = {"ds_actor": ds.sign({"a": {"id": "staff"}}, "actor")}
    r = get(ds, "/coverage/articles.json?_search=amnesty+NOT+prison&_shape=array", cookies=cookies)
    assert [row["id"] for row in r.json()] == [3]


def test_hostile_title_is_escaped_in_html(ds):
    r = get(ds, "/coverage/latest_headlines")
    assert r.status_code == 200
    assert "<img src=x onerror" not in r.text
    assert "&lt;img src=x onerror=alert(1)&gt;" in r.text
