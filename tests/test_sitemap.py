"""type: sitemap sources over loopback: news sitemaps, an index, gzip, the look-back window."""

from __future__ import annotations

import asyncio
import gzip
from datetime import UTC, datetime, timedelta

from monitor import store
from monitor.collect import collect
from monitor.config import load_config
from tests import server as srv
from tests.conftest import write_config

NOW = datetime.now(UTC)


def stamp(hours_ago: float) -> str:
    return (NOW - timedelta(hours=hours_ago)).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def news_sitemap(items: list[tuple[str, str, float]]) -> bytes:
    urls = "".join(
        f"<url><loc>{loc}</loc><news:news><news:publication><news:name>ODT</news:name>"
        f"<news:language>en</news:language></news:publication>"
        f"<news:publication_date>{stamp(age)}</news:publication_date>"
        f"<news:title>{title}</news:title></news:news></url>"
        for loc, title, age in items
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9" '
        'xmlns:news="http://www.google.com/schemas/sitemap-news/0.9">' + urls + "</urlset>"
    ).encode()


def run(config_path, db_path, sql: str = "SELECT url, title, outlet FROM articles ORDER BY url"):
    """One collect over the config; the reports by source, and the rows `sql` selects after."""
    config = load_config(config_path)
    with store.opened(db_path) as db:
        reports = {r.source: r for r in asyncio.run(collect(config, db))}
        rows = db.execute(sql).fetchall()
    return reports, rows


def test_news_sitemap_recent_entries_become_articles(server, tmp_path, db_path):
    body = news_sitemap([
        ("https://www.odt.co.nz/news/asylum-seekers-in-prison", "Asylum seekers in prison", 2),
        ("https://www.odt.co.nz/news/old-story", "An old story", 24 * 10),
    ])  # fmt: skip
    url = server.route("/sitemap-news.xml", srv.static(body, "application/xml"))
    config = write_config(tmp_path, [{"name": "ODT", "url": url, "type": "sitemap"}])
    reports, rows = run(config, db_path)
    assert reports["ODT"].status == "ok"
    assert rows == [
        ("https://www.odt.co.nz/news/asylum-seekers-in-prison", "Asylum seekers in prison", "ODT")
    ]


def test_sitemap_index_follows_recent_children_and_reads_gzip(server, tmp_path, db_path):
    recent = news_sitemap([("https://www.stuff.co.nz/nz-news/1/refugees", "Refugees detained", 1)])
    stale = news_sitemap([("https://www.stuff.co.nz/nz-news/2/old", "Old news", 1)])
    server.route(
        "/sitemap-recent.xml.gz", srv.static(gzip.compress(recent), "application/octet-stream")
    )
    server.route("/sitemap-2019.xml", srv.static(stale, "application/xml"))
    index = (
        '<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        f"<sitemap><loc>{server.url('/sitemap-recent.xml.gz')}</loc><lastmod>{stamp(1)}</lastmod></sitemap>"
        f"<sitemap><loc>{server.url('/sitemap-2019.xml')}</loc><lastmod>2019-01-01</lastmod></sitemap>"
        "</sitemapindex>"
    ).encode()
    url = server.route("/sitemap.xml", srv.static(index, "application/xml"))
    config = write_config(
        tmp_path, [{"name": "Stuff", "url": url, "type": "sitemap", "outlet": "Stuff"}]
    )
    reports, rows = run(config, db_path)
    assert reports["Stuff"].counts.new == 1
    assert rows == [("https://www.stuff.co.nz/nz-news/1/refugees", "Refugees detained", "Stuff")]
    assert server.requests_to("/sitemap-2019.xml") == []  # an old child is never fetched


def test_not_a_sitemap(server, tmp_path, db_path):
    url = server.route("/oops.xml", srv.static(b"<html><body>no</body></html>", "text/html"))
    reports, _ = run(
        write_config(tmp_path, [{"name": "Oops", "url": url, "type": "sitemap"}]), db_path
    )
    assert reports["Oops"].status == "not_a_feed"
    assert "not a sitemap" in (reports["Oops"].error or "")


ARTICLE = """<html><head><title>{title} | Example News</title>
<meta property="og:site_name" content="Example News">
<meta property="article:published_time" content="{published}">
<meta name="description" content="{title}: the summary."></head><body><p>Body</p></body></html>"""


def test_untitled_entries_are_read_from_their_pages_once_and_politely(server, tmp_path, db_path):
    pages = {
        "a": "Asylum seekers held in prison",
        "b": "Amnesty report released",
        "private": "Staff only",
    }
    for slug, title in pages.items():
        html = ARTICLE.format(title=title, published=stamp(1)).encode()
        server.route(f"/news/{slug}", srv.static(html, "text/html"))
    server.route(
        "/robots.txt", srv.static(b"User-agent: *\nDisallow: /news/private\n", "text/plain")
    )
    body = (
        '<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        + "".join(
            f"<url><loc>{server.url('/news/' + s)}</loc><lastmod>{stamp(1)}</lastmod></url>"
            for s in pages
        )
        + "</urlset>"
    ).encode()
    url = server.route("/plain.xml", srv.static(body, "application/xml"))
    config = write_config(
        tmp_path, [{"name": "Plain", "url": url, "type": "sitemap", "delay": "0s"}]
    )
    reports, rows = run(config, db_path)
    assert [(u.rsplit("/", 1)[1], t) for u, t, _ in rows] == [
        ("a", "Asylum seekers held in prison"), ("b", "Amnesty report released"),
    ]  # fmt: skip
    assert any("robots.txt does not allow" in w for w in reports["Plain"].warnings)
    assert server.requests_to("/news/private") == []
    # Stored articles are never read again; robots.txt is read once per host.
    run(config, db_path)
    assert len(server.requests_to("/news/a")) == 1
    assert len(server.requests_to("/robots.txt")) == 2  # once per run (a new collector each time)


def test_max_articles_per_poll(server, tmp_path, db_path):
    for n in range(5):
        server.route(
            f"/news/{n}",
            srv.static(
                ARTICLE.format(title=f"Story {n}", published=stamp(1)).encode(), "text/html"
            ),
        )
    body = (
        '<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        + "".join(
            f"<url><loc>{server.url(f'/news/{n}')}</loc><lastmod>{stamp(1)}</lastmod></url>"
            for n in range(5)
        )
        + "</urlset>"
    ).encode()
    url = server.route("/plain.xml", srv.static(body, "application/xml"))
    config = write_config(
        tmp_path, [{"name": "P", "url": url, "type": "sitemap", "delay": "0s", "max_articles": 2}]
    )
    reports, rows = run(config, db_path)
    assert len(rows) == 2
    assert "5 new article pages; read 2 this poll (max_articles)" in reports["P"].warnings
