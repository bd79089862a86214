"""The monitor's one exception tree. Every message is meant to be read by the person who can fix it.

MonitorError
 ├── ConfigError           feeds.yaml is invalid; lists every problem with file, line and key
 ├── DatabaseError         the database path cannot be opened or is not a monitor database
 ├── FetchError            a source could not be fetched          (recorded on that source only)
 │    ├── Unreachable        DNS failure, connection refused or reset
 │    ├── BlockedAddress     the address is private/loopback and the source does not allow it
 │    ├── FetchTimeout       connect, read or total deadline exceeded
 │    ├── HTTPStatusError    the server answered 4xx/5xx
 │    │    ├── RetryLater      429/503 with Retry-After: not polled again before `until`
 │    │    └── BotChallenge    an anti-bot challenge page instead of the feed
 │    ├── RedirectError      loop, too many hops, or a non-HTTP target
 │    └── TooLarge           the body is over the configured size cap
 └── ParseError            the body is not a usable feed           (recorded on that source only)
      └── NoArticles         a section page shows no article links (layout change, login wall)

Each FetchError and ParseError has a short `code` stored in `sources.last_status` and
`fetches.status`, so staff can facet on the kind of failure, and `str(error)` is the full sentence.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path


class MonitorError(Exception):
    """Root of every error the monitor raises on purpose."""


@dataclass(frozen=True)
class ConfigProblem:
    path: Path
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else str(self.path)
        return f"{where}: {self.key}: {self.message}"


class ConfigError(MonitorError):
    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"invalid configuration ({len(problems)} problem(s)):\n{lines}")


class DatabaseError(MonitorError):
    pass


class FetchError(MonitorError):
    code = "fetch_error"

    def __init__(self, url: str, message: str) -> None:
        self.url = url
        super().__init__(message)


class Unreachable(FetchError):
    code = "unreachable"


class BlockedAddress(FetchError):
    code = "blocked_address"


class FetchTimeout(FetchError):
    code = "timeout"


class HTTPStatusError(FetchError):
    code = "http_error"

    def __init__(self, url: str, status: int, message: str) -> None:
        self.status = status
        super().__init__(url, message)


class RetryLater(HTTPStatusError):
    code = "retry_later"

    def __init__(self, url: str, status: int, until: datetime) -> None:
        self.until = until
        super().__init__(
            url,
            status,
            f"HTTP {status}: the server asked us to wait until {until:%Y-%m-%d %H:%M:%S} UTC",
        )


class BotChallenge(HTTPStatusError):
    code = "bot_challenge"


class RedirectError(FetchError):
    code = "redirect_error"


class TooLarge(FetchError):
    code = "too_large"


class ParseError(MonitorError):
    code = "not_a_feed"


class NoArticles(ParseError):
    code = "no_articles"
