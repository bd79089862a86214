"""End to end over real loopback HTTP: feeds.yaml -> collect -> SQLite."""

from __future__ import annotations

import asyncio
import importlib.metadata

import pytest

from monitor import collect as collect_module
from monitor import store
from monitor.collect import collect
from monitor.config import load_config
from tests import server as srv
from tests.conftest import write_config

GOOD = {
    "RNZ": ("/rnz.xml", "rnz_national.xml"),
    "Stuff": ("/stuff.xml", "stuff_atom.xml"),
    "Scoop": ("/scoop.rdf", "scoop_rss1.rdf"),
    "ODT": ("/odt.xml", "odt_cp1252.xml"),
    "Newsroom": ("/newsroom.xml", "illformed.xml"),
}


def run(config_path, db_path, only=None):
    config = load_config(config_path)
    db = store.open_db(db_path)
    try:
        reports = asyncio.run(collect(config, db, only=only))
    finally:
        db.close()
    return {r.source: r for r in reports}


def serve_good(server) -> list[dict]:
    sources = []
    for name, (path, fixture) in GOOD.items():
        content_type = (
            "application/rss+xml; charset=windows-1252" if name == "ODT" else "application/rss+xml"
        )
        url = server.feed(path, fixture, etag=f'"{name}-1"', content_type=content_type)
        sources.append({"name": name, "url": url, "outlet": name})
    return sources


def query(db_path, sql, params=()):
    db = store.open_db(db_path)
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


def test_good_feeds_land_in_full_and_then_answer_304(server, tmp_path, db_path):
    config = write_config(tmp_path, serve_good(server), topics={"detention": "asylum"})
    reports = run(config, db_path)
    assert {n: (r.status, r.counts.new) for n, r in reports.items()} == {
        "RNZ": ("ok", 3), "Stuff": ("ok", 2), "Scoop": ("ok", 1), "ODT": ("ok", 1), "Newsroom": ("ok", 2),
    }  # fmt: skip
    assert "ill-formed feed" in reports["Newsroom"].warnings[0]
    assert query(db_path, "SELECT count(*) FROM articles") == [(9,)]
    assert query(db_path, "SELECT title FROM articles WHERE source = 'ODT'") == [
        ("Mäori Party says asylum seekers “should not be in prisons”",)
    ]
    # Second pass: conditional GET with the stored ETag, answered 304.
    again = run(config, db_path)
    assert {r.status for r in again.values()} == {"not_modified"}
    assert server.requests_to("/rnz.xml")[-1].headers["if-none-match"] == '"RNZ-1"'
    # The same content as last read: what was wrong with it still is.
    (warnings,) = query(db_path, "SELECT last_warnings FROM sources WHERE name = 'Newsroom'")
    assert "ill-formed feed" in warnings[0]
    assert query(db_path, "SELECT count(*) FROM articles") == [(9,)]
    assert query(db_path, "SELECT status, count(*) FROM fetches GROUP BY status ORDER BY status") == [
        ("not_modified", 5), ("ok", 5),
    ]  # fmt: skip


def test_a_feed_that_moved_for_good_is_read_and_its_new_address_given(server, tmp_path, db_path):
    feed = server.feed("/news/rss.xml", "rnz_national.xml")
    server.route("/old.xml", srv.redirect(server.url("/news/rss.xml"), 301))
    server.route("/via-308.xml", srv.redirect(server.url("/old.xml"), 308))
    server.feed("/stuff.xml", "stuff_atom.xml")
    server.route("/for-now.xml", srv.redirect(server.url("/stuff.xml"), 302))
    server.feed("/scoop.rdf", "scoop_rss1.rdf")
    server.route("/signed.rdf", srv.redirect(server.url("/scoop.rdf"), 302))  # a CDN's, today's
    server.route("/https.rdf", srv.redirect(server.url("/signed.rdf"), 301))
    config = write_config(tmp_path, [
        {"name": "Moved", "url": server.url("/via-308.xml")},
        {"name": "Elsewhere for now", "url": server.url("/for-now.xml")},
        {"name": "Moved, then elsewhere", "url": server.url("/https.rdf")},
    ])  # fmt: skip
    reports = run(config, db_path)
    moved, elsewhere = reports["Moved"], reports["Elsewhere for now"]
    assert (moved.status, moved.counts.new) == ("ok", 3)
    assert moved.warnings[0] == f"moved permanently to {feed}: update its url"
    assert (elsewhere.status, elsewhere.counts.new) == ("ok", 2)
    assert not any("moved" in w for w in elsewhere.warnings)  # a 302 is not a move
    both = reports["Moved, then elsewhere"]
    assert (both.status, both.counts.new) == ("ok", 1)
    assert both.warnings[0] == f"moved permanently to {server.url('/signed.rdf')}: update its url"


