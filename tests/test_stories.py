"""Story clustering, measured on 300 labelled articles through the real store (SQLite)."""

from __future__ import annotations

import csv
import itertools
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from monitor import store, store_stories
from monitor.cli import main
from monitor.normalise import Item, strip_outlet_suffix
from monitor.store import Poll
from monitor.stories import fold, stems, strip_outlet, word_array
from tests.conftest import shared_fixtures

LABELLED = Path(__file__).parent / "fixtures" / "stories" / "labelled.tsv"
BASE = datetime(2026, 11, 1, tzinfo=UTC)


def labelled_rows() -> list[dict[str, str]]:
    return list(csv.DictReader(LABELLED.read_text(encoding="utf-8").splitlines(), delimiter="\t"))


def as_item(n: int, row: dict[str, str], outlets: set[str]) -> Item:
    """What the collector would store: Google News items name their outlet, suffix removed."""
    title, outlet, aggregated = row["title"], row["outlet"], False
    if outlet == "Google News":
        title, named = strip_outlet(title, outlets)
        outlet, aggregated = named or outlet, True
    url = f"https://news.example/{n}"
    return Item(url=url, link=url, guid=None, title=title, summary=row["summary"],
                published=None, outlet=outlet, aggregated=aggregated)  # fmt: skip


def seed_word_rarity(db, rows) -> None:
    """Word rarity as an established archive would have it. In production it comes from the
    archive itself; a fresh 300-article database would judge rarity on too little text."""
    docs: dict[str, int] = {}
    for r in rows:
        for word in set(stems(r["title"]) + stems(r["summary"])):
            docs[word] = docs.get(word, 0) + 1
    db.conn.executemany("INSERT INTO story_words (word, docs) VALUES (?, ?)", docs.items())
    db.execute("INSERT INTO sources (name, url, interval) VALUES ('archive', 'http://a/', 600)")
    # An archive of that many articles, long before the labelled ones (outside every window).
    long_ago = BASE - timedelta(days=400)
    store.record_poll(db, Poll("archive", long_ago, 1, "ok"), 600, [
        Item(url=f"https://old.example/{n}", link=f"https://old.example/{n}", guid=None,
             title=f"Archive story number{n}", summary="", published=None, outlet="Archive")
        for n in range(len(rows))
    ], now=long_ago)  # fmt: skip


def load(db, rows) -> list[int]:
    """Insert the rows in time order, one poll per minute; returns article ids in row order."""
    seed_word_rarity(db, rows)
    outlets = {r["outlet"] for r in rows}
    db.execute("INSERT INTO sources (name, url, interval) VALUES ('S', 'http://s.example/', 600)")
    order = sorted(range(len(rows)), key=lambda i: (int(rows[i]["minutes"]), i))
    for i in order:
        at = BASE + timedelta(minutes=int(rows[i]["minutes"]))
        store.record_poll(db, Poll("S", at, 1, "ok"), 600, [as_item(i, rows[i], outlets)], now=at)
    return load_ids(db, rows)


def load_ids(db, rows) -> list[int]:
    ids = dict(db.execute("SELECT url, id FROM articles").fetchall())
    return [ids[f"https://news.example/{i}"] for i in range(len(rows))]


def pairwise(rows, story_of: dict[int, int], ids: list[int]) -> tuple[float, float]:
    tp = fp = fn = 0
    for i, j in itertools.combinations(range(len(rows)), 2):
        same = rows[i]["story"] == rows[j]["story"]
        joined = story_of[ids[i]] == story_of[ids[j]]
        tp += same and joined
        fp += joined and not same
        fn += same and not joined
    return tp / ((tp + fp) or 1), tp / ((tp + fn) or 1)


@pytest.fixture
def db(db_path):
    database = store.open_db(db_path)
    yield database
    database.close()


