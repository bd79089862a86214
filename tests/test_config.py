from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest

from monitor.config import DEFAULT_INTERVAL, load_config, parse_duration, parse_size
from monitor.errors import ConfigError

GOOD = """\
defaults:
  interval: 15m
sources:
  - name: RNZ National
    url: https://www.rnz.co.nz/rss/national.xml
    interval: 10m
    topics: [detention]
  - name: Stuff
    url: https://www.stuff.co.nz/rss
topics:
  detention: '(asylum* OR refugee*) AND (prison* OR detain* OR detention)'
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "feeds.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def problems(tmp_path: Path, text: str) -> list[tuple[int | None, str, str]]:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    return [(p.line, p.key, p.message) for p in info.value.problems]


def test_the_documented_shape_loads(tmp_path):
    config = load_config(write(tmp_path, GOOD))
    rnz, stuff = config.sources
    assert (rnz.name, rnz.interval, rnz.topics) == ("RNZ National", 600, ("detention",))
    assert stuff.interval == 15 * 60
    assert config.topics["detention"].startswith("(asylum*")


def test_unknown_key_names_line_and_key(tmp_path):
    text = GOOD.replace("    interval: 10m\n", "    intervall: 10m\n")
    [(line, key, message)] = problems(tmp_path, text)
    assert (line, key) == (6, "sources[RNZ National].intervall")
    assert "unknown key" in message


def test_missing_url(tmp_path):
    text = GOOD.replace("    url: https://www.stuff.co.nz/rss\n", "")
    [(line, key, message)] = problems(tmp_path, text)
    assert (line, key, message) == (8, "sources[Stuff].url", "missing (required)")


def test_duplicate_name(tmp_path):
    text = GOOD.replace("name: Stuff", "name: RNZ National")
    [(line, key, message)] = problems(tmp_path, text)
    assert line == 8 and key == "sources[1].name"
    assert "duplicate name 'RNZ National' (first used at line 4)" in message


def test_bad_interval(tmp_path):
    text = GOOD.replace("interval: 10m", "interval: ten minutes")
    [(line, key, message)] = problems(tmp_path, text)
    assert (line, key) == (6, "sources[RNZ National].interval")
    assert "not a duration" in message


def test_unknown_topic_referenced_by_a_source(tmp_path):
    text = GOOD.replace("topics: [detention]", "topics: [detention, campaign]")
    [(line, key, message)] = problems(tmp_path, text)
    assert (line, key) == (7, "sources[RNZ National].topics")
    assert "unknown topic 'campaign'" in message and "detention" in message


def test_every_problem_is_reported_at_once(tmp_path):
    text = GOOD.replace("interval: 10m", "interval: 1s").replace(
        "url: https://www.stuff", "url: ftp://www.stuff"
    )
    found = problems(tmp_path, text)
    assert [key for _, key, _ in found] == ["sources[RNZ National].interval", "sources[Stuff].url"]
    assert "too short" in found[0][2] and "not an http(s) URL" in found[1][2]


def test_message_names_the_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, GOOD.replace("sources:", "source:")))
    assert f"{tmp_path / 'feeds.yaml'}:3: source: unknown key" in str(info.value)


def test_yaml_syntax_error_has_a_line(tmp_path):
    [(line, key, message)] = problems(
        tmp_path, GOOD.replace("topics: [detention]", "topics: [detention")
    )
    assert key == "(syntax)" and line is not None and line >= 7
    assert "not valid YAML" in message


def test_duplicate_yaml_key(tmp_path):
    text = GOOD.replace("    interval: 10m\n", "    interval: 10m\n    interval: 20m\n")
    [(line, key, message)] = problems(tmp_path, text)
    assert (line, key, message) == (7, "sources[0].interval", "duplicate key")


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "missing.yaml")


def test_empty_file(tmp_path):
    [(_, key, message)] = problems(tmp_path, "")
    assert key == "sources" and "empty" in message


def test_defaults_apply_and_can_be_overridden(tmp_path):
    config = load_config(write(tmp_path, "sources:\n  - {name: A, url: 'http://a.example/feed'}\n"))
    assert config.sources[0].interval == DEFAULT_INTERVAL
    assert config.sources[0].timezone == "Pacific/Auckland"


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("10m", 600), ("1h", 3600), ("1h30m", 5400), ("1d", 86400)]
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "10", "ten", "m10", "1y"])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_sizes():
    assert parse_size("10MB") == 10 * 1024 * 1024
    assert parse_size(512) == 512
    with pytest.raises(ValueError):
        parse_size("lots")


def test_shipped_feeds_yaml_is_valid_and_polite():
    config = load_config(Path(__file__).parents[1] / "feeds.yaml")
    assert len(config.sources) >= 10
    assert all(s.url.startswith("https://") for s in config.sources)
    # No host is asked more often than once per 10 minutes, all its feeds together.
    per_host: dict[str, float] = {}
    for s in config.sources:
        host = urlsplit(s.url).hostname or ""
        per_host[host] = per_host.get(host, 0.0) + 600 / s.interval
    assert max(per_host.values()) <= 1.0, per_host
    outlets = {s.outlet for s in config.sources}
    for outlet in (
        "RNZ",
        "NZ Herald",
        "Stuff",
        "1News",
        "Newsroom",
        "The Spinoff",
        "Otago Daily Times",
        "Scoop",
        "Te Ao Māori News",
        "Amnesty International Aotearoa NZ",
    ):
        assert outlet in outlets
    google = [s for s in config.sources if "news.google.com" in s.url]
    assert len(google) >= 2 and all("hl=en-NZ&gl=NZ&ceid=NZ:en" in s.url for s in google)
