"""Feed entries -> articles ready to store: plain text, UTC dates, canonical URLs, an outlet.

Pure functions: no I/O. The one thing that needs the network, resolving an aggregator redirect,
is flagged here (`Item.via_aggregator`) and done by the collector.
"""

from __future__ import annotations

import html
import html.entities
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

import lxml.etree
import lxml.html

from monitor import dates, stories, urls
from monitor.config import Source
from monitor.entries import ParsedFeed, RawEntry

MAX_TITLE = 500
MAX_SUMMARY = 4000
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffe\uffff]")
_BLOCKS = frozenset(
    {
        "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "figcaption",
        "figure", "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main",
        "nav", "ol", "p", "pre", "section", "table", "td", "th", "tr", "ul",
    }
)  # fmt: skip
_INVISIBLE = ("script", "style", "noscript", "template", "iframe", "object")


@dataclass(frozen=True)
class Item:
    url: str
    """Canonical URL: the article's identity."""
    link: str
    """The link as the feed gave it (absolute): an aggregator alias may differ from url."""
    guid: str | None
    title: str
    summary: str
    published: datetime | None
    outlet: str
    via_aggregator: bool = False
    """The link is an aggregator redirect we have not resolved to the publisher yet."""
    aggregated: bool = False
    """The item came through an aggregator (Google News): its outlet is the one it names."""
    topics: tuple[str, ...] = ()
    matched: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """topic -> the words that matched its query (source-given topics have none)."""
    _text: stories.Text | None = field(default=None, repr=False, compare=False)
    """Worked out with the item (so in the feed-reading worker, for feeds), and passed on by
    dataclasses.replace() while title and summary stay the same."""

    def __post_init__(self) -> None:
        if self._text is None or not self._text.reads(self.title, self.summary):
            object.__setattr__(self, "_text", stories.text_of(self.title, self.summary))

    @property
    def text(self) -> stories.Text:
        """Its words as the story clusterer reads them."""
        assert self._text is not None  # set by __post_init__
        return self._text


def normalise_feed(
    feed: ParsedFeed, feed_url: str, source: Source, now: datetime
) -> tuple[list[Item], list[str]]:
    """Every usable entry as an Item, plus a warning for each entry that had to be skipped."""
    zone = ZoneInfo(source.timezone)
    items: list[Item] = []
    warnings: list[str] = []
    for index, entry in enumerate(feed.entries):
        item = normalise_entry(entry, feed_url, source, feed.title, zone, now)
        if item is None:
            warnings.append(f"entry {index + 1} skipped: it has no link to an article")
        else:
            items.append(item)
    return items, warnings


def normalise_entry(
    entry: RawEntry,
    feed_url: str,
    source: Source,
    feed_title: str | None,
    zone: ZoneInfo,
    now: datetime,
) -> Item | None:
    link = _link(entry, feed_url)
    if link is None:
        return None
    target = urls.aggregator_target(link)
    aggregated = source.resolve_links or urls.is_aggregator(link)
    via_aggregator = target is None and aggregated
    # An aggregator's <source> names the real publisher; otherwise staff's `outlet:` wins.
    named = entry.outlet if aggregated else None
    outlet = (
        named or source.outlet or entry.outlet or (clean_text(feed_title) if feed_title else None)
    )
    title = to_text(entry.title, entry.title_is_html, MAX_TITLE)
    if entry.outlet:
        title = strip_outlet_suffix(title, entry.outlet)
    summary = to_text(entry.summary, entry.summary_is_html, MAX_SUMMARY)
    published = dates.plausible(dates.to_utc(entry.date_text, entry.date_parsed, zone), now)
    return Item(
        url=urls.canonical_url(target or link),
        link=link,
        guid=entry.guid,
        title=title or _fallback_title(summary, link),
        summary=summary,
        published=published,
        outlet=outlet or urls.host(target or link),
        via_aggregator=via_aggregator,
        aggregated=aggregated,
        topics=source.topics,
    )


def _link(entry: RawEntry, feed_url: str) -> str | None:
    # Not the GUID: feedparser already uses it as the link when the feed says it is a permalink.
    if not entry.link:
        return None
    absolute = urls.absolute(entry.link, feed_url)
    return absolute if absolute.startswith(("http://", "https://")) else None


def to_text(value: str, is_html: bool, limit: int) -> str:
    """Plain text for display and search: entities decoded, tags and scripts gone, one line."""
    if is_html and ("<" in value or "&" in value):
        value = html_to_text(value)
    elif "&" in value:
        # Titles typed text/plain often still carry entities (double-escaped by the CMS).
        value = html.unescape(value)
    value = clean_text(value)
    return value if len(value) <= limit else value[: limit - 1].rstrip() + "…"