def test_labelled_clusters_pairwise_precision_and_recall(db):
    rows = labelled_rows()
    assert len(rows) >= 300
    ids = load(db, rows)
    story_of = dict(db.execute("SELECT id, story_id FROM articles").fetchall())
    precision, recall = pairwise(rows, story_of, ids)
    found = len({story_of[i] for i in ids})
    print(f"stories: pairwise precision {precision:.3f}, recall {recall:.3f}, "
          f"{found} stories found for {len({r['story'] for r in rows})} labelled")  # fmt: skip
    assert precision >= 0.95
    assert recall >= 0.90


def test_reasons_and_the_story_row(db):
    rows = labelled_rows()
    ids = load(db, rows)
    reasons = dict(db.execute("SELECT id, match_reason FROM articles").fetchall())
    first = {r["story"]: ids[i] for i, r in reversed(list(enumerate(rows)))}
    report = first["report"]
    assert reasons[report] == "first report"
    # ODT's syndicated copy, Google News' item naming RNZ, and a rewrite.
    assert reasons[ids[1]] == "same title"
    assert reasons[ids[4]] == "aggregator copy of RNZ"
    assert reasons[ids[2]].startswith("near-duplicate (")
    title, url, outlet, outlets, count = db.execute(
        "SELECT title, url, outlet, outlets, articles FROM stories WHERE id = ?", [report]
    ).fetchone()
    assert (title, outlet, url) == (rows[0]["title"], "RNZ", "https://news.example/0")
    assert outlets >= 5 and count >= 8


def test_hard_negatives_stay_apart(db):
    rows = labelled_rows()
    ids = load(db, rows)
    story_of = dict(db.execute("SELECT id, story_id FROM articles").fetchall())
    first: dict[str, int] = {}
    for i, r in enumerate(rows):
        first.setdefault(r["story"], ids[i])
    for a, b in [
        ("report", "minister-responds"),
        ("amnesty-urgent", "amnesty-refugee-day"),
        ("court-ruling-a", "court-ruling-b"),
        ("quake", "quake-aftershock"),
        ("ombudsman", "corrections-responds"),
        ("escape", "escape-caught"),
    ]:
        assert story_of[first[a]] != story_of[first[b]], (a, b)


def test_story_ids_are_stable_and_restory_is_deterministic(db):
    rows = labelled_rows()
    load(db, rows)
    before = db.execute("SELECT id, story_id FROM articles ORDER BY id").fetchall()
    assert all(story <= article for article, story in before)  # a story is its first article's id
    with store.transaction(db):
        count = store_stories.restory(db)
    again = db.execute("SELECT id, story_id FROM articles ORDER BY id").fetchall()
    with store.transaction(db):
        assert store_stories.restory(db) == count
    assert db.execute("SELECT id, story_id FROM articles ORDER BY id").fetchall() == again
    # From scratch (with the whole archive's word rarity) it is as good as incremental.
    precision, recall = pairwise(rows, dict(again), load_ids(db, rows))
    print(f"restory: pairwise precision {precision:.3f}, recall {recall:.3f}")
    assert precision >= 0.95 and recall >= 0.90


def test_merge_and_split_by_hand_survive_restory(db_path):
    db = store.open_db(db_path)
    rows = labelled_rows()
    ids = load(db, rows)
    db.close()

    def story_of():
        other = store.open_db(db_path)
        try:
            return dict(other.execute("SELECT id, story_id FROM articles").fetchall())
        finally:
            other.close()

    visa, skilled = (
        ids[[r["story"] for r in rows].index("visa-queues")],
        ids[[r["story"] for r in rows].index("skilled-migrant")],
    )
    runner = CliRunner()
    merged = runner.invoke(
        main,
        ["stories", "merge", str(story_of()[visa]), str(story_of()[skilled]), "--db", str(db_path)],
    )
    assert merged.exit_code == 0, merged.output
    assert story_of()[skilled] == story_of()[visa]
    split = runner.invoke(main, ["stories", "split", str(ids[2]), "--db", str(db_path)])
    assert split.exit_code == 0, split.output
    assert story_of()[ids[2]] == ids[2] != story_of()[ids[0]]
    restoried = runner.invoke(main, ["restory", "--db", str(db_path)])
    assert restoried.exit_code == 0 and "stories" in restoried.output
    after = story_of()
    assert after[skilled] == after[visa] and after[ids[2]] == ids[2] != after[ids[0]]
    db = store.open_db(db_path)
    assert db.execute("SELECT action, count(*) FROM story_overrides GROUP BY action ORDER BY action").fetchall() == [
        ("merge", 2), ("split", 1),
    ]  # fmt: skip
    db.close()


