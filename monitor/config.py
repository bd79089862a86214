"""feeds.yaml -> validated, frozen configuration. Every problem names the file, line and key.

The YAML is read as a node tree (not plain dicts) so that each value keeps its line number;
validation collects every problem it finds before raising, so staff fix a file in one go.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from monitor.errors import ConfigError, ConfigProblem
from monitor.topics import query_problem
from monitor.urls import is_aggregator

DEFAULT_INTERVAL = 15 * 60
MIN_INTERVAL = 30
DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_SIZE = 10 * 1024 * 1024
DEFAULT_TIMEZONE = "Pacific/Auckland"
DEFAULT_KEEP_UNMATCHED = 30 * 24 * 3600
DEFAULT_MAX_ITEMS = 1000
DEFAULT_LOOKBACK = 3 * 24 * 3600
SOURCE_TYPES = ("feed", "sitemap", "page")

_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_SIZE = re.compile(r"^(\d+)\s*(B|KB|MB|GB)?$", re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3}


@dataclass(frozen=True)
class Source:
    name: str
    url: str
    interval: int = DEFAULT_INTERVAL
    """Seconds between polls."""
    topics: tuple[str, ...] = ()
    """Topics every item from this source is tagged with, whatever it says."""
    outlet: str | None = None
    """The publisher's name; when unset, an item's own <source> or the feed title is used."""
    timezone: str = DEFAULT_TIMEZONE
    """Zone for dates the feed writes without one."""
    timeout: float = DEFAULT_TIMEOUT
    """Total deadline for one fetch, connection to last byte."""
    max_size: int = DEFAULT_MAX_SIZE
    type: str = "feed"
    resolve_links: bool = False
    """Item links are aggregator redirects to follow once (default: on for aggregator hosts)."""
    require_topic: bool = False
    """Store only items that match some topic (for noisy general feeds)."""
    allow_private: bool = False
    """Let this source (and its redirects) reach loopback and private addresses."""
    lookback: int = DEFAULT_LOOKBACK
    """Seconds back a sitemap entry may be and still become an article (type: sitemap)."""
    max_articles: int = 30
    """Article pages read per poll at most (sitemap entries without a title)."""
    delay: float = 2.0
    """Seconds between two article pages from the same source: one request at a time, politely."""
    links: str | None = None
    """CSS selector for article links on a `type: page` source; found automatically if unset."""
    fetch_text: bool = False
    """Store the article's main text (read from its page) so topics and search can use it."""
    max_items: int = DEFAULT_MAX_ITEMS
    """Entries read from one poll of the feed; real feeds carry tens, a hostile one 100,000."""
    keep_unmatched: int = DEFAULT_KEEP_UNMATCHED
    """Seconds to keep stored items that match no topic before `monitor prune` removes them."""


@dataclass(frozen=True)
class Collector:
    concurrency: int = 16
    per_host: int = 2
    contact: str = "https://github.com/amnesty-nz/coverage-monitor"
    """Shown in the User-Agent so a site operator can reach whoever runs this."""


@dataclass(frozen=True)
class Config:
    path: Path
    sources: tuple[Source, ...]
    topics: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    collector: Collector = Collector()

    def source(self, name: str) -> Source:
        for source in self.sources:
            if source.name == name:
                return source
        raise KeyError(name)


