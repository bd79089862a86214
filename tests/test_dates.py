from __future__ import annotations

import ast
import csv
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from zoneinfo import ZoneInfo

import feedparser
import pytest

from monitor.dates import iso, plausible, to_utc
from tests.conftest import shared_fixtures

NZ = ZoneInfo("Pacific/Auckland")
SYDNEY = ZoneInfo("Australia/Melbourne")


def feedparser_reading(text: str) -> datetime | None:
    """What feedparser makes of a date string on its own (the value the collector also gets)."""
    xml = f"<rss version='2.0'><channel><item><pubDate>{text}</pubDate></item></channel></rss>"
    parsed = feedparser.parse(xml.encode()).entries[0].get("published_parsed")
    return datetime(*parsed[:6]).replace(tzinfo=UTC) if parsed else None


def read(text: str, zone: ZoneInfo = NZ) -> str | None:
    value = to_utc(text, feedparser_reading(text), zone)
    return iso(value) if value else None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # NZ zone abbreviations: feedparser alone reads these as UTC, 12-13 hours wrong.
        ("Wed, 25 Nov 2026 09:30:00 NZDT", "2026-11-24T20:30:00Z"),
        ("Mon, 15 Jun 2026 09:30:00 NZST", "2026-06-14T21:30:00Z"),
        ("Wed, 25 Nov 2026 09:30:00 NZT", "2026-11-24T20:30:00Z"),
        ("Mon, 15 Jun 2026 09:30:00 NZT", "2026-06-14T21:30:00Z"),
        ("Wed, 25 Nov 2026 09:30:00 CHADT", "2026-11-24T19:45:00Z"),
        # Numeric offsets and ISO forms.
        ("Wed, 25 Nov 2026 09:30:00 +1300", "2026-11-24T20:30:00Z"),
        ("2026-11-25T09:30:00+13:00", "2026-11-24T20:30:00Z"),
        ("20220803T120005+1200", "2022-08-03T00:00:05Z"),
        ("Tue Apr 19 2022 19:02:19 GMT+1200 (New Zealand Standard Time)", "2022-04-19T07:02:19Z"),
        # No zone written: NZ wall time (daylight saving applied), day before month.
        ("2026-11-25T09:30:00", "2026-11-24T20:30:00Z"),
        ("2026-06-15 09:30:00", "2026-06-14T21:30:00Z"),
        ("05:00 23/03/2021", "2021-03-22T16:00:00Z"),
        ("12:00 03/08/2022", "2022-08-03T00:00:00Z"),
        ("Wed, 25 Nov 2026 09:30:00", "2026-11-24T20:30:00Z"),
        # UTC and GMT stay as written.
        ("Tue, 24 Nov 2026 20:00:00 GMT", "2026-11-24T20:00:00Z"),
        ("2026-11-24T20:00:00Z", "2026-11-24T20:00:00Z"),
    ],
)
def test_nz_date_strings(text, expected):
    assert read(text) == expected


def test_feedparser_alone_gets_nzdt_wrong():
    # Why monitor.dates exists: feedparser's reading of NZDT is 13 hours late.
    reading = feedparser_reading("Wed, 25 Nov 2026 09:30:00 NZDT")
    assert reading is not None and iso(reading) == "2026-11-25T09:30:00Z"


def test_australian_est_is_eastern_australia_on_an_australian_source():
    # Herald Sun metadata: 'EST' there means Melbourne time, which was daylight time (+11).
    assert read("Fri Mar 13 21:30:09 EST 2015", SYDNEY) == "2015-03-13T10:30:09Z"
    # On a New Zealand source, EST keeps its RFC 822 meaning (US Eastern).
    assert read("Fri, 13 Mar 2015 21:30:09 EST") == "2015-03-14T02:30:09Z"


def test_unreadable_and_missing():
    assert to_utc(None, None, NZ) is None
    assert to_utc("", None, NZ) is None
    assert to_utc("not a date at all", None, NZ) is None


def test_plausible_clamps_the_future_and_drops_the_ancient():
    now = datetime(2026, 11, 25, 12, tzinfo=UTC)
    assert plausible(datetime(2100, 1, 1, tzinfo=UTC), now) == now
    assert plausible(datetime(1900, 1, 1, tzinfo=UTC), now) is None
    recent = datetime(2026, 11, 25, 11, tzinfo=UTC)
    assert plausible(recent, now) == recent


def test_shared_nz_au_observed_strings():
    path = shared_fixtures("feeds", "observed_nz_au_date_strings.tsv")
    rows = list(csv.DictReader(path.read_text(encoding="utf-8").splitlines(), delimiter="\t"))
    checked = 0
    for row in rows:
        text, expected = row["raw_date_string"], row["expected_utc_by_research_helper"].split()[0]
        zone = SYDNEY if "Herald Sun" in row["where_seen"] else NZ
        assert read(text, zone) == expected, text
        checked += 1
    assert checked == len(rows) >= 10


def test_shared_feedparser_corpus_is_not_made_worse():
    """Every string feedparser reads correctly, we read the same (we only override NZ cases)."""
    path = shared_fixtures("feeds", "feedparser_date_strings.tsv")
    rows = list(csv.DictReader(path.read_text(encoding="utf-8").splitlines(), delimiter="\t"))
    agree = 0
    for row in rows:
        expected = ast.literal_eval(row["expected_utc_struct_time_tuple"])
        if expected is None or expected[0] < 1995:
            continue
        want = datetime(*expected[:6]).replace(tzinfo=UTC)
        parsed = feedparser.datetimes._parse_date(row["input"])
        base = datetime(*parsed[:6]).replace(tzinfo=UTC) if parsed else None
        if base != want:
            continue  # feedparser's general entry point gets this one wrong itself
        assert to_utc(row["input"], base, ZoneInfo("UTC")) == want, row["input"]
        agree += 1
    assert agree >= 30


def test_iso_format():
    value = parsedate_to_datetime("Wed, 25 Nov 2026 09:30:00 +1300")
    assert iso(value) == "2026-11-24T20:30:00Z"