def test_the_collector_sees_a_merge_made_by_another_process(db, db_path):
    # The collector's connection keeps recent articles' stories in memory; a staff merge from
    # another connection must not leave it adding copies to the story that was merged away.
    rows = labelled_rows()
    ids = load(db, rows)
    stories_of = [r["story"] for r in rows]
    visa, skilled = ids[stories_of.index("visa-queues")], ids[stories_of.index("skilled-migrant")]
    story = dict(db.execute("SELECT id, story_id FROM articles").fetchall())
    merged = CliRunner().invoke(
        main, ["stories", "merge", str(story[visa]), str(story[skilled]), "--db", str(db_path)]
    )
    assert merged.exit_code == 0, merged.output
    copy = rows[stories_of.index("skilled-migrant")]
    at = BASE + timedelta(minutes=int(copy["minutes"]) + 30)
    item = Item(url="https://copy.example/1", link="https://copy.example/1", guid=None,
                title=copy["title"], summary=copy["summary"], published=None, outlet="ODT")  # fmt: skip
    store.record_poll(db, Poll("S", at, 1, "ok"), 600, [item], now=at)
    (joined,) = db.execute(
        "SELECT story_id FROM articles WHERE url = 'https://copy.example/1'"
    ).fetchone()
    assert joined == story[visa] != story[skilled]


def test_articles_written_outside_the_clusterer_are_candidates(db):
    # A fresh database runs restory in its migrations; articles written afterwards by other
    # means on the same connection (a bulk import, the benchmarks' fill) must still be found.
    at = BASE.isoformat().replace("+00:00", "Z")
    db.execute(
        """INSERT INTO articles (id, url, title, summary, published, first_seen, updated, source,
            outlet, story_id, words)
        VALUES (1, 'https://a.example/1', 'Detention review ordered', '', ?, ?, ?, 'S', 'RNZ', 1,
            'deten revie order')""",
        [at, at, at],
    )
    db.execute(
        """INSERT INTO stories VALUES (1, 'Detention review ordered', 'https://a.example/1', 'RNZ',
            ?, ?, ?, 1, '["RNZ"]', 1, '[]')""",
        [at, at, at],
    )
    db.execute("INSERT INTO sources (name, url, interval) VALUES ('S', 'http://s.example/', 600)")
    later = BASE + timedelta(hours=1)
    copy = Item(url="https://b.example/1", link="https://b.example/1", guid=None,
                title="Detention review ordered", summary="", published=None, outlet="ODT")  # fmt: skip
    store.record_poll(db, Poll("S", later, 1, "ok"), 600, [copy], now=later)
    assert db.execute(
        "SELECT story_id, match_reason FROM articles WHERE url = 'https://b.example/1'"
    ).fetchone() == (1, "same title")


def test_fold_and_suffixes():
    assert fold("‘Immediate’ and “urgent” – Tāmaki!") == "immediate and urgent tamaki"
    # Letters that are not a base letter plus a mark stay; other scripts keep their words.
    assert fold("Øresund, Łódź: Straße") == "øresund łodz straße"
    assert stems("Дети в тюрьме: 86 people") == ["дети", "тюрьм", "peopl"]
    assert strip_outlet("Story - RNZ", {"RNZ"}) == ("Story", "RNZ")
    assert strip_outlet("Story - Not An Outlet", {"RNZ"}) == ("Story - Not An Outlet", None)
    assert strip_outlet_suffix("Story | Stuff", "Stuff") == "Story"