def parse_duration(text: str) -> int:
    """'90s', '10m', '1h30m', '1d' -> seconds. Raises ValueError with a readable message."""
    match = _DURATION.match(text.strip().lower().replace(" ", ""))
    if not text.strip() or match is None or not any(match.groups()):
        raise ValueError(f"{text!r} is not a duration; write e.g. 30s, 10m, 1h or 1h30m")
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def parse_size(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    else:
        match = _SIZE.match(str(value).strip())
        if match is None:
            raise ValueError(f"{value!r} is not a size; write e.g. 10MB, 512KB or a byte count")
        size = int(match.group(1)) * _SIZE_UNITS[(match.group(2) or "b").lower()]
    if size <= 0:
        raise ValueError("must be more than zero")
    return size


def load_config(path: Path | str) -> Config:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([ConfigProblem(path, None, "(file)", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError([ConfigProblem(path, None, "(file)", f"cannot read: {e}")]) from e
    return parse_config(text, path)


# libyaml when PyYAML was built with it: the pure-Python parser took 6 % of a pass where 1,000
# feeds answered 304, reading a 1,000-source feeds.yaml.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_config(text: str, path: Path) -> Config:
    try:
        root = yaml.compose(text, Loader=_LOADER)
    except yaml.MarkedYAMLError as e:
        line = e.problem_mark.line + 1 if e.problem_mark else None
        raise ConfigError(
            [ConfigProblem(path, line, "(syntax)", f"not valid YAML: {e.problem}")]
        ) from e
    return _Validator(path).config(root)


class _Validator:
    """Walks the YAML node tree, building config objects and collecting problems."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.problems: list[ConfigProblem] = []
        self._constructor = yaml.SafeLoader("")

    def problem(self, node: yaml.Node | None, key: str, message: str) -> None:
        line = node.start_mark.line + 1 if node is not None else None
        self.problems.append(ConfigProblem(self.path, line, key, message))

    def mapping(self, node: yaml.Node, where: str) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        """A mapping node as {key: (key node, value node)}; flags non-mappings and duplicates."""
        if not isinstance(node, yaml.MappingNode):
            self.problem(node, where, "must be a mapping of key: value")
            return {}
        result: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in result:
                self.problem(key_node, f"{where}.{key}" if where else key, "duplicate key")
            result[key] = (key_node, value_node)
        return result

    def unknown_keys(
        self, items: Mapping[str, tuple[yaml.Node, yaml.Node]], allowed: tuple[str, ...], where: str
    ) -> None:
        for key, (key_node, _) in items.items():
            if key not in allowed:
                self.problem(
                    key_node,
                    f"{where}.{key}" if where else key,
                    f"unknown key; expected one of: {', '.join(allowed)}",
                )

    def scalar(self, node: yaml.Node) -> Any:
        """The Python value of a scalar node, typed by the YAML safe resolver."""
        return self._constructor.construct_object(node, deep=True)

    def typed(
        self,
        node: yaml.Node,
        key: str,
        convert: Callable[[Any], Any],
    ) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            self.problem(node, key, "must be a single value")
            return None
        try:
            return convert(self.scalar(node))
        except (ValueError, TypeError) as e:
            self.problem(node, key, str(e))
            return None

    def config(self, root: yaml.Node | None) -> Config:
        if root is None:
            self.problem(None, "sources", "the file is empty; it needs at least a sources: list")
            raise ConfigError(self.problems)
        top = self.mapping(root, "")
        self.unknown_keys(top, ("defaults", "sources", "topics", "collector"), "")
        topics = self.topics(top["topics"][1]) if "topics" in top else {}
        defaults = self.defaults(top["defaults"][1]) if "defaults" in top else {}
        collector = self.collector(top["collector"][1]) if "collector" in top else Collector()
        if "sources" not in top:
            self.problem(root, "sources", "missing; list the sources to watch")
            sources: list[Source] = []
        else:
            sources = self.sources(top["sources"][1], defaults, topics)
        if self.problems:
            raise ConfigError(self.problems)
        return Config(self.path, tuple(sources), MappingProxyType(topics), collector)

    def topics(self, node: yaml.Node) -> dict[str, str]:
        topics = {}
        for name, (_, value_node) in self.mapping(node, "topics").items():
            query = self.typed(value_node, f"topics.{name}", _non_empty_text)
            if query is None:
                continue
            problem = query_problem(query)
            if problem is not None:
                self.problem(
                    value_node,
                    f"topics.{name}",
                    f"not a valid search query ({problem}); the syntax is SQLite FTS5: "
                    'AND, OR, NOT, "exact phrase", prefix*, NEAR(a b, 5), (parentheses)',
                )
                continue
            topics[name] = query
        return topics

    _SOURCE_SETTINGS: Mapping[str, Callable[[Any], Any]] = MappingProxyType(
        {
            "interval": lambda v: _interval(v),
            "timeout": lambda v: float(parse_duration(str(v))),
            "max_size": parse_size,
            "timezone": lambda v: _timezone(v),
            "require_topic": lambda v: _boolean(v),
            "keep_unmatched": lambda v: parse_duration(str(v)),
            "max_items": lambda v: _positive_int(v),
            "lookback": lambda v: parse_duration(str(v)),
            "max_articles": lambda v: _positive_int(v),
            "delay": lambda v: float(parse_duration(str(v))) if str(v) != "0" else 0.0,
            "fetch_text": lambda v: _boolean(v),
            "allow_private": lambda v: _boolean(v),
        }
    )

    def defaults(self, node: yaml.Node) -> dict[str, Any]:
        items = self.mapping(node, "defaults")
        self.unknown_keys(items, tuple(self._SOURCE_SETTINGS), "defaults")
        values = {}
        for key, (_, value_node) in items.items():
            if key in self._SOURCE_SETTINGS:
                value = self.typed(value_node, f"defaults.{key}", self._SOURCE_SETTINGS[key])
                if value is not None:
                    values[key] = value
        return values

    def collector(self, node: yaml.Node) -> Collector:
        items = self.mapping(node, "collector")
        self.unknown_keys(items, ("concurrency", "per_host", "contact"), "collector")
        values: dict[str, Any] = {}
        for key, (_, value_node) in items.items():
            convert = _non_empty_text if key == "contact" else _positive_int
            value = self.typed(value_node, f"collector.{key}", convert)
            if value is not None:
                values[key] = value
        return Collector(**values)

    def sources(
        self, node: yaml.Node, defaults: Mapping[str, Any], topics: Mapping[str, str]
    ) -> list[Source]:
        if not isinstance(node, yaml.SequenceNode):
            self.problem(node, "sources", "must be a list of sources (each line starting with -)")
            return []
        if not node.value:
            self.problem(node, "sources", "is empty; list at least one source")
        sources: list[Source] = []
        seen: dict[str, int] = {}
        for index, item in enumerate(node.value):
            source = self.source(item, index, defaults, topics)
            if source is None:
                continue
            if source.name in seen:
                self.problem(
                    item,
                    f"sources[{index}].name",
                    f"duplicate name {source.name!r} (first used at line {seen[source.name]})",
                )
                continue
            seen[source.name] = item.start_mark.line + 1
            sources.append(source)
        return sources

    def source(
        self,
        node: yaml.Node,
        index: int,
        defaults: Mapping[str, Any],
        topics: Mapping[str, str],
    ) -> Source | None:
        where = f"sources[{index}]"
        items = self.mapping(node, where)
        if not items:
            return None
        before = len(self.problems)
        values: dict[str, Any] = dict(defaults)
        if "name" in items:
            values["name"] = self.typed(items["name"][1], f"{where}.name", _non_empty_text)
            if values["name"]:
                where = f"sources[{values['name']}]"
        allowed = (
            "name",
            "url",
            "type",
            "links",
            "topics",
            "outlet",
            "resolve_links",
            *self._SOURCE_SETTINGS,
        )
        self.unknown_keys(items, allowed, where)
        for key in ("name", "url"):
            if key not in items:
                self.problem(node, f"{where}.{key}", "missing (required)")
        if "url" in items:
            values["url"] = self.typed(items["url"][1], f"{where}.url", _http_url)
        if "resolve_links" in items:
            values["resolve_links"] = self.typed(
                items["resolve_links"][1], f"{where}.resolve_links", _boolean
            )
        elif values.get("url"):
            values["resolve_links"] = is_aggregator(values["url"])
        if "outlet" in items:
            values["outlet"] = self.typed(items["outlet"][1], f"{where}.outlet", _non_empty_text)
        if "type" in items:
            values["type"] = self.typed(items["type"][1], f"{where}.type", _source_type)
        if "links" in items:
            values["links"] = self.typed(items["links"][1], f"{where}.links", _css_selector)
        for key, convert in self._SOURCE_SETTINGS.items():
            if key in items:
                values[key] = self.typed(items[key][1], f"{where}.{key}", convert)
        if "topics" in items:
            values["topics"] = self.source_topics(items["topics"][1], f"{where}.topics", topics)
        if len(self.problems) > before:
            return None
        return Source(**values)

    def source_topics(
        self, node: yaml.Node, where: str, topics: Mapping[str, str]
    ) -> tuple[str, ...]:
        if not isinstance(node, yaml.SequenceNode):
            self.problem(node, where, "must be a list of topic names, e.g. [detention]")
            return ()
        names = []
        for item in node.value:
            name = str(item.value)
            if name not in topics:
                known = ", ".join(topics) or "none are defined under topics:"
                self.problem(item, where, f"unknown topic {name!r}; known topics: {known}")
            names.append(name)
        return tuple(names)


def _non_empty_text(value: object) -> str:
    if value is None or not str(value).strip():
        raise ValueError("must not be empty")
    return str(value).strip()


def _boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{value!r} must be true or false")
    return value


def _positive_int(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{value!r} must be a whole number above zero")
    return value


def _http_url(value: object) -> str:
    url = _non_empty_text(value)
    if not re.match(r"^https?://[^/\s]+", url, re.IGNORECASE):
        raise ValueError(f"{url!r} is not an http(s) URL")
    return url


def _css_selector(value: object) -> str:
    from cssselect import GenericTranslator, SelectorError

    selector = _non_empty_text(value)
    try:
        GenericTranslator().css_to_xpath(selector)
    except SelectorError as e:
        raise ValueError(f"{selector!r} is not a CSS selector: {e}") from None
    return selector


def _source_type(value: object) -> str:
    if value not in SOURCE_TYPES:
        raise ValueError(f"{value!r} is not a source type; expected one of: {SOURCE_TYPES}")
    return str(value)


def _interval(value: object) -> int:
    seconds = parse_duration(str(value))
    if seconds < MIN_INTERVAL:
        raise ValueError(f"{value!r} is too short; the minimum is {MIN_INTERVAL}s")
    return seconds


def _timezone(value: object) -> str:
    name = _non_empty_text(value)
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not a time zone name such as Pacific/Auckland") from None
    return name
