from __future__ import annotations

import dataclasses
import pickle
import random
from datetime import UTC, datetime
from pathlib import Path

from monitor.config import Source
from monitor.normalise import (
    _CONTROL,
    _parsed_html_to_text,
    _simple_html_to_text,
    clean_text,
    html_to_text,
    normalise_feed,
    strip_outlet_suffix,
    to_text,
)
from monitor.parse import parse_feed

FEEDS = Path(__file__).parent / "fixtures" / "feeds"
NOW = datetime(2026, 11, 25, 0, 0, tzinfo=UTC)
SOURCE = Source(name="Test", url="https://www.rnz.co.nz/rss/national.xml", topics=("detention",))


def items(name: str, source: Source = SOURCE, url: str | None = None):
    url = url or source.url
    feed = parse_feed((FEEDS / name).read_bytes(), url, {})
    return normalise_feed(feed, url, source, NOW)


def test_rss_items_are_plain_text_with_canonical_urls_and_utc_dates():
    found, skipped = items("rnz_national.xml")
    assert not skipped
    first = found[0]
    assert first.url == (
        "https://www.rnz.co.nz/news/national/465531/"
        "allegations-of-rape-assault-of-asylum-seekers-in-prison-new-report-reveals"
    )
    assert first.summary == (
        "A report by Amnesty International says people seeking asylum were held in prisons & "
        "police cells. The Government says it is reviewing the findings."
    )
    assert first.published == datetime(2026, 11, 24, 20, 30, tzinfo=UTC)  # 09:30 NZDT
    assert first.topics == ("detention",)
    # Relative link resolved; trailing slash folded.
    assert (
        found[1].url
        == "https://www.rnz.co.nz/news/sport/465532/black-caps-seal-series-win-in-hamilton"
    )
    assert found[2].url.endswith("ombudsman-to-investigate-conditions-in-prisons")  # no #comments


def test_outlet_comes_from_config_then_source_element_then_feed_title():
    assert {i.outlet for i in items("rnz_national.xml")[0]} == {"RNZ - National"}
    configured = Source(name="RNZ", url=SOURCE.url, outlet="RNZ")
    assert {i.outlet for i in items("rnz_national.xml", configured)[0]} == {"RNZ"}
    google = Source(name="GN", url="https://news.google.com/rss/search?q=x")
    herald, onenews = items("google_news.xml", google)[0]
    assert (herald.outlet, onenews.outlet) == ("NZ Herald", "1News")
    # " - NZ Herald" is the aggregator's suffix, not part of the headline.
    assert herald.title == (
        "Asylum seekers thrown in New Zealand prisons suffered so badly they 'wanted to end their lives'"
    )


def test_dates_missing_future_and_ancient():
    found, skipped = items("duplicate_guids.xml")
    by_title = {i.title: i for i in found}
    assert by_title["Third story, no date"].published is None
    assert by_title["From the future"].published == NOW
    assert by_title["From 1900"].published is None
    assert skipped == ["entry 6 skipped: it has no link to an article"]


def test_naive_atom_date_is_nz_time():
    found, _ = items("stuff_atom.xml")
    assert found[1].published == datetime(2026, 11, 24, 18, 0, tzinfo=UTC)  # 07:00 NZDT


def test_html_to_text():
    assert html_to_text("<p>a</p><p>b</p>") == "a b "
    assert (
        to_text("<p>Tom &amp; Jerry</p><script>x()</script><style>p{}</style>", True, 100)
        == "Tom & Jerry"
    )
    assert to_text("Fish &amp;amp; chips", False, 100) == "Fish &amp; chips"
    assert to_text("a\x00b\x07c\n\n  d", False, 100) == "a b c d"
    assert clean_text("Tāmaki\x85news\x9f \ufffeend\u2028x\x7f") == "Tāmaki news end x"
    assert to_text("x" * 50, False, 10) == "xxxxxxxxx…"
    assert to_text("<img src=x onerror=alert(1)>Headline", True, 100) == "Headline"


def test_clean_text_is_the_words_between_whitespace_and_control_characters():
    # Printable text skips the regex: every kind of character, anywhere, must read the same.
    rng = random.Random(7)
    alphabet = "ab Ā\t\n\r\x00\x07\x1f\x7f\x85\x9f\xa0\u2028\u200b\ufffe\uffff“"
    for _ in range(3000):
        value = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        words = _CONTROL.sub(" ", value).split()
        assert clean_text(value) == " ".join(words), repr(value)