def clean_text(value: str) -> str:
    text = " ".join(value.split())
    # Printable text holds no control characters: most titles and summaries skip the regex's
    # scan of every character.
    return text if text.isprintable() else " ".join(_CONTROL.sub(" ", text).split())


def html_to_text(markup: str) -> str:
    """The text of an HTML fragment: scripts and styles dropped, a space after each block."""
    simple = _simple_html_to_text(markup)
    return simple if simple is not None else _parsed_html_to_text(markup)


def _parsed_html_to_text(markup: str) -> str:
    try:
        root = lxml.html.fragment_fromstring(markup, create_parent="div")
    except (lxml.etree.ParserError, ValueError):
        return html.unescape(re.sub(r"<[^>]*>", " ", markup))
    for element in root.iter(*_INVISIBLE):
        element.drop_tree()
    for element in root.iter():
        # Block boundaries become spaces so "<p>a</p><p>b</p>" reads "a b", not "ab".
        if isinstance(element.tag, str) and element.tag in _BLOCKS:
            element.tail = " " + (element.tail or "")
    return str(root.text_content())


_TAG = re.compile(r"""<(/?)([A-Za-z][A-Za-z0-9]*)((?:[^<>"']|"[^"]*"|'[^']*')*)>""")
_ENTITY = re.compile(r"&(?:#(\d{1,7})|#[xX]([0-9a-fA-F]{1,6})|(\w+));")
_STRAY_AMPERSAND = re.compile(r"&(?!#\d{1,7};|#[xX][0-9a-fA-F]{1,6};|\w+;)")
_SIMPLE_BLOCKS = frozenset({"p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote"})
_SIMPLE_INLINE = frozenset(
    {
        "a", "abbr", "b", "bdi", "bdo", "cite", "code", "del", "dfn", "em", "font", "i", "ins",
        "kbd", "mark", "q", "s", "samp", "small", "span", "strong", "sub", "sup", "time", "u",
        "var",
    }
)  # fmt: skip
_SIMPLE_VOID = {"br": " ", "hr": " ", "img": "", "wbr": ""}


def _simple_html_to_text(markup: str) -> str | None:
    """What lxml makes of plainly written markup, without building a tree (a fifth of reading
    a feed went there); None when the markup needs the parser.

    Plain: blocks (p, div, headings, blockquote) side by side, never inside one another or
    inside inline elements (where lxml's HTML parser moves or closes elements), inline
    elements well nested, br/hr/img, HTML 4 entities (lxml knows no others) and no stray "&"
    or "<" (a "<" that opens no tag is left in the text, and sends it to the parser). lxml puts
    a space after each block element; so does this.
    """
    if "&" in markup and (
        _STRAY_AMPERSAND.search(markup) or not all(map(_known_entity, _ENTITY.finditer(markup)))
    ):
        return None
    open_tags: list[str] = []
    pieces: list[str] = []
    at = 0
    for tag in _TAG.finditer(markup):
        closing, name = tag.group(1), tag.group(2).lower()
        pieces.append(markup[at : tag.start()])
        at = tag.end()
        if name in _SIMPLE_VOID and not closing:
            if name == "hr" and open_tags:
                return None  # a block: it closes the paragraph it is in
            pieces.append(_SIMPLE_VOID[name])
        elif closing:
            if not open_tags or open_tags.pop() != name:
                return None
            if name in _SIMPLE_BLOCKS:
                pieces.append(" ")
        elif (name in _SIMPLE_BLOCKS and not open_tags) or name in _SIMPLE_INLINE:
            if tag.group(3).rstrip().endswith("/"):
                return None  # <p/>: lxml reads an open tag
            open_tags.append(name)
        else:
            return None
    pieces.append(markup[at:])
    text = "".join(pieces)
    if open_tags or "<" in text or ">" in text:
        return None
    return html.unescape(text)


def _known_entity(entity: re.Match[str]) -> bool:
    decimal, hexadecimal, name = entity.groups()
    if name is not None:
        return name in html.entities.name2codepoint
    code = int(decimal) if decimal is not None else int(hexadecimal, 16)
    # C1 codes are read as Windows-1252 by html.unescape, as themselves by lxml.
    return 32 <= code < 127 or 160 <= code < 0xD800 or 0xE000 <= code <= 0x10FFFF


def strip_outlet_suffix(title: str, outlet: str) -> str:
    """'Headline - RNZ' -> 'Headline' when the aggregator names RNZ as the outlet."""
    for separator in (" - ", " | ", " – ", " — "):
        suffix = f"{separator}{outlet}"
        if title.endswith(suffix) and len(title) > len(suffix):
            return title[: -len(suffix)].rstrip()
    return title


def _fallback_title(summary: str, link: str) -> str:
    if summary:
        return summary if len(summary) <= 120 else summary[:119].rstrip() + "…"
    return link
