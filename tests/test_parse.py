from __future__ import annotations

from pathlib import Path

import pytest

from monitor.errors import ParseError
from monitor.parse import parse_feed
from tests.conftest import shared_fixtures

FEEDS = Path(__file__).parent / "fixtures" / "feeds"
BASE = "https://feeds.example.org/feed.xml"


def parse(name: str, content_type: str = "application/rss+xml"):
    return parse_feed((FEEDS / name).read_bytes(), BASE, {"Content-Type": content_type})


def test_rss2():
    feed = parse("rnz_national.xml")
    assert feed.title == "RNZ - National"
    assert len(feed.entries) == 3 and not feed.warnings
    first = feed.entries[0]
    assert first.guid == "rnz-465531"
    assert first.title.startswith("Allegations of rape")
    assert first.date_text == "Wed, 25 Nov 2026 09:30:00 NZDT"
    # HTML stays until normalise turns it into text (and drops the script: test_normalise).
    assert "<strong>Amnesty International</strong>" in first.summary


def test_relative_link_resolved_against_feed_url():
    second = parse("rnz_national.xml").entries[1]
    assert (
        second.link
        == "https://feeds.example.org/news/sport/465532/black-caps-seal-series-win-in-hamilton/"
    )


def test_atom_summary_and_content():
    entries = parse("stuff_atom.xml", "application/atom+xml").entries
    assert entries[0].title_is_html and entries[0].title.startswith("'Immediate")
    assert "Immigration Act 2009" in entries[0].summary
    assert "work visa" in entries[1].summary  # from <content>, no <summary>


def test_rss1_rdf():
    [entry] = parse("scoop_rss1.rdf").entries
    assert entry.title == "Amnesty International wants change to asylum seeker detainment"
    assert entry.date_text == "2026-11-24T15:20:00+13:00"


def test_windows_1252():
    [entry] = parse("odt_cp1252.xml", "application/rss+xml").entries
    assert entry.title == "Mäori Party says asylum seekers “should not be in prisons”"
    assert "Café owner’s story" in entry.summary


def test_ill_formed_feed_keeps_entries_with_a_warning():
    feed = parse("illformed.xml")
    assert [e.title for e in feed.entries] == [
        "Refugees & asylum seekers held in Mt Eden Corrections Facility",
        "Second item survives",
    ]
    assert feed.warnings and "ill-formed feed" in feed.warnings[0]


def test_aggregator_source_element():
    entries = parse_feed((FEEDS / "google_news.xml").read_bytes(), BASE, {}).entries
    assert entries[0].outlet == "NZ Herald"


def test_html_page_is_a_clear_error():
    with pytest.raises(ParseError, match="HTML page, not a feed"):
        parse("not_a_feed.html", "text/html")


@pytest.mark.parametrize("body", [b"", b"   \n"])
def test_empty_body(body):
    with pytest.raises(ParseError, match="empty"):
        parse_feed(body, BASE, {})


def test_garbage_bytes():
    with pytest.raises(ParseError, match="not a"):
        parse("garbage.bin", "application/octet-stream")


def test_truncated_xml_without_entries():
    with pytest.raises(ParseError, match="not a usable feed"):
        parse_feed(b'<?xml version="1.0"?><rss version="2.0"><chan', BASE, {})


# Real-world awkward feeds from public parser test suites (../shared).
@pytest.mark.parametrize(
    ("name", "check"),
    [
        ("feedparser_illformed_rss_item_link_corrupted_ampersands.xml",
         lambda f: f.entries[0].link == "http://link/get?a=1&b=2"),
        ("feedparser_atom03_atom_namespace_1.xml", lambda f: f.title == "Example Atom"),
        ("feedparser_rss090_item_title.xml", lambda f: f.entries[0].title == "Item title"),
        ("feedparser_rss10_rdf_item_rdf_about.xml", lambda f: f.entries[0].guid == "http://example.org/1"),
        ("feedparser_encoding_demoronize-1.RECONSTRUCTED.xml",
         lambda f: f.entries[0].summary == "don\u2019t"),
        ("feedparser_rss20_item_dc_date.xml",
         lambda f: f.entries[0].date_text == "2003-12-31T10:14:55Z"),
        ("lemon24_reader_full.rss", lambda f: len(f.entries) == 5),
        ("lemon24_reader_relative.rss",
         lambda f: f.entries[0].link == "https://feeds.example.org/blog/post/1"),
        ("googlenews_topstories_2012-02-10_from_test.xml",
         lambda f: f.entries[0].title.endswith(" - Reuters")),
        ("slashdot_rss10_2012-02-10_from_test.rdf",
         lambda f: f.entries[0].title == "Intel Settles NY Antitrust Case"),
    ],
)  # fmt: skip
def test_shared_real_world_feeds(name, check):
    path = shared_fixtures("feeds", name)
    feed = parse_feed(path.read_bytes(), BASE, {})
    assert check(feed)