def test_strip_outlet_suffix():
    assert strip_outlet_suffix("Story - RNZ", "RNZ") == "Story"
    assert strip_outlet_suffix("Story | Stuff", "Stuff") == "Story"
    assert strip_outlet_suffix("RNZ", "RNZ") == "RNZ"
    assert strip_outlet_suffix("Story about RNZ", "RNZ") == "Story about RNZ"


def test_an_item_carries_the_words_the_clusterer_reads():
    item = items("rnz_national.xml")[0][0]
    assert item.text.key.startswith("allegations of rape assault of asylum seekers")
    assert item.text.distinct_words()[:3].tolist() == ["alleg", "rape", "assau"]
    # Tagging passes the same text on; a new title gets its own (never the old one's words).
    assert dataclasses.replace(item, topics=("x",)).text is item.text
    retitled = dataclasses.replace(item, title="Minister responds")
    assert retitled.text.distinct_words()[:2].tolist() == ["minis", "respo"]
    assert retitled.text.titled == 2
    assert retitled.text.words.split()[:2] == ["minis", "respo"]
    # Across the worker's pipe it arrives as it was worked out.
    assert pickle.loads(pickle.dumps(item)).text == item.text
    # Flat values only: pickle rebuilds these in C (a dict of words cost 10-15 µs an item).
    assert {type(v) for v in vars(item.text).values()} == {str, int, bytes}


def generated_markup(rng: random.Random, depth: int = 0, *, plain: bool) -> str:
    """Fragments as feeds write them (plain=True) or anything tags can make (misnested blocks,
    tables and lists out of place, inline elements around blocks), with entities and quotes."""
    words = ["asylum", "Tāmaki", "“quoted”", "86", "R&amp;D", "&nbsp;", "&#8217;", "&eacute;",
             "&copy;", "&lt;b&gt;", "x"]  # fmt: skip
    tags = ["p", "div", "strong", "em", 'a href="https://x.example/?a=1&amp;b=2"', "span class='k'",
            "b", "img src=x", "br", "br/", "hr", "P", "H2", "blockquote"]  # fmt: skip
    if not plain:
        tags += ["li", "ul", "tr", "td", "table", "figure", "figcaption", "p/", "o:p", "textarea"]
        words += ["&check;", "&#150;", "&", "<"]  # HTML 5 only, read as Windows-1252, stray
    out = []
    for _ in range(rng.randint(1, 5)):
        if rng.random() < 0.5 or depth > 3:
            out.append(" ".join(rng.choice(words) for _ in range(rng.randint(0, 4))))
            continue
        tag = rng.choice(tags)
        name = tag.split()[0].rstrip("/")
        if name.lower() in ("br", "img", "hr") or tag.endswith("/"):
            out.append(f"<{tag}>")
        else:
            inner = generated_markup(rng, depth + 1, plain=plain)
            out.append(f"<{tag}>{inner}</{name}>" if rng.random() < 0.95 else f"<{tag}>{inner}")
    return "".join(out)


def test_the_fast_html_reading_agrees_with_lxml_wherever_it_answers():
    rng = random.Random(20261202)
    samples = [generated_markup(rng, plain=i % 2 == 0) for i in range(4000)]
    samples += ["<p>a<p>b", "a < b", "a &amp b", "<p/>x", "<p>a</P>", "x<div>y</div>z"]
    # A "<" that opens no tag stays in the text, which then goes to lxml; one in a quoted
    # attribute is the attribute's.
    samples += ["a</ b", "<p <b>x</b>", "<>x", "x<"]
    samples += ["<a title='1 < 2'>x</a>", '<b title="</p>">x</b>']
    answered = 0
    for markup in samples:
        fast = _simple_html_to_text(markup)
        if fast is not None:
            answered += 1
            assert clean_text(fast) == clean_text(_parsed_html_to_text(markup)), markup
    # Much of what feeds write takes the fast path (blocks nested in blocks do not).
    assert answered > len(samples) / 4
    assert _simple_html_to_text("<p>One <strong>two</strong></p><p>three<br>four</p>") == (
        "One two three four "
    )
    assert _simple_html_to_text("<p>a<p>b") is None  # lxml closes the first <p>: its job