def test_a_feed_sent_again_byte_for_byte_is_not_read_again(server, tmp_path, db_path):
    # The server sends no ETag or Last-Modified, so every poll gets the whole feed.
    url = server.feed("/rnz.xml", "rnz_national.xml")
    config = write_config(tmp_path, [{"name": "RNZ", "url": url}])
    assert run(config, db_path)["RNZ"].counts.new == 3
    again = run(config, db_path)["RNZ"]
    assert (again.status, again.counts) == ("not_modified", store.Counts())
    assert query(db_path, "SELECT status, http_status, bytes > 0 FROM fetches ORDER BY id") == [
        ("ok", 200, 1),
        ("not_modified", 200, 1),
    ]
    # A new item in the feed: other bytes, read.
    body = (srv.FIXTURES / "feeds" / "rnz_national.xml").read_text()
    item = body.index("<item>")
    extra = "<item><title>Detention review due</title><link>{base}/news/999</link></item>"
    server.route(
        "/rnz.xml",
        srv.static(f"{body[:item]}{extra}{body[item:]}".replace("{base}", server.base).encode()),
    )
    changed = run(config, db_path)["RNZ"]
    assert (changed.status, changed.counts.new, changed.counts.unchanged) == ("ok", 1, 3)


def test_the_same_bytes_are_read_again_when_the_config_reads_them_differently(
    server, tmp_path, db_path
):
    # Items a source drops for matching no topic are not stored: had the unchanged body been
    # skipped after the topics changed, the item that now matches would never be read.
    url = server.feed("/rnz.xml", "rnz_national.xml")
    source = {"name": "RNZ", "url": url, "require_topic": True}
    config = write_config(tmp_path, [source], topics={"detention": "asylum"})
    assert run(config, db_path)["RNZ"].counts.new == 1
    config = write_config(tmp_path, [source], topics={"detention": "asylum", "sport": "series"})
    reread = run(config, db_path)["RNZ"]
    assert (reread.status, reread.counts.new) == ("ok", 1)
    titles = query(db_path, "SELECT title FROM articles WHERE topics LIKE '%sport%'")
    assert titles == [("Black Caps seal series win in Hamilton",)]


def test_the_same_bytes_are_read_again_by_an_upgraded_collector(
    server, tmp_path, db_path, monkeypatch
):
    # A parsing fix must reach a feed that never changes, not wait for its next new item.
    url = server.feed("/rnz.xml", "rnz_national.xml")
    config = write_config(tmp_path, [{"name": "RNZ", "url": url}])
    assert run(config, db_path)["RNZ"].counts.new == 3
    assert run(config, db_path)["RNZ"].status == "not_modified"
    monkeypatch.setattr(collect_module, "_reader", lambda: b"the next release")
    reread = run(config, db_path)["RNZ"]
    assert (reread.status, reread.counts.unchanged) == ("ok", 3)
    assert run(config, db_path)["RNZ"].status == "not_modified"


def test_the_collector_reading_is_its_code_and_its_parsers_versions(tmp_path, monkeypatch):
    reader = collect_module._reader.__wrapped__  # uncached: the same directory is read thrice
    (tmp_path / "parse.py").write_text("# one release")
    identities = [reader(tmp_path)]
    (tmp_path / "parse.py").write_text("# a parsing fix")
    identities.append(reader(tmp_path))
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "99")
    identities.append(reader(tmp_path))
    assert len(set(identities)) == 3


def test_a_body_that_failed_to_read_is_read_again(server, tmp_path, db_path):
    url = server.route("/rnz.xml", srv.static(b"<html><body>Down for maintenance</body></html>"))
    config = write_config(tmp_path, [{"name": "RNZ", "url": url}])
    first, second = run(config, db_path)["RNZ"], run(config, db_path)["RNZ"]
    assert first.failed and second.failed and first.status == second.status


def test_user_agent_is_honest(server, tmp_path, db_path):
    url = server.feed("/rnz.xml", "rnz_national.xml")
    run(write_config(tmp_path, [{"name": "RNZ", "url": url}]), db_path)
    agent = server.requests_to("/rnz.xml")[0].headers["user-agent"]
    assert agent.startswith("coverage-monitor/") and "https://example.org/test" in agent


def test_gzip_body(server, tmp_path, db_path):
    url = server.feed("/rnz.xml", "rnz_national.xml", gzipped=True)
    reports = run(write_config(tmp_path, [{"name": "RNZ", "url": url}]), db_path)
    assert reports["RNZ"].counts.new == 3


def test_only_named_sources_are_polled(server, tmp_path, db_path):
    config = write_config(tmp_path, serve_good(server))
    reports = run(config, db_path, only=["Scoop"])
    assert list(reports) == ["Scoop"]
    assert server.requests_to("/rnz.xml") == []