def test_ascii_text_folds_to_the_words_the_regex_finds():
    # Every ASCII character, in every position: the byte table must agree with \w, lowered.
    text = "".join(map(chr, range(128))) + " Don't_STOP 2026-12-07 a+b=C\t"
    assert fold(text) == " ".join(re.findall(r"\w+", text.lower()))
    assert fold("HEADLINE: Detention, 86 People!") == "headline detention 86 people"


def vectors_of(vocabulary, texts, total):
    """The batch vectors of these word lists, as the clusterer weighs articles."""
    import numpy as np

    counted = [Counter(words) for words in texts]
    ids = vocabulary.lookup(word_array(w for c in counted for w in c))
    assert (ids >= 0).all()
    counts = np.array([n for c in counted for n in c.values()], np.float64)
    lens = np.array([len(c) for c in counted], np.int64)
    return vocabulary.vectors(ids, counts, lens, np.full(len(texts), total, np.int64))


def similarities(mine, owners, others):
    """The cosine of each of `others` with the vector of `mine` that `owners` names for it, as
    the clusterer scores candidates (their vectors end to end in one pool)."""
    import numpy as np

    from monitor import candidates

    ids = np.concatenate([mine.ids, others.ids]).astype(np.int32)
    weights = np.concatenate([mine.weights, others.weights]).astype(np.float32)
    scratch = np.zeros(int(ids.max(initial=0)) + 1, np.float32)
    scores = candidates.cosines(
        ids, weights, np.asarray(owners, np.int64), mine.starts, mine.lens,
        others.starts + len(mine.ids), others.lens, scratch,
    )  # fmt: skip
    assert not scratch.any()  # all zeros again, for the next call
    return scores


def test_shared_paraphrase_pairs_report():
    """Real sentence pairs from different outlets (MSRP): reported, not asserted per pair."""
    import numpy as np

    from monitor.stories import Vocabulary, stems

    path = shared_fixtures("dup_pairs", "msr_paraphrase_test_first31.tsv")
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    pairs = [
        dict(zip(header, line.split("\t"), strict=False)) for line in lines[1:] if line.strip()
    ]
    strings = [k for k in header if k.lower().endswith("string")]
    texts = [stems(p[k]) for p in pairs for k in strings]
    vocabulary = Vocabulary()
    vocabulary.add(dict.fromkeys({w for words in texts for w in words}, 0))
    for words in texts:
        found = vocabulary.lookup(word_array(set(words)))
        assert (found >= 0).all()
        vocabulary.count(found)
    firsts = vectors_of(vocabulary, texts[0::2], len(texts))
    seconds = vectors_of(vocabulary, texts[1::2], len(texts))
    # Every pair in one call: each second sentence against its own first.
    scores = similarities(firsts, np.arange(len(pairs)), seconds)
    tp = fp = fn = tn = 0
    for p, score in zip(pairs, scores, strict=True):
        same = p[header[0]].strip() == "1"
        joined = score >= 0.38
        tp += same and joined
        fp += joined and not same
        fn += same and not joined
        tn += not same and not joined
    print(f"MSRP 31 pairs at 0.38: tp {tp} fp {fp} fn {fn} tn {tn}")
    assert len(pairs) == 31
    # The README's figures: every paraphrase joined, 3 of the 7 non-paraphrases too (sentences
    # about the same event are close by design).
    assert (tp, fp, fn, tn) == (24, 3, 0, 4)


