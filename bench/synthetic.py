"""Synthetic news for benchmarks: a Zipf-like vocabulary, headlines, summaries, rewrites."""

from __future__ import annotations

import itertools
import json
import random
from datetime import UTC, datetime, timedelta

from monitor import stories
from monitor.dates import iso


def _word(n: int) -> str:
    letters = "abcdefghijklmnopqrstuvwxyz"
    out = ""
    for _ in range(5):  # five letters: distinct after stems() cuts words to five
        n, digit = divmod(n, 26)
        out += letters[digit]
    return out + "a"


VOCABULARY = [_word(n * 7919) for n in range(10_000)]
# Mildly skewed word use (Zipf exponent 0.5): some words common, most rare, as in headlines.
CUMULATIVE = list(itertools.accumulate(1 / (rank + 1) ** 0.5 for rank in range(len(VOCABULARY))))
START = datetime(2025, 11, 25, tzinfo=UTC)


def text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choices(VOCABULARY, cum_weights=CUMULATIVE, k=words))


def headline(rng: random.Random) -> tuple[str, str]:
    return text(rng, 8), text(rng, 30)


def fill(db, count: int, rng: random.Random, days: int = 365) -> None:
    """`count` stored articles spread over `days`, each its own story, written in bulk, the
    full-text index built once at the end."""
    conn = db.conn
    conn.execute("BEGIN")
    docs: dict[str, int] = {}
    step = timedelta(days=days) / max(count, 1)
    batch_articles, batch_stories = [], []
    for n in range(1, count + 1):
        title, summary = headline(rng)
        seen = iso(START + step * n)
        words = stories.stems(title) + stories.stems(summary)
        for word in set(words):
            docs[word] = docs.get(word, 0) + 1
        batch_articles.append(
            (n, f"https://bench.example/{n}", title, summary, seen, seen, seen, "bench", "Bench",
             n, "[]", " ".join(words), "first report")
        )  # fmt: skip
        batch_stories.append((n, title, f"https://bench.example/{n}", "Bench", seen, seen, seen,
                              1, '["Bench"]', 1, "[]"))  # fmt: skip
        if len(batch_articles) >= 20_000 or n == count:
            conn.executemany(
                """INSERT INTO articles (id, url, title, summary, published, first_seen, updated,
                    source, outlet, story_id, topics, words, match_reason)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                batch_articles,
            )
            conn.executemany(
                "INSERT INTO stories VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", batch_stories
            )
            batch_articles, batch_stories = [], []
    conn.executemany("INSERT INTO story_words VALUES (?, ?)", docs.items())
    conn.execute("INSERT INTO articles_fts (articles_fts) VALUES ('rebuild')")
    conn.execute("COMMIT")


def results(path, section: str, data: object) -> None:
    """Merge one benchmark's figures into bench/results.json."""
    try:
        existing = json.loads(path.read_text())
    except (OSError, ValueError):
        existing = {}
    existing[section] = data
    path.write_text(json.dumps(existing, indent=2) + "\n")
