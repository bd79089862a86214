"""type: page sources over loopback: section pages we write, links by selector or by their look."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from monitor import store
from monitor.config import load_config
from monitor.errors import ConfigError
from monitor.pages import article_links
from tests import server as srv
from tests.conftest import write_config
from tests.test_sitemap import ARTICLE
from tests.test_sitemap import run as run_collect

NOW = datetime.now(UTC)
SECTION = """<html><body>
<header><nav><a href="/news/politics">Politics</a><a href="/about">About us</a>
  <a href="/news/2026/11/25/nav-link-that-looks-like-an-article">Trending</a></nav></header>
<main>
  <h3><a href="/news/2026/11/25/asylum-seekers-held-in-prison">Asylum seekers held in prison</a></h3>
  <h3><a href="/news/350123456">Amnesty report released</a></h3>
  <a href="/tag/immigration">immigration</a>
  <a href="/author/jane-smith-reporter">Jane Smith</a>
  <a href="https://elsewhere.example/some-long-article-slug">Elsewhere</a>
</main>
<footer><a href="/privacy-policy-and-terms-of-use">Privacy</a></footer>
</body></html>"""


def test_article_links_by_their_look_and_by_selector():
    base = "https://www.example.co.nz/news/national"
    assert article_links(SECTION.encode(), base) == [
        "https://www.example.co.nz/news/2026/11/25/asylum-seekers-held-in-prison",
        "https://www.example.co.nz/news/350123456",
    ]
    assert article_links(SECTION.encode(), base, "h3 a") == [
        "https://www.example.co.nz/news/2026/11/25/asylum-seekers-held-in-prison",
        "https://www.example.co.nz/news/350123456",
    ]
    assert (
        article_links(SECTION.encode(), base, "nav a")[0]
        == "https://www.example.co.nz/news/politics"
    )


def run(config_path, db_path):
    return run_collect(config_path, db_path, "SELECT title FROM articles ORDER BY title")


def test_section_page_source_end_to_end(server, tmp_path, db_path):
    published = (NOW - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    for path, title in [("/news/2026/11/25/asylum-seekers-held-in-prison", "Asylum seekers held in prison"),
                        ("/news/350123456", "Amnesty report released")]:  # fmt: skip
        server.route(
            path, srv.static(ARTICLE.format(title=title, published=published).encode(), "text/html")
        )
    url = server.route("/news/national", srv.static(SECTION.encode(), "text/html"))
    config = write_config(
        tmp_path, [{"name": "Example", "url": url, "type": "page", "delay": "0s"}]
    )
    reports, rows = run(config, db_path)
    assert reports["Example"].status == "ok", reports["Example"].line()
    assert rows == [("Amnesty report released",), ("Asylum seekers held in prison",)]
    # The layout changes and the selector finds nothing: a clear error, not a silent zero.
    server.route(
        "/news/national",
        srv.static(b"<html><body><div class=new>...</div></body></html>", "text/html"),
    )
    config = write_config(
        tmp_path, [{"name": "Example", "url": url, "type": "page", "links": "h3 a"}]
    )
    reports, _ = run(config, db_path)
    assert reports["Example"].status == "no_articles"
    assert "no article links the selector 'h3 a' matches" in (reports["Example"].error or "")
    # It brought articles last week and now shows none: flagged at once, not after 3 failures.
    with store.opened(db_path) as db:
        assert db.execute("SELECT flag FROM sources WHERE name = 'Example'").fetchone() == (
            "empty: the page shows no article links, but brought 2 last week",
        )


def test_bad_selector_is_a_config_error(tmp_path):
    config = write_config(
        tmp_path, [{"name": "X", "url": "http://x.example/", "type": "page", "links": "h3 >> a["}]
    )
    with pytest.raises(ConfigError, match="is not a CSS selector"):
        load_config(config)


def test_one_article_page_at_a_time_per_host_across_sources(server, tmp_path, db_path):
    import threading
    import time

    state = {"now": 0, "most": 0}
    lock = threading.Lock()
    published = (NOW - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")

    def slow_article(title: str):
        body = ARTICLE.format(title=title, published=published).encode()

        def handler(h) -> None:
            with lock:
                state["now"] += 1
                state["most"] = max(state["most"], state["now"])
            time.sleep(0.1)  # long enough that two fetches would overlap without the host lock
            with lock:
                state["now"] -= 1
            srv.send(h, 200, body, "text/html")

        return handler

    sources = []
    for section in ("a", "b"):
        links = "".join(
            f'<h3><a href="/{section}/{n}/story-number-{n}">x</a></h3>' for n in range(3)
        )
        for n in range(3):
            server.route(f"/{section}/{n}/story-number-{n}", slow_article(f"Story {section}{n}"))
        url = server.route(
            f"/{section}", srv.static(f"<html><body>{links}</body></html>".encode(), "text/html")
        )
        sources.append({"name": section, "url": url, "type": "page", "delay": "0s"})
    reports, rows = run(write_config(tmp_path, sources), db_path)
    assert len(rows) == 6, [r.line() for r in reports.values()]
    assert state["most"] == 1


def test_a_login_wall_is_named(server, tmp_path, db_path):
    wall = b"""<html><body><form action="/login"><input name="user">
    <input type="password" name="pass"><button>Sign in</button></form></body></html>"""
    url = server.route("/premium", srv.static(wall, "text/html"))
    reports, _ = run(
        write_config(tmp_path, [{"name": "Premium", "url": url, "type": "page"}]), db_path
    )
    assert reports["Premium"].status == "no_articles"
    assert "asks for a login (a login wall)" in (reports["Premium"].error or "")
