from __future__ import annotations

import json
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor import health, schema, store, store_stories
from monitor.config import Config, Source
from monitor.dates import iso
from monitor.errors import DatabaseError
from monitor.normalise import Item
from monitor.schema import FTS_AUTOMERGE
from monitor.store import Poll

NOW = datetime(2026, 11, 25, 1, 0, tzinfo=UTC)
# Distinct words, so that test articles are not one story (stories.py would rightly merge them).
TOPIC_WORDS = [
    "weather warnings flooding", "cricket series wickets", "budget deficit borrowing",
    "ferries cancelled strait", "measles outbreak exposure", "election campaign polling",
    "rugby squad selection", "dairy prices forecast",
]  # fmt: skip


def item(n: int, **kw) -> Item:
    values = dict(
        url=f"https://www.rnz.co.nz/news/{n}",
        link=f"https://www.rnz.co.nz/news/{n}",
        guid=f"g{n}",
        title=f"Headline {n} about {TOPIC_WORDS[n % len(TOPIC_WORDS)]}",
        summary=f"Summary {n}: {TOPIC_WORDS[n % len(TOPIC_WORDS)]} again",
        published=NOW - timedelta(hours=n),
        outlet="RNZ",
    )
    values.update(kw)
    return Item(**values)  # type: ignore[arg-type]


def ok(source: str = "RNZ", at: datetime = NOW) -> Poll:
    return Poll(source, at, 10, "ok", http_status=200, etag='"v1"')


@pytest.fixture
def db(tmp_path: Path):
    database = store.open_db(tmp_path / "coverage.db")
    config = Config(
        tmp_path / "feeds.yaml",
        (
            Source("RNZ", "https://www.rnz.co.nz/rss"),
            Source("Stuff", "https://www.stuff.co.nz/rss"),
        ),
    )
    store.sync_sources(database, config)
    yield database
    database.close()


def rows(db, sql: str, params=()):
    return db.execute(sql, params).fetchall()