def test_the_vocabulary_finds_every_word_added_as_its_table_grows_and_keys_them_apart():
    import numpy as np

    from monitor.candidates import word_keys
    from monitor.stories import WORD, Vocabulary, _letters

    vocabulary = Vocabulary()
    letters = itertools.product("abcdefghijklmnopqrstuvwxyz", repeat=4)
    # As many distinct stems as its first table has slots: twice what that may hold.
    first = ["q" + "".join(t) for t in itertools.islice(letters, len(vocabulary._table))]
    vocabulary.add(dict.fromkeys(first, 0))
    n = len(first)
    assert len(vocabulary._table) >= 2 * n
    assert vocabulary.lookup(word_array(first)).tolist() == list(range(n))
    vocabulary.add({"中文字": 0, "тюрьм": 0, "abc": 0})
    later = ["abc", first[7], "中文字", "тюрьм", "unkno", "中文", first[4096], ""]
    assert vocabulary.lookup(word_array(later)).tolist() == [n + 2, 7, n, n + 1, -1, -1, 4096, -1]
    # Read-only words (a chunk's, straight from the articles' bytes) are looked up alike.
    readonly = np.frombuffer(word_array(later).tobytes(), WORD)
    assert vocabulary.lookup(readonly).tolist()[:3] == [n + 2, 7, n]
    words = ["abc", "abcd", "abcde", "abd", "тюрьм", "дети", "中文", "中文字"]
    keys = word_keys(_letters(word_array(words)))
    assert len(set(keys.tolist())) == 8
    assert [k >> 63 for k in keys.tolist()] == [0, 0, 0, 0, 0, 0, 1, 1]


def test_similarities_score_every_candidate_including_empty_ones():
    import numpy as np

    from monitor.stories import Vocabulary

    vocabulary = Vocabulary()
    vocabulary.add({"deten": 1, "asylu": 1, "priso": 1, "minis": 1})
    mine = vectors_of(vocabulary, [["deten", "asylu"], ["minis"]], 4)
    others = vectors_of(
        vocabulary, [["deten", "asylu"], [], ["deten", "priso"], ["priso"], ["minis"]], 4
    )
    # Same words: 1; no words: 0 (not its neighbour's first product); one of two equally
    # weighted words: 1/2; no shared word: 0; the second article's own word: 1.
    owners = np.array([0, 0, 0, 0, 1])
    assert similarities(mine, owners, others).round(6).tolist() == [
        1.0, 0.0, 0.5, 0.0, 1.0
    ]  # fmt: skip
    # Each pair is scored against its own owner: the first article does not have "minis".
    assert similarities(mine, np.zeros(5, np.int64), others)[-1] == 0.0
    none = vectors_of(vocabulary, [], 4)
    assert similarities(mine, np.zeros(0, np.int64), none).tolist() == []


def distinct_title(n: int) -> str:
    """Four words no other n shares (stems are five characters)."""
    return " ".join(f"q{n:03d}{c}" for c in "abcd")


def test_articles_placed_together_find_the_ones_before_them(db):
    # One poll of 100 articles is placed in chunks (store_stories.CHUNK): a copy finds an
    # article earlier in its own chunk and in an earlier chunk, as if placed one by one.
    assert store_stories.CHUNK < 70
    db.execute("INSERT INTO sources (name, url, interval) VALUES ('S', 'http://s.example/', 600)")
    titles = [distinct_title(n) for n in range(100)]
    titles[20] = titles[2]  # same chunk
    titles[70] = titles[3]  # a later chunk
    titles[80] = "q010a q010b q010c other"  # three of four words: a near-duplicate
    items = [
        Item(url=f"https://x.example/{n}", link=f"https://x.example/{n}", guid=None,
             title=title, summary="", published=None, outlet="RNZ")
        for n, title in enumerate(titles)
    ]  # fmt: skip
    store.record_poll(db, Poll("S", BASE, 1, "ok"), 600, items, now=BASE)
    placed = {
        url: (story, reason)
        for url, story, reason in db.execute("SELECT url, story_id, match_reason FROM articles")
    }
    story = {n: placed[f"https://x.example/{n}"] for n in (2, 3, 10, 20, 70, 80)}
    assert story[20] == (story[2][0], "same title")
    assert story[70] == (story[3][0], "same title")
    assert story[80][0] == story[10][0] and story[80][1].startswith("near-duplicate (")
    assert sum(reason == "first report" for _, reason in placed.values()) == 97


