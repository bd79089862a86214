from __future__ import annotations

import pytest

from monitor.urls import aggregator_target, canonical_url, host, is_aggregator


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://www.rnz.co.nz/news/national/1/a?utm_source=rss&utm_medium=feed",
            "https://www.rnz.co.nz/news/national/1/a",
        ),
        ("https://www.stuff.co.nz/x/350?fbclid=abc&gclid=d", "https://www.stuff.co.nz/x/350"),
        ("https://www.stuff.co.nz/x/350?cid=app-iPhone", "https://www.stuff.co.nz/x/350"),
        ("https://www.stuff.co.nz/x/350?_ga=1.2&ito=rss", "https://www.stuff.co.nz/x/350"),
        ("https://www.rnz.co.nz/news/a#comments", "https://www.rnz.co.nz/news/a"),
        ("HTTPS://WWW.RNZ.CO.NZ/news/a", "https://www.rnz.co.nz/news/a"),
        ("https://www.rnz.co.nz:443/news/a", "https://www.rnz.co.nz/news/a"),
        ("http://example.org:80/a", "http://example.org/a"),
        ("https://www.rnz.co.nz/news/a/", "https://www.rnz.co.nz/news/a"),
        ("https://www.rnz.co.nz", "https://www.rnz.co.nz/"),
        # Real parameters are kept (sorted): some sites identify the article by them.
        ("https://example.org/story?id=5&b=2", "https://example.org/story?b=2&id=5"),
    ],
)
def test_canonical_url(url, expected):
    assert canonical_url(url) == expected


def test_variants_fold_to_one():
    variants = [
        "https://www.rnz.co.nz/news/national/1/a",
        "https://www.rnz.co.nz/news/national/1/a/",
        "https://WWW.rnz.co.nz:443/news/national/1/a?utm_campaign=x#top",
    ]
    assert len({canonical_url(v) for v in variants}) == 1


def test_relative_link_resolved_against_base():
    assert canonical_url("/news/a/", base="https://www.rnz.co.nz/rss/national.xml") == (
        "https://www.rnz.co.nz/news/a"
    )


def test_google_news_url_parameter():
    link = (
        "http://news.google.com/news/url?sa=t&fd=R&usg=AFQjCNE&url="
        "http://www.reuters.com/article/2012/02/10/us-mortgage-idUSTRE81600F20120210"
    )
    assert is_aggregator(link)
    assert aggregator_target(link) == (
        "http://www.reuters.com/article/2012/02/10/us-mortgage-idUSTRE81600F20120210"
    )
    assert aggregator_target("https://www.rnz.co.nz/?url=http://x.org/") is None
    # Host names are matched whatever their case, and only as the host.
    assert is_aggregator("https://News.Google.COM/rss/articles/CBMi")
    assert (
        aggregator_target("HTTP://NEWS.GOOGLE.COM/news/url?url=http://x.org/a") == "http://x.org/a"
    )
    assert not is_aggregator("https://www.rnz.co.nz/news.google.com/story")


def test_host():
    assert host("https://www.rnz.co.nz/news") == "rnz.co.nz"


def test_absolute_is_urljoin():
    # The fast path (a link already absolute is returned as it is) must give what urljoin gives.
    import itertools
    from urllib.parse import urljoin

    from monitor.urls import absolute

    hosts = ["www.rnz.co.nz", "rnz.co.nz:443", "user@x.org", "[::1]:80", "EXAMPLE.org", "x\t.org"]
    paths = ["", "/", "/a", "/a/../b", "/a;p=1", "//double", "/a b", "/ā", "/a\n", "/a ", "/a\x7f"]
    queries = ["", "?", "?a=1", "??", "?a=?"]
    fragments = ["", "#", "#x", "#x?y", "# "]
    links = [
        f"{scheme}://{h}{p}{q}{f}"
        for scheme, h, p, q, f in itertools.product(
            ("http", "https"), hosts, paths, queries, fragments
        )
    ] + ["/relative", "relative?x=1", "//other.example/a", "HTTPS://X.ORG/a", "mailto:a@b.c", ""]
    for base in ("https://feed.example/rss/", "http://feed.example/rss"):
        for link in links:
            assert absolute(link, base) == urljoin(base, link), (base, link)
    assert (
        absolute("https://www.rnz.co.nz/news/a", "https://f.example/")
        == "https://www.rnz.co.nz/news/a"
    )


def test_links_taken_as_canonical_are_what_courlan_makes_of_them():
    # The fast path (a link already in canonical form is returned as it is) must give what the
    # full rules give, on every link it takes; and it must take the common ones.
    import itertools

    from monitor import urls

    hosts = ["www.rnz.co.nz", "WWW.rnz.co.nz", "rnz.co.nz:443", "x.org:80", "u@x.org",
             "xn--mori-qsa.nz", "a-b.example", "a..b", "[::1]"]  # fmt: skip
    paths = ["", "/", "/a", "/a/", "//a", "/a//b", "/./a", "/../a", "/a/..", "/.a", "/a.b",
             "/a%20b", "/a%2fb", "/a b", "/ā", "/a:b", "/a;b", "/a,b=c!", "/a~_-", "/a@b",
             "/a'b", "/a(b)", "/a*b", "/a+b", "/a$b", "/a&b", "/xn--a"]  # fmt: skip
    tails = ["", "?", "?b=2&a=1", "?utm_source=rss", "#", "#top", "?#"]
    taken = 0
    for scheme, h, p, t in itertools.product(("http", "https", "HTTPS"), hosts, paths, tails):
        link = f"{scheme}://{h}{p}{t}"
        taken += bool(urls._CANONICAL.fullmatch(link))
        assert urls.canonical_url(link) == urls._canonical(link), link
    assert taken > 40
    for link in ("https://www.rnz.co.nz/news/national/512345/asylum-seekers-in-prisons",
                 "https://www.stuff.co.nz/nz-news/350123456/detention-report",
                 "http://outlet1.example/news/0/1/2/Word"):  # fmt: skip
        assert urls._CANONICAL.fullmatch(link), link