def test_schema_is_wal_and_migrations_are_idempotent(tmp_path):
    path = tmp_path / "sub" / "coverage.db"
    store.open_db(path).close()
    db = store.open_db(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert rows(db, "SELECT name FROM _migrations") == [
        ("m001_initial",),
        ("m002_topic_terms_and_sightings",),
        ("m003_source_flag",),
        ("m004_stories",),
        ("m005_triage",),
        ("m006_facet_indexes",),
        ("m007_window_in_memory",),
        ("m008_fts_in_bulk",),
        ("m009_public_headlines_in_two_parts",),
        ("m010_fts_fewer_merges",),
        ("m011_body_digest",),
    ]
    # The setting lives in the index itself: every connection (Datasette's too) writes with it.
    config = dict(rows(db, "SELECT k, v FROM articles_fts_config"))
    assert config["automerge"] == FTS_AUTOMERGE != 4
    assert {"articles", "sources", "fetches", "article_history"} <= set(db.table_names())


def test_unusable_path_is_a_clear_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(DatabaseError, match=r"cannot use .* as the coverage database"):
        store.open_db(tmp_path / "file" / "coverage.db")
    (tmp_path / "notadb.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(DatabaseError):
        store.open_db(tmp_path / "notadb.db")


def test_new_items_are_inserted_with_story_ids_and_fts(db):
    counts = store.record_poll(db, ok(), 600, [item(1), item(2, topics=("detention",))])
    assert (counts.new, counts.updated, counts.unchanged) == (2, 0, 0)
    got = rows(db, "SELECT id, story_id, topics, source, first_seen FROM articles ORDER BY id")
    assert got == [
        (1, 1, "[]", "RNZ", "2026-11-25T01:00:00Z"),
        (2, 2, '["detention"]', "RNZ", "2026-11-25T01:00:00Z"),
    ]
    assert rows(
        db, "SELECT rowid FROM articles_fts WHERE articles_fts MATCH 'headline AND budget'"
    ) == [(2,)]


def test_a_story_row_is_its_one_article_then_what_its_articles_share(db):
    first = item(2, topics=("detention",))
    store.record_poll(db, ok(), 600, [first])
    story = "SELECT * FROM stories WHERE id = 1"
    seen, published = iso(NOW), iso(NOW - timedelta(hours=2))  # item(2) was published 2 h ago
    assert rows(db, story) == [
        (1, first.title, first.url, "RNZ", published, seen, seen, 1, '["RNZ"]', 1,
         '["detention"]'),
    ]  # fmt: skip
    later = NOW + timedelta(minutes=30)
    copy = item(2, url="https://www.stuff.co.nz/2", link="https://www.stuff.co.nz/2", guid="s2",
                outlet="Stuff", topics=("campaign",))  # fmt: skip
    store.record_poll(db, ok("Stuff", later), 600, [copy])
    assert rows(db, "SELECT story_id FROM articles ORDER BY id") == [(1,), (1,)]
    assert rows(db, story) == [
        (1, first.title, first.url, "RNZ", published, seen, iso(later), 2,
         '["RNZ", "Stuff"]', 2, '["campaign", "detention"]'),
    ]  # fmt: skip


def test_same_url_from_another_source_is_one_article(db):
    store.record_poll(db, ok("RNZ"), 600, [item(1)])
    counts = store.record_poll(
        db, ok("Stuff"), 600, [item(1, guid="stuff-1", topics=("campaign",))]
    )
    assert counts.new == 0
    assert rows(db, "SELECT count(*), source, topics FROM articles") == [(1, "RNZ", '["campaign"]')]


def test_changed_title_updates_row_keeps_first_seen_and_history(db):
    store.record_poll(db, ok(), 600, [item(1)])
    later = NOW + timedelta(minutes=10)
    changed = item(1, title="Headline 1, updated")
    counts = store.record_poll(db, ok(at=later), 600, [changed], now=later)
    assert (counts.new, counts.updated) == (0, 1)
    assert rows(db, "SELECT title, first_seen, updated FROM articles") == [
        ("Headline 1, updated", "2026-11-25T01:00:00Z", "2026-11-25T01:10:00Z")
    ]
    assert rows(db, "SELECT article_id, title FROM article_history") == [
        (1, "Headline 1 about cricket series wickets")
    ]
    # The FTS index follows the update.
    assert rows(db, "SELECT rowid FROM articles_fts WHERE articles_fts MATCH 'updated'") == [(1,)]


def test_same_guid_with_a_new_url_updates_the_same_article(db):
    store.record_poll(db, ok(), 600, [item(1)])
    moved = item(
        1,
        url="https://www.rnz.co.nz/news/1-renamed",
        link="https://www.rnz.co.nz/news/1-renamed",
        title="New",
    )
    counts = store.record_poll(db, ok(), 600, [moved])
    assert (counts.new, counts.updated) == (0, 1)
    assert rows(db, "SELECT count(*) FROM articles") == [(1,)]


def test_repeated_guids_in_one_feed_do_not_merge_different_links(db):
    counts = store.record_poll(db, ok(), 600, [item(1, guid="same"), item(2, guid="same")])
    assert counts.new == 2
    assert rows(db, "SELECT count(*) FROM articles") == [(2,)]


def test_a_copy_later_in_the_same_poll_edits_the_article_written_just_before(db):
    # New articles are written in one statement per poll; an edited copy later in the same feed
    # must still find the first, update it, and leave the full-text index consistent.
    first, edited = item(1), item(1, guid="g1-again", title="Headline 1 corrected")
    counts = store.record_poll(db, ok(), 600, [first, item(2), edited])
    assert (counts.new, counts.updated, counts.unchanged) == (2, 1, 0)
    assert rows(db, "SELECT id, title FROM articles ORDER BY id") == [
        (1, "Headline 1 corrected"), (2, item(2).title),
    ]  # fmt: skip
    assert rows(db, "SELECT rowid FROM articles_fts WHERE articles_fts MATCH 'corrected'") == [(1,)]
    assert rows(db, "SELECT rowid FROM articles_fts WHERE articles_fts MATCH 'about'") == [(2,)]
    assert rows(db, "SELECT key, article_id FROM article_keys ORDER BY key") == [
        ("guid\x1fRNZ\x1fg1", 1), ("guid\x1fRNZ\x1fg1-again", 1), ("guid\x1fRNZ\x1fg2", 2),
    ]  # fmt: skip
    db.execute("INSERT INTO articles_fts (articles_fts) VALUES ('integrity-check')")


def test_word_counts_are_written_in_batches_and_at_the_end_of_a_pass(db):
    def stored(word: str) -> list[tuple[int]]:
        return rows(db, "SELECT docs FROM story_words WHERE word = ?", [word])

    store.record_poll(db, ok(), 600, [item(1), item(2), item(3)])
    assert stored("crick") == []  # three articles: kept in memory, not one upsert per word each
    store.finish(db)
    assert stored("crick") == [(1,)] and stored("headl") == [(3,)]
    # Counts still in memory survive a re-clustering (which starts the clusterer afresh).
    store.record_poll(db, ok(), 600, [item(9)])
    with store.transaction(db):
        store_stories.restory(db)
    assert stored("crick") == [(2,)]


def test_the_wal_is_checkpointed_by_a_thread_not_by_the_collectors_commits(db, tmp_path):
    def in_database_file() -> int | None:
        # immutable=1 reads the database file alone, ignoring the WAL: only checkpointed rows.
        conn = sqlite3.connect(f"file:{tmp_path / 'coverage.db'}?immutable=1", uri=True)
        try:
            return conn.execute("SELECT count(*) FROM articles").fetchone()[0]
        except sqlite3.DatabaseError:
            return None  # caught mid-checkpoint
        finally:
            conn.close()

    with store.Checkpointer(db, every=0.05):
        assert rows(db, "PRAGMA wal_autocheckpoint") == [(0,)]
        store.record_poll(db, ok(), 600, [item(n) for n in range(30)])
        deadline = time.monotonic() + 10
        while in_database_file() != 30 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert in_database_file() == 30
        store.record_poll(db, ok(), 600, [item(n) for n in range(30, 40)])
    assert in_database_file() == 40  # a last checkpoint when it stops
    assert rows(db, "PRAGMA wal_autocheckpoint") == [(1000,)]


def test_the_log_a_burst_leaves_is_cut_back_once_a_checkpoint_has_caught_up(tmp_path, monkeypatch):
    monkeypatch.setattr(schema, "LOG_KEPT_BYTES", 100_000)  # the real one takes a real burst
    wal = tmp_path / "burst.db-wal"
    with store.opened(tmp_path / "burst.db") as db:
        for n in range(20):  # ~3 MB of log, under the commits' own checkpoint (1,000 pages)
            store.record_poll(db, ok(), 600, [item(n * 10 + k) for k in range(10)])
        burst = wal.stat().st_size
        db.execute("PRAGMA wal_checkpoint(PASSIVE)")  # as the collector's thread does when quiet
        store.record_poll(db, ok(), 600, [item(1000)])  # starts the log again, in fewer pages
        assert burst > 1_000_000
        assert wal.stat().st_size < 200_000  # without the limit, still ~3 MB


def test_unknown_urls_over_many_chunks_keep_their_order(db):
    store.record_poll(db, ok(), 600, [item(1), item(600), item(1200)])
    urls = [f"https://www.rnz.co.nz/news/{n}" for n in range(1201)]
    unknown = store.unknown_urls(db, urls)
    assert unknown == [u for u in urls if not u.endswith(("/1", "/600", "/1200"))]
    assert len(unknown) == 1198


def test_unchanged_items_are_counted(db):
    store.record_poll(db, ok(), 600, [item(1), item(2)])
    counts = store.record_poll(db, ok(), 600, [item(1), item(2)])
    assert (counts.new, counts.updated, counts.unchanged) == (0, 0, 2)


def test_missing_publication_time_is_first_seen(db):
    store.record_poll(db, ok(), 600, [item(1, published=None)])
    assert rows(db, "SELECT published FROM articles") == [("2026-11-25T01:00:00Z",)]


def test_failure_backs_off_keeps_articles_and_success_resets(db):
    store.record_poll(db, ok(), 600, [item(1)])
    for n in range(1, 4):
        fail = Poll("RNZ", NOW, 5, "http_error", http_status=500, error="HTTP 500")
        store.record_poll(db, fail, 600, [item(99)])
        state = store.source_states(db, ["RNZ"])["RNZ"]
        assert state.consecutive_failures == n
        assert state.next_poll == iso(NOW + timedelta(seconds=600 * 2 ** (n - 1)))
    assert rows(db, "SELECT count(*) FROM articles") == [(1,)]  # a failed poll stores nothing
    assert rows(db, "SELECT last_error, etag, flag FROM sources WHERE name = 'RNZ'") == [
        ("HTTP 500", '"v1"', f"failing: 3 polls in a row since {NOW:%Y-%m-%d %H:%M} UTC")
    ]
    store.record_poll(db, ok(), 600, [])
    assert store.source_states(db, ["RNZ"])["RNZ"].consecutive_failures == 0
    assert rows(db, "SELECT flag FROM sources WHERE name = 'RNZ'") == [(None,)]
    statuses = rows(db, "SELECT status, http_status FROM fetches ORDER BY id")
    assert statuses == [("ok", 200)] + [("http_error", 500)] * 3 + [("ok", 200)]


def test_a_busy_source_going_quiet_is_judged_by_its_latest_polls(db):
    """A search finding something every 10 minutes has thousands of such polls a month; the
    flag reads the latest health.RATE_POLLS of them, so it must be the latest it reads."""
    busy = [NOW - timedelta(hours=26, minutes=10 * k) for k in range(3 * health.RATE_POLLS)]
    db.conn.executemany(
        "INSERT INTO fetches (source, started, status, new, duration_ms) VALUES ('RNZ', ?, 'ok', 1, 5)",
        [(iso(t),) for t in busy],
    )
    store.record_poll(db, Poll("RNZ", NOW, 5, "not_modified", http_status=304), 600)
    assert rows(db, "SELECT flag FROM sources WHERE name = 'RNZ'") == [
        ("silent: nothing new for 26 hours (usually every 10 minutes)",)
    ]


def test_retry_after_is_stored_and_defers_next_poll(db):
    until = NOW + timedelta(hours=2)
    poll = Poll("RNZ", NOW, 5, "retry_later", http_status=429, error="wait", retry_after=until)
    store.record_poll(db, poll, 600, [])
    state = store.source_states(db, ["RNZ"])["RNZ"]
    assert state.retry_after == state.next_poll == "2026-11-25T03:00:00Z"
    assert store.due_sources(db, NOW + timedelta(hours=1)) == ["Stuff"]


def test_a_pass_reads_every_sources_state_at_once_and_a_new_source_starts_fresh(db):
    store.record_poll(db, ok(), 600, [item(1)])
    states = store.source_states(db, ["Stuff", "RNZ", "Not yet synced"])
    assert list(states) == ["Stuff", "RNZ", "Not yet synced"]
    assert (states["RNZ"].etag, states["RNZ"].next_poll) == (
        '"v1"',
        iso(NOW + timedelta(seconds=600)),
    )
    assert (
        states["Stuff"]
        == states["Not yet synced"]
        == store.SourceState(None, None, None, 0, None, None)
    )


def test_a_failed_write_leaves_nothing_half_written(db, monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(store, "_record_health", explode)
    with pytest.raises(RuntimeError):
        store.record_poll(db, ok(), 600, [item(1), item(2)])
    assert rows(db, "SELECT count(*) FROM articles") == [(0,)]
    assert rows(db, "SELECT count(*) FROM fetches") == [(0,)]


def test_sources_leaving_the_config_go_inactive(db, tmp_path):
    store.sync_sources(
        db, Config(tmp_path / "f.yaml", (Source("RNZ", "https://www.rnz.co.nz/rss"),))
    )
    assert rows(db, "SELECT name, active FROM sources ORDER BY name") == [("RNZ", 1), ("Stuff", 0)]
    assert json.loads(rows(db, "SELECT topics FROM sources WHERE name='RNZ'")[0][0]) == []


def test_poll_records_are_kept_for_90_days(db):
    old = NOW - timedelta(days=100)
    store.record_poll(db, Poll("RNZ", old, 1, "ok"), 600, [], now=old)
    store.record_poll(db, ok(), 600, [])
    assert store.prune_fetches(db, NOW) == 1
    assert rows(db, "SELECT started FROM fetches") == [("2026-11-25T01:00:00Z",)]


def test_polls_written_together_count_as_if_written_alone(db):
    # Both sources carry article 1 in one batch: one article, seen by both, with the topics of
    # both (and the words that matched each); the second copy is edited, so its text wins and
    # the first goes to history.
    first = item(1, topics=("detention",), matched={"detention": ("prison",)})
    edited = item(
        1, guid="s1", title="Headline 1 corrected", topics=("campaign",),
        matched={"campaign": ("asylum",)},
    )  # fmt: skip
    counts = store.record_polls(db, [
        store.Written(ok("RNZ"), 600, [first, item(2)]),
        store.Written(ok("Stuff"), 600, [edited, item(3)]),
    ])  # fmt: skip
    assert [(c.new, c.updated, c.unchanged) for c in counts] == [(2, 0, 0), (1, 1, 0)]
    assert rows(db, "SELECT id, title, topics FROM articles ORDER BY id") == [
        (1, "Headline 1 corrected", '["campaign", "detention"]'), (2, item(2).title, "[]"),
        (3, item(3).title, "[]"),
    ]  # fmt: skip
    assert json.loads(rows(db, "SELECT matched FROM articles WHERE id = 1")[0][0]) == {
        "campaign": ["asylum"], "detention": ["prison"],
    }  # fmt: skip
    assert rows(db, "SELECT article_id, source FROM sightings ORDER BY 1, 2") == [
        (1, "RNZ"), (1, "Stuff"), (2, "RNZ"), (3, "Stuff"),
    ]  # fmt: skip
    assert rows(db, "SELECT article_id, title FROM article_history") == [(1, item(1).title)]
    assert rows(db, "SELECT source, new, updated FROM fetches ORDER BY id") == [
        ("RNZ", 2, 0), ("Stuff", 1, 1),
    ]  # fmt: skip
    assert rows(db, "SELECT rowid FROM articles_fts WHERE articles_fts MATCH 'corrected'") == [(1,)]
    db.execute("INSERT INTO articles_fts (articles_fts) VALUES ('integrity-check')")


def test_a_stored_article_edited_twice_in_one_batch_keeps_both_old_texts(db):
    store.record_poll(db, ok(), 600, [item(1)])
    later = NOW + timedelta(minutes=5)
    store.record_polls(db, [
        store.Written(ok("RNZ", later), 600, [item(1, title="Second")], later),
        store.Written(ok("Stuff", later), 600, [item(1, guid="s", title="Third")], later),
    ])  # fmt: skip
    assert rows(db, "SELECT title FROM articles") == [("Third",)]
    assert rows(db, "SELECT title FROM article_history ORDER BY id") == [
        (item(1).title,), ("Second",),
    ]  # fmt: skip
    db.execute("INSERT INTO articles_fts (articles_fts) VALUES ('integrity-check')")