def test_aggregator_links_resolve_to_the_publisher(server, tmp_path, db_path):
    herald = "https://www.nzherald.co.nz/nz/asylum-seekers-prisons/ABC123/?utm_source=google"
    server.route("/gn/redirect-herald", srv.redirect(herald))
    server.route("/gn/not-a-redirect", srv.status(200, body=b"<html>consent page</html>"))
    url = server.feed("/gn.xml", "google_news.xml")
    config = write_config(
        tmp_path,
        [{"name": "GN", "url": url, "topics": ["detention"], "resolve_links": True}],
        topics={"detention": "asylum"},
    )
    assert run(config, db_path)["GN"].counts.new == 2
    got = query(db_path, "SELECT url, outlet, topics FROM articles ORDER BY id")
    assert got == [
        (
            "https://www.nzherald.co.nz/nz/asylum-seekers-prisons/ABC123",
            "NZ Herald",
            '["detention"]',
        ),
        (server.url("/gn/not-a-redirect"), "1News", '["detention"]'),
    ]
    # Resolved once ever: the next poll finds the alias and does not ask again.
    run(config, db_path)
    assert len(server.requests_to("/gn/redirect-herald")) == 1


def test_aggregator_links_of_items_dropped_for_no_topic_are_not_followed(server, tmp_path, db_path):
    # Tagging comes first (in the feed-reading worker): the item matching no topic is dropped
    # before its link would be resolved, so the aggregator is asked about one link, not two.
    herald = "https://www.nzherald.co.nz/nz/asylum-seekers-prisons/ABC123/"
    server.route("/gn/redirect-herald", srv.redirect(herald))
    server.route("/gn/not-a-redirect", srv.status(200, body=b"<html>consent page</html>"))
    url = server.feed("/gn.xml", "google_news.xml")
    source = {"name": "GN", "url": url, "require_topic": True, "resolve_links": True}
    config = write_config(tmp_path, [source], topics={"detention": "asylum"})
    report = run(config, db_path)["GN"]
    assert (report.counts.new, report.filtered) == (1, 1)
    assert len(server.requests_to("/gn/redirect-herald")) == 1
    assert server.requests_to("/gn/not-a-redirect") == []


def test_one_bad_entry_does_not_sink_the_feed(server, tmp_path, db_path):
    url = server.feed("/teaonews.xml", "duplicate_guids.xml")
    reports = run(write_config(tmp_path, [{"name": "Te Ao", "url": url}]), db_path)
    report = reports["Te Ao"]
    assert report.status == "ok" and report.counts.new == 5
    assert report.warnings == ("entry 6 skipped: it has no link to an article",)
    assert query(db_path, "SELECT count(*) FROM articles WHERE published > '2099'") == [(0,)]


@pytest.mark.parametrize("fixture", ["rnz_national.xml"])
def test_a_changed_feed_updates_titles_and_keeps_history(server, tmp_path, db_path, fixture):
    body = (srv.FIXTURES / "feeds" / fixture).read_bytes()
    server.route("/rnz.xml", srv.static(body))
    config = write_config(tmp_path, [{"name": "RNZ", "url": server.url("/rnz.xml")}])
    run(config, db_path)
    server.route("/rnz.xml", srv.static(body.replace(b"Black Caps seal", b"Black Caps clinch")))
    report = run(config, db_path)["RNZ"]
    assert (report.counts.new, report.counts.updated, report.counts.unchanged) == (0, 1, 2)
    assert query(db_path, "SELECT title FROM article_history") == [
        ("Black Caps seal series win in Hamilton",)
    ]


def test_polls_under_way_are_bounded_so_parsed_items_cannot_pile_up(
    server, tmp_path, db_path, monkeypatch
):
    # 12 feeds, 1 request at a time: at most PIPELINE polls between fetch and write at once.
    from monitor import collect as collecting

    sources = [
        {"name": f"F{n}", "url": server.feed(f"/f{n}.xml", "rnz_national.xml")} for n in range(12)
    ]
    config = write_config(tmp_path, sources, concurrency=1)
    under_way, most = 0, 0
    poll = collecting._poll

    async def counted(*args, **kwargs):
        nonlocal under_way, most
        under_way += 1
        most = max(most, under_way)
        try:
            return await poll(*args, **kwargs)
        finally:
            under_way -= 1

    monkeypatch.setattr(collecting, "_poll", counted)
    reports = run(config, db_path)
    assert all(r.status == "ok" for r in reports.values()) and len(reports) == 12
    assert most == collecting.PIPELINE


def test_a_pass_waits_for_its_polls_under_way_and_writes_them_together(
    server, tmp_path, db_path, monkeypatch
):
    # Each poll tells the writer it is coming (Writer.expect): the first to finish waits for
    # the others under way, so five feeds polled together are one batch (one transaction),
    # however long GATHER_S; and the last is written as soon as it arrives, not GATHER_S later.
    from monitor import writer as writer_module

    monkeypatch.setattr(writer_module, "GATHER_S", 30.0)
    batches: list[int] = []
    write = writer_module._write

    def counted(db, batch):
        batches.append(len(batch))
        return write(db, batch)

    monkeypatch.setattr(writer_module, "_write", counted)
    reports = run(write_config(tmp_path, serve_good(server)), db_path)
    assert {r.status for r in reports.values()} == {"ok"}
    assert batches == [5]
