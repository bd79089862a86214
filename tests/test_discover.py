from __future__ import annotations

import yaml
from click.testing import CliRunner

from monitor.cli import main
from tests import server as srv

HOME = b"""<!DOCTYPE html><html><head><title>Te Ao News</title>
<link rel="alternate" type="application/rss+xml" title="Te Ao News - Latest" href="/rss/latest.xml">
<link rel="alternate" type="text/html" href="/other">
<link rel="stylesheet" href="/style.css"></head><body>News</body></html>"""


def test_discover_finds_alternate_links_common_paths_and_sitemaps(server):
    home = server.route("/", srv.static(HOME, "text/html"))
    server.feed("/rss/latest.xml", "rnz_national.xml")
    server.feed("/feed/", "stuff_atom.xml")
    server.route("/rss", srv.static(b"<html>not a feed</html>", "text/html"))
    server.route(
        "/robots.txt", srv.static(b"User-agent: *\nSitemap: /sitemap-news.xml\n", "text/plain")
    )
    result = CliRunner().invoke(main, ["discover", home, "--allow-private"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[:3] == [
        f'# feed: {server.url("/rss/latest.xml")}  (found via <link rel="alternate">)',
        f"# feed: {server.url('/feed/')}  (found via common path (2 entries))",
        f"# sitemap: {server.url('/sitemap-news.xml')}  (found via robots.txt)",
    ]
    pasted = yaml.safe_load("\n".join(lines[3:]))
    assert pasted["sources"] == [
        {"name": "Te Ao News - Latest", "url": server.url("/rss/latest.xml")},
        {"name": "Stuff - National", "url": server.url("/feed/")},
    ]


def test_discover_refuses_private_addresses_unless_allowed(server):
    home = server.route("/", srv.static(HOME, "text/html"))
    result = CliRunner().invoke(main, ["discover", home])
    assert result.exit_code == 1
    assert "refused to connect" in result.output
