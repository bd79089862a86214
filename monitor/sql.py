"""Asking SQLite about many values at once."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import sqlite_utils

CHUNK = 500
"""Values per query: under SQLite's limit on bound parameters (999 in older builds)."""


def select_in(db: sqlite_utils.Database, sql: str, values: Sequence[Any]) -> Iterator[Any]:
    """The rows of `sql` for every value, where `sql` says `IN ({marks})`, CHUNK at a time."""
    for start in range(0, len(values), CHUNK):
        chunk = list(values[start : start + CHUNK])
        yield from db.execute(sql.replace("{marks}", ",".join("?" * len(chunk))), chunk)
