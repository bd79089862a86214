"""The fast reader agrees with feedparser wherever it answers, and hands over everything else."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor import xmlfeed
from monitor.normalise import to_text
from monitor.parse import _feedparser, parse_feed
from tests.conftest import SHARED

FEEDS = Path(__file__).parent / "fixtures" / "feeds"
BASE = "https://feeds.example.org/dir/feed.xml"


def corpus() -> list[Path]:
    files = sorted(FEEDS.glob("*.xml")) + sorted(FEEDS.glob("*.rdf"))
    shared = SHARED / "feeds"
    if shared.exists():
        files += sorted(
            p
            for p in shared.iterdir()
            # A text-store copy whose original bytes were lost (its README says: text use only).
            if p.suffix in (".xml", ".rss", ".rdf") and "TEXTSTORE" not in p.name
        )
    return files


def comparable(feed):
    return [
        (
            e.guid,
            e.link,
            to_text(e.title, e.title_is_html, 500),
            to_text(e.summary, e.summary_is_html, 4000),
            e.date_parsed,
            e.outlet,
        )
        for e in feed.entries
    ]


@pytest.mark.parametrize("path", corpus(), ids=lambda p: p.name)
def test_fast_reader_agrees_with_feedparser_or_declines(path):
    body = path.read_bytes()
    fast = xmlfeed.read(body, BASE, "application/xml", 1000)
    if fast is None:
        return  # feedparser's job; parse_feed's tests cover it
    slow = _feedparser(body, BASE, {"content-type": "application/xml"}, 1000)
    assert comparable(fast) == comparable(slow)
    assert fast.title == (slow.title or None)


def test_the_corpus_exercises_both_paths():
    answered = [
        p.name for p in corpus() if xmlfeed.read(p.read_bytes(), BASE, "application/xml", 1000)
    ]
    assert {"rnz_national.xml", "stuff_atom.xml", "scoop_rss1.rdf", "google_news.xml"} <= set(
        answered
    )
    assert "illformed.xml" not in answered


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (
            b'<?xml version="1.0"?><rss version="2.0"><channel><item><title>a & b</title></item></channel></rss>',
            "",
        ),
        (
            b'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY x "y">]><rss version="2.0"><channel/></rss>',
            "",
        ),
        (
            b'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel/></rss>',
            "text/xml; charset=iso-8859-1",
        ),
        (b'<feed xmlns="http://purl.org/atom/ns#"><title>Atom 0.3</title></feed>', ""),
        (b"<html><body>not a feed</body></html>", "text/html"),
        (
            b'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>caf\xe9</title></channel></rss>',
            "",
        ),
    ],
    ids=["unescaped-ampersand", "doctype", "charset-disagrees", "atom-0.3", "html", "bad-utf8"],
)
def test_declines_what_needs_repair(body, content_type):
    assert xmlfeed.read(body, BASE, content_type, 1000) is None


def big_feed(n: int) -> bytes:
    items = "".join(
        f"<item><title>Item {i}</title><link>https://example.org/{i}</link><guid>g{i}</guid></item>"
        for i in range(n)
    )
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>Big</title>{items}</channel></rss>'.encode()


def test_max_items_with_a_warning():
    feed = parse_feed(big_feed(100_000), BASE, {}, max_items=50)
    assert [e.guid for e in feed.entries] == [
        f"https://feeds.example.org/dir/g{i}" for i in range(50)
    ]
    assert feed.warnings == (
        "the feed has 100,000 entries; only the first 50 were read (max_items)",
    )


def test_broken_and_huge_is_refused_rather_than_repaired_for_a_minute():
    body = big_feed(40_000).replace(b"Item 7<", b"Item & 7<")  # one unescaped & breaks the XML
    assert len(body) > 2 * 1024 * 1024
    with pytest.raises(Exception, match="too large to repair"):
        parse_feed(body, BASE, {})


def test_xml_base_and_relative_links():
    body = b"""<feed xmlns="http://www.w3.org/2005/Atom" xml:base="https://www.rnz.co.nz/news/">
      <title>t</title><entry><id>1</id><title>A</title><link href="national/1"/></entry></feed>"""
    feed = xmlfeed.read(body, BASE, "", 10)
    assert feed is not None
    [entry] = feed.entries
    assert entry.link == "https://www.rnz.co.nz/news/national/1"