def decisions(path, rows) -> list[tuple[int, int, str]]:
    """Each article's story and reason, the rows loaded into a new store at `path`."""
    database = store.open_db(path)
    try:
        load(database, rows)
        return database.execute(
            "SELECT id, story_id, match_reason FROM articles ORDER BY id"
        ).fetchall()
    finally:
        database.close()


def test_compacting_the_clusterers_memory_changes_no_decision(tmp_path, monkeypatch):
    rows = labelled_rows()
    before = decisions(tmp_path / "one.db", rows)
    compactions = []
    compact = store_stories._Memory.compact

    def counted(memory):
        compactions.append(memory.used)
        compact(memory)

    monkeypatch.setattr(store_stories._Memory, "COMPACT_AT", 7)
    monkeypatch.setattr(store_stories._Memory, "compact", counted)
    assert decisions(tmp_path / "other.db", rows) == before
    assert len(compactions) >= 5


def test_the_window_read_back_in_pieces_decides_as_read_whole(tmp_path, monkeypatch):
    # Each poll reloads the clusterer's window from the database (as after a restart or a
    # staff merge): read WINDOW_LOOKUP articles at a time, 7 or all at once, the same decisions.
    rows = labelled_rows()
    monkeypatch.setattr(store_stories, "check", store_stories._reset)
    whole = decisions(tmp_path / "one.db", rows)
    monkeypatch.setattr(store_stories, "WINDOW_LOOKUP", 7)
    assert decisions(tmp_path / "other.db", rows) == whole
    assert sum(reason != "first report" for _, _, reason in whole) > 100


def test_a_poll_that_started_earlier_but_finished_later_finds_what_was_just_placed(db):
    # Polls finish out of the order they started in: the one started first is written last.
    # Its copy still meets the article placed just before it (memory is not reloaded without it).
    db.execute("INSERT INTO sources (name, url, interval) VALUES ('S', 'http://s.example/', 600)")
    first = Item(url="https://a.example/1", link="https://a.example/1", guid=None,
                 title="Detention review ordered by minister", summary="", published=None,
                 outlet="RNZ")  # fmt: skip
    copy = Item(url="https://b.example/1", link="https://b.example/1", guid=None,
                title="Detention review ordered by minister", summary="", published=None,
                outlet="ODT")  # fmt: skip
    later = BASE + timedelta(seconds=20)
    store.record_poll(db, Poll("S", later, 1, "ok"), 600, [first], now=later)
    store.record_poll(db, Poll("S", BASE, 1, "ok"), 600, [copy], now=BASE)
    rows = db.execute("SELECT url, story_id, match_reason FROM articles ORDER BY id").fetchall()
    assert rows == [("https://a.example/1", 1, "first report"),
                    ("https://b.example/1", 1, "same title")]  # fmt: skip


def test_warming_loads_the_compiled_loops_placing_then_uses(tmp_path):
    # warm() must load them for the very types placing passes: otherwise the first batch would
    # still compile (or load) versions of its own while the collector waits. In a process of
    # its own, so that no earlier test has loaded them already.
    import subprocess
    import sys

    script = f"""
from monitor import candidates, store, store_stories
from tests.test_stories import labelled_rows, load
kernels = (candidates.file_and_find, candidates.cosines)
import gc
gc.unfreeze()
store_stories.warm()
warmed = [list(k.signatures) for k in kernels]
assert gc.get_freeze_count() > 50_000, "numba's objects are left to the collector"
load(store.open_db({str(tmp_path / "w.db")!r}), labelled_rows()[:60])
assert [list(k.signatures) for k in kernels] == warmed, warmed
assert all(warmed), warmed
"""
    root = Path(__file__).parent.parent
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=root)
    assert done.returncode == 0, done.stderr[-2000:]
