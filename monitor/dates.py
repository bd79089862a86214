"""Feed date strings -> UTC instants, right for the zones New Zealand and Australian outlets write.

feedparser reads zone abbreviations it does not know (NZST, NZDT, AEDT...) as UTC, 12-13 hours
wrong, and reads a date with no zone at all as UTC too. So the raw string is read here first:
  1. ISO 8601 (extended or basic) through datetime.fromisoformat;
  2. a regional abbreviation: a fixed one (NZDT = +13:00) as its offset, an ambiguous one (NZT, or
     EST/EDT on an Australian outlet) as wall time in the outlet's zone;
  3. no zone written at all: wall time in the outlet's zone (day before month, as NZ writes it);
  4. anything else: feedparser's own reading, which knows RFC 822 and many odd formats.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from dateutil import parser as dateutil_parser

FIXED_ZONES = {
    "NZST": timedelta(hours=12),
    "NZDT": timedelta(hours=13),
    "CHAST": timedelta(hours=12, minutes=45),
    "CHADT": timedelta(hours=13, minutes=45),
    "AEST": timedelta(hours=10),
    "AEDT": timedelta(hours=11),
    "ACST": timedelta(hours=9, minutes=30),
    "ACDT": timedelta(hours=10, minutes=30),
    "AWST": timedelta(hours=8),
}
_LOCAL_ZONES = {"NZT"}
"""Abbreviations that only say 'local time' in the outlet's zone."""
_AUSTRALIAN_LOCAL = {"EST", "EDT"}
"""Australian outlets write EST/EDT for their eastern time (seen in the Herald Sun's metadata)."""

_ABBREVIATION = re.compile(r"(?<![A-Za-z])([A-Z]{3,5})(?![A-Za-z])")
_ISO_START = re.compile(r"^\d{4}-\d{2}-\d{2}(?:[T ]|$)|^\d{8}T\d")
_SLASH_DATE = re.compile(r"\d{1,2}/\d{1,2}/\d{2,4}")
_OFFSET = re.compile(r"\d[Zz]$|[+-]\d{2}:?\d{2}\b")
_WORD = re.compile(r"[A-Za-z]+")
_DAY_NAMES = {"MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"}
_MONTH_NAMES = {
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "SEPT", "OCT", "NOV", "DEC",
}  # fmt: skip

EARLIEST_PLAUSIBLE = datetime(1995, 1, 1, tzinfo=UTC)
"""Before online news: a date this old is a feed's placeholder, not a publication time."""
FUTURE_TOLERANCE = timedelta(minutes=10)


def to_utc(text: str | None, parsed: datetime | None, zone: ZoneInfo) -> datetime | None:
    """The UTC instant a feed date string means, or None when it cannot be read."""
    if not text or not text.strip():
        return parsed
    text = " ".join(text.split())
    written = _iso(text)
    if written is not None:
        return _in_zone(written, zone)
    abbreviation = _regional_abbreviation(text, zone)
    if abbreviation is not None:
        name, start, end = abbreviation
        wall = _wall_time(text[:start] + text[end:])
        if wall is None:
            return parsed
        if name in FIXED_ZONES:
            return (wall - FIXED_ZONES[name]).replace(tzinfo=UTC)
        return _in_zone(wall, zone)
    if not _has_zone(text):
        local = _zoneless_wall_time(text, parsed)
        return _in_zone(local, zone) if local is not None else None
    return parsed


def plausible(value: datetime | None, now: datetime) -> datetime | None:
    """A publication time we can show, or None: future dates are clamped to now, ancient dropped."""
    if value is None or value < EARLIEST_PLAUSIBLE:
        return None
    return min(value, now) if value > now + FUTURE_TOLERANCE else value


def iso(value: datetime) -> str:
    """The one way times are written to the database: UTC, seconds, 'Z'."""
    # isoformat, not strftime: a third of the time, and a year is always four digits.
    return value.astimezone(UTC).isoformat(timespec="seconds")[:19] + "Z"


def from_iso(stamp: str) -> datetime:
    """A database time back to an aware datetime (the inverse of iso())."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def _iso(text: str) -> datetime | None:
    if not _ISO_START.match(text):
        return None
    try:
        return datetime.fromisoformat(text.replace(" ", "T", 1) if len(text) > 10 else text)
    except ValueError:
        return None


def _regional_abbreviation(text: str, zone: ZoneInfo) -> tuple[str, int, int] | None:
    australian = zone.key.startswith("Australia/")
    for match in _ABBREVIATION.finditer(text):
        name = match.group(1)
        if name in _DAY_NAMES or name in _MONTH_NAMES:
            continue
        local = name in _LOCAL_ZONES or (australian and name in _AUSTRALIAN_LOCAL)
        if name in FIXED_ZONES or local:
            return name, match.start(), match.end()
    return None


def _has_zone(text: str) -> bool:
    if _OFFSET.search(text):
        return True
    words = {w.upper() for w in _WORD.findall(text)} - _DAY_NAMES - _MONTH_NAMES - {"T", "AM", "PM"}
    # Long month and day names ("January", "Tuesday") are words too, not zones.
    return any(len(w) <= 5 and w[:3] not in _DAY_NAMES | _MONTH_NAMES for w in words)


def _zoneless_wall_time(text: str, parsed: datetime | None) -> datetime | None:
    # feedparser knows more formats than dateutil but reads the wall time as UTC, and is wrong
    # (or US-minded) about day/month/year with slashes, which New Zealand writes day first.
    if parsed is not None and not _SLASH_DATE.search(text):
        return parsed.replace(tzinfo=None)
    return _wall_time(text)


def _wall_time(text: str) -> datetime | None:
    """A date and time with no zone, read day-first; None if it is not one."""
    try:
        value = dateutil_parser.parse(text, dayfirst=True, fuzzy=False)
    except (ValueError, OverflowError):
        return None
    return value.replace(tzinfo=None)


def _in_zone(value: datetime, zone: ZoneInfo) -> datetime:
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    return value.astimezone(UTC).replace(microsecond=0)
