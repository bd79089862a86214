from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.server import FeedServer

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"


@pytest.fixture(autouse=True)
def _collectable() -> Iterator[None]:
    """Commands run in-process freeze what is alive (as a real process does once, at start):
    undone after each test, so that no test's leftovers outlive it uncollected."""
    yield
    gc.unfreeze()


@pytest.fixture
def server() -> Iterator[FeedServer]:
    s = FeedServer()
    s.start()
    yield s
    s.stop()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "db" / "coverage.db"


def write_config(
    directory: Path,
    sources: list[dict[str, Any]],
    topics: dict[str, str] | None = None,
    **collector: Any,
) -> Path:
    """A feeds.yaml for tests: short deadlines, and loopback counted as many hosts."""
    path = directory / "feeds.yaml"
    data: dict[str, Any] = {
        # The fixture server is on 127.0.0.1, which the SSRF guard refuses unless allowed.
        "defaults": {"interval": "10m", "timeout": "3s", "allow_private": True},
        "collector": {"per_host": 50, "contact": "https://example.org/test", **collector},
        "sources": sources,
    }
    if topics:
        data["topics"] = topics
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def shared_fixtures(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip("../shared is absent (only in the project's workspace)")
    return path
