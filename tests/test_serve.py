"""Datasette over a real database file, through Datasette's own test client."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta

import datasette
import pytest
from datasette_auth_passwords.utils import hash_password

from monitor import store
from monitor.normalise import Item
from monitor.serve import build_datasette
from monitor.store import Poll

NOW = datetime(2026, 11, 25, 1, 0, tzinfo=UTC)
HOSTILE = "<img src=x onerror=alert(1)> Amnesty report"
ENVIRON = {
    "MONITOR_PASSWORD_HASH_ALICE": hash_password("correct horse"),
    "MONITOR_SECRET": "s3cret",
}


def fill(db_path) -> None:
    db = store.open_db(db_path)
    db.execute(
        "INSERT INTO sources (name, url, interval) VALUES ('RNZ', 'https://www.rnz.co.nz/rss', 600)"
    )
    items = [
        Item(url=f"https://www.rnz.co.nz/news/{n}", link=f"https://www.rnz.co.nz/news/{n}", guid=None,
             title=title, summary=summary, published=NOW - timedelta(hours=n), outlet=outlet, topics=topics)
        for n, title, summary, outlet, topics in [
            (1, "Asylum seekers held in prison", "Mt Eden", "RNZ", ("detention",)),
            (2, "Black Caps win series", "Seddon Park", "RNZ", ()),
            (3, HOSTILE, "Alternatives to detention", "Stuff", ("campaign", "detention")),
            (4, "Tāmaki Makaurau rally for refugees", "Aotea Square", "1News", ("campaign",)),
        ]
    ]  # fmt: skip
    store.record_poll(db, Poll("RNZ", NOW, 1, "ok"), 600, items)
    db.close()


@pytest.fixture
def ds(db_path, monkeypatch):
    for key, value in ENVIRON.items():
        monkeypatch.setenv(key, value)  # the plugin reads hashes through {"$env": ...}
    fill(db_path)
    return build_datasette(db_path)


def get(ds, path, **kwargs):
    return asyncio.run(ds.client.get(path, **kwargs))


def staff(ds) -> dict[str, str]:
    return {"ds_actor": ds.sign({"a": {"id": "alice"}}, "actor")}


def csrf_token(html: str) -> str:
    match = re.search(r'name="csrftoken" value="([^"]+)"', html)
    assert match, "the page has no CSRF token"
    return match.group(1)


def post_form(ds, path: str, data: dict[str, str], cookies: dict[str, str]):
    """Submit a Datasette form the way a browser does: with its CSRF token."""
    page = get(ds, path, cookies=cookies)
    token = csrf_token(page.text)
    cookies = {**cookies, "ds_csrftoken": page.cookies["ds_csrftoken"]}
    return asyncio.run(ds.client.post(path, data={**data, "csrftoken": token}, cookies=cookies))


def headlines(ds, query: str = "") -> list[dict]:
    r = get(ds, f"/coverage/latest_headlines.json?_shape=array{query}")
    assert r.status_code == 200, r.text
    return r.json()


def test_installed_datasette_is_0_65():
    # Plugins that pull in 1.0 alphas silently change the permission model this relies on.
    assert datasette.__version__.startswith("0.65."), datasette.__version__


def test_latest_headlines_is_public_json_with_cors_and_caching(ds):
    r = get(ds, "/coverage/latest_headlines.json?_shape=array")
    assert r.status_code == 200
    assert r.json()[0] == {
        "title": "Asylum seekers held in prison",
        "url": "https://www.rnz.co.nz/news/1",
        "outlet": "RNZ",
        "published": "2026-11-25T00:00:00Z",
        "topics": '["detention"]',
        "story_id": 1,
        "outlets": 1,
        "pinned": 0,
        "note": "",
    }
    assert [row["story_id"] for row in r.json()] == [1, 3, 4]  # newest first; no unmatched story
    assert r.headers["access-control-allow-origin"] == "*"
    assert r.headers["cache-control"] == "public, max-age=60"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("&limit=2", [1, 3]),
        ("&limit=abc", [1, 3, 4]),
        ("&limit=-5", [1]),
        ("&limit=100000", [1, 3, 4]),
        ("&topic=campaign", [3, 4]),
        ("&topic=nonexistent", []),
        ("&topic=%3Cscript%3E&limit=%27%3B+drop+table", []),
    ],
)
def test_limit_and_topic_are_validated_never_500(ds, query, expected):
    assert [row["story_id"] for row in headlines(ds, query)] == expected


def test_atom_feed_is_public(ds):
    r = get(ds, "/coverage/breaking_news.atom")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/atom+xml; charset=utf-8"
    assert r.headers["access-control-allow-origin"] == "*"
    assert "<title>Asylum seekers held in prison</title>" in r.text
    assert "&lt;img src=x onerror=alert(1)&gt;" in r.text and "<img src" not in r.text


def test_atom_feed_on_an_empty_database(tmp_path):
    empty = build_datasette(tmp_path / "empty.db", ENVIRON)
    assert get(empty, "/coverage/breaking_news.atom?topic=x").status_code == 200
    r = get(empty, "/coverage/breaking_news.atom")
    assert r.status_code == 200 and "<feed" in r.text and "<entry>" not in r.text
    assert get(empty, "/coverage/latest_headlines.json?_shape=array").json() == []


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/coverage",
        "/coverage/articles",
        "/coverage/articles.json",
        "/coverage/stories.json",
        "/coverage/sources.json",
        "/coverage/triage.json",
        "/coverage/fetches",
        "/coverage.json?sql=select+1",
        "/coverage?sql=select+*+from+articles",
        "/coverage.db",
        "/-/metadata.json",
        "/-/chart",
        "/coverage/search.json?q=asylum",
        "/coverage/todays_coverage.json",
        "/coverage/pin_story",
    ],
)
def test_everything_else_is_forbidden_to_anonymous_visitors(ds, path):
    r = get(ds, path)
    assert r.status_code == 403, path
    assert "access-control-allow-origin" not in r.headers


def test_robots_are_blocked(ds):
    assert get(ds, "/robots.txt").text == "User-agent: *\nDisallow: /\n"


def test_staff_log_in_with_a_password_hash_from_the_environment(ds):
    page = get(ds, "/-/login")
    token = csrf_token(page.text)
    cookies = {"ds_csrftoken": page.cookies["ds_csrftoken"]}
    bad = asyncio.run(
        ds.client.post(
            "/-/login",
            data={"username": "alice", "password": "wrong", "csrftoken": token},
            cookies=cookies,
        )
    )
    assert "Invalid username or password" in bad.text
    ok = asyncio.run(
        ds.client.post(
            "/-/login",
            data={"username": "alice", "password": "correct horse", "csrftoken": token},
            cookies=cookies,
        )
    )
    assert ok.status_code == 302
    actor = ok.cookies["ds_actor"]
    assert get(ds, "/coverage/articles.json", cookies={"ds_actor": actor}).status_code == 200
    # The same cookie is valid for another instance with the same secret: logins survive restarts.
    again = build_datasette(ds.databases["coverage"].path)
    assert get(again, "/coverage/articles.json", cookies={"ds_actor": actor}).status_code == 200


def test_staff_browse_facets_and_search(ds):
    r = get(ds, "/coverage/articles.json?_search=asylum&_shape=objects", cookies=staff(ds))
    assert [row["title"] for row in r.json()["rows"]] == ["Asylum seekers held in prison"]
    # No default facets (each costs a count of the whole table); staff ask for them.
    assert get(ds, "/coverage/articles.json", cookies=staff(ds)).json()["facet_results"] == {}
    facets = get(
        ds, "/coverage/articles.json?_facet=outlet&_facet_array=topics", cookies=staff(ds)
    ).json()["facet_results"]
    assert {k: f["type"] for k, f in facets.items()} == {"outlet": "column", "topics": "array"}
    topics = {r["value"]: r["count"] for r in facets["topics"]["results"]}
    assert topics == {"detention": 2, "campaign": 2}


@pytest.mark.parametrize(
    ("q", "ids"),
    [
        ("asylum", [1]),
        ("amnesty NOT prison", [3]),
        ("tamaki", [4]),  # diacritics folded
        ('"alternatives to detention" OR asylum-seekers', [3, 1]),  # hyphenated words work too
        ("", []),  # an empty query is an empty result, not an error
    ],
)
def test_ranked_search_takes_the_topic_syntax(ds, q, ids):
    r = get(ds, f"/coverage/search.json?_shape=array&days=3650&q={q}", cookies=staff(ds))
    assert r.status_code == 200, r.text
    assert sorted(row["id"] for row in r.json()) == sorted(ids)


def test_ranked_search_weights_titles_and_snippets(ds):
    rows = get(
        ds, "/coverage/search.json?_shape=array&q=detention+OR+prison", cookies=staff(ds)
    ).json()
    assert rows[0]["id"] == 1  # "prison" in the title outranks "detention" in a summary
    assert any("[detention]" in row["snippet"] for row in rows)


@pytest.mark.parametrize(
    "query",
    ["todays_coverage", "week_by_outlet", "top_stories", "campaign_mentions", "source_problems",
     "coverage_by_day", "outlet_share"],
)  # fmt: skip
def test_staff_pages_answer(ds, query):
    r = get(ds, f"/coverage/{query}.json?_shape=array", cookies=staff(ds))
    assert r.status_code == 200, r.text
    assert isinstance(r.json(), list)


def test_campaign_mentions_and_outlet_share(ds):
    mentions = get(ds, "/coverage/campaign_mentions.json?_shape=array", cookies=staff(ds)).json()
    assert [m["id"] for m in mentions] == [3, 4]
    assert mentions[0]["published"] == "2026-11-25 11:00 NZDT"


def test_chart_page_draws_svg_for_staff(ds, db_path):
    db = store.open_db(db_path)
    db.execute("UPDATE articles SET first_seen = strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '-1 day')")
    db.close()
    r = get(ds, "/-/chart", cookies=staff(ds))
    assert r.status_code == 200
    assert 'aria-label="Relevant articles per day by topic"' in r.text
    assert 'aria-label="Share of relevant articles by outlet"' in r.text
    assert "campaign" in r.text and "Stuff" in r.text


def test_times_are_shown_in_new_zealand_time(ds):
    page = get(ds, "/coverage/articles/1", cookies=staff(ds)).text
    assert (
        '<time datetime="2026-11-25T00:00:00Z" title="2026-11-25T00:00:00Z UTC">2026-11-25 13:00 NZDT</time>'
        in page
    )
    assert (
        get(ds, "/coverage/articles/1.json", cookies=staff(ds)).json()["rows"][0][4]
        == "2026-11-25T00:00:00Z"
    )


def test_triage_pins_hides_and_notes_are_audited(ds, db_path):
    cookies = staff(ds)
    assert (
        post_form(
            ds, "/coverage/pin_story?story_id=4", {"story_id": "4", "hours": "2"}, cookies
        ).status_code
        == 302
    )
    assert (
        post_form(
            ds,
            "/coverage/note_story?story_id=4",
            {"story_id": "4", "note": "Rally at 1pm"},
            cookies,
        ).status_code
        == 302
    )
    assert (
        post_form(ds, "/coverage/hide_story?story_id=1", {"story_id": "1"}, cookies).status_code
        == 302
    )
    rows = headlines(ds)
    assert [(r["story_id"], r["pinned"], r["note"]) for r in rows] == [
        (4, 1, "Rally at 1pm"),
        (3, 0, ""),
    ]
    assert (
        post_form(
            ds, "/coverage/hide_article?article_id=3", {"article_id": "3"}, cookies
        ).status_code
        == 302
    )
    assert [r["story_id"] for r in headlines(ds)] == [4]
    assert (
        post_form(ds, "/coverage/unpin_story?story_id=4", {"story_id": "4"}, cookies).status_code
        == 302
    )
    assert (
        post_form(ds, "/coverage/show_story?story_id=1", {"story_id": "1"}, cookies).status_code
        == 302
    )
    assert [(r["story_id"], r["pinned"]) for r in headlines(ds)] == [(1, 0), (4, 0)]
    db = store.open_db(db_path)
    audit = db.execute("SELECT by, action, story_id, article_id FROM triage ORDER BY id").fetchall()
    db.close()
    assert audit == [
        ("alice", "pin", 4, None), ("alice", "note", 4, None), ("alice", "hide_story", 1, None),
        ("alice", "hide_article", None, 3), ("alice", "unpin", 4, None), ("alice", "show_story", 1, None),
    ]  # fmt: skip


def test_expired_pins_no_longer_pin(ds, db_path):
    db = store.open_db(db_path)
    db.execute(
        "INSERT INTO triage (by, action, story_id, expires) VALUES ('alice', 'pin', 4, '2000-01-01T00:00:00Z')"
    )
    db.close()
    assert headlines(ds)[0]["story_id"] == 1


def test_writes_need_staff_and_a_csrf_token(ds):
    anonymous = asyncio.run(ds.client.post("/coverage/pin_story", data={"story_id": "1"}))
    assert anonymous.status_code == 403
    no_token = asyncio.run(
        ds.client.post("/coverage/pin_story", data={"story_id": "1"}, cookies=staff(ds))
    )
    assert no_token.status_code == 403
    assert headlines(ds)[0]["pinned"] == 0


def test_hostile_title_is_escaped_in_html(ds):
    for path, cookies in [("/coverage/latest_headlines", {}), ("/coverage/articles", staff(ds)),
                          ("/coverage/todays_coverage", staff(ds))]:  # fmt: skip
        r = get(ds, path, cookies=cookies)
        assert r.status_code == 200
        assert "<img src=x onerror" not in r.text, path


def test_atom_times_without_a_zone_are_utc_not_an_error():
    from monitor.datasette_plugin import atom_time

    assert atom_time("2026-11-25T01:02:03Z") == "2026-11-25T01:02:03Z"
    assert atom_time("2026-11-25 01:02:03") == "2026-11-25T01:02:03Z"
    assert atom_time("2026-11-25T14:02:03+13:00") == "2026-11-25T01:02:03Z"
    assert atom_time("not a time").endswith("Z")
