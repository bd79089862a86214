from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from monitor import store
from monitor.cli import main
from monitor.config import Source, load_config, parse_config
from monitor.errors import ConfigError
from monitor.normalise import Item
from monitor.store import Poll
from monitor.topics import Matcher, query_problem, tag

ROOT = Path(__file__).parents[1]
LABELLED = Path(__file__).parent / "fixtures" / "topics" / "labelled.tsv"
NOW = datetime(2026, 11, 25, 1, 0, tzinfo=UTC)


def match(query: str, title: str, summary: str = "") -> tuple[str, ...] | None:
    m = Matcher({"t": query}).match([(title, summary)])[0]
    return m.terms.get("t")


@pytest.mark.parametrize(
    ("query", "title", "terms"),
    [
        ("Tamaki", "Protest in Tāmaki Makaurau", ("tāmaki",)),
        ("Tāmaki", "Protest in Tamaki Makaurau", ("tamaki",)),
        ('"asylum seekers"', "Asylum-seekers held in prison", ("asylum-seekers",)),
        ("asylum-seekers", "Asylum seekers held", ("asylum seekers",)),
        ("asylum-seek*", "asylum seekers held", ("asylum seekers",)),
        ('"asylum-seekers" OR x-ray', "asylum seekers held", ("asylum seekers",)),
        ("ASYLUM", "asylum seekers", ("asylum",)),
        ("detain*", "Man detained at airport", ("detained",)),
        ('"asylum seek" *', "people seeking asylum and asylum seekers", ("asylum seekers",)),
        ("NEAR(asylum prison, 3)", "asylum seekers in a prison", ("asylum", "prison")),
        ("amnesty NOT china", "Amnesty criticises China", None),
        ("(asylum OR refugee) AND prison", "Refugee in prison", ("refugee", "prison")),
    ],
)
def test_query_semantics(query, title, terms):
    assert match(query, title) == terms


def test_words_from_title_and_summary_are_reported_once():
    terms = match(
        "asylum AND prison*", "Asylum seekers", "held in prisons; asylum claims in prison"
    )
    assert terms == ("asylum", "prisons", "prison")


def test_near_is_a_real_distance_limit():
    assert (
        match("NEAR(asylum prison, 2)", "asylum seekers were held for a long time in prison")
        is None
    )


@pytest.mark.parametrize("query", ['"unclosed', "asylum AND", "NEAR(a b", "(a OR b"])
def test_invalid_queries_are_explained(query):
    assert query_problem(query) is not None
    assert query_problem("asylum AND prison") is None


def test_invalid_topic_is_a_config_error_with_its_line(tmp_path):
    text = "sources:\n  - {name: A, url: 'http://a.example/'}\ntopics:\n  ok: asylum\n  bad: '\"asylum AND'\n"
    with pytest.raises(ConfigError) as info:
        parse_config(text, tmp_path / "feeds.yaml")
    [problem] = info.value.problems
    assert (problem.line, problem.key) == (5, "topics.bad")
    assert "not a valid search query" in problem.message and "FTS5" in problem.message


def item(n: int, title: str, summary: str = "") -> Item:
    url = f"https://example.org/{n}"
    return Item(
        url=url, link=url, guid=None, title=title, summary=summary, published=NOW, outlet="X"
    )


def test_tag_adds_source_topics_and_matches_and_can_require_a_topic():
    matcher = Matcher({"detention": "asylum AND prison", "sport": "cricket"})
    items = [item(1, "Asylum seekers in prison"), item(2, "Weather"), item(3, "Cricket")]
    plain = Source("S", "http://s.example/", topics=("campaign",))
    tagged, dropped = tag(items, matcher, plain)
    assert [i.topics for i in tagged] == [
        ("campaign", "detention"),
        ("campaign",),
        ("campaign", "sport"),
    ]
    assert tagged[0].matched == {"detention": ("asylum", "prison")}
    assert dropped == 0
    strict = Source("S", "http://s.example/", require_topic=True)
    kept, dropped = tag(items, matcher, strict)
    assert [i.title for i in kept] == ["Asylum seekers in prison", "Cricket"] and dropped == 1


def labelled_rows() -> list[dict[str, str]]:
    return list(csv.DictReader(LABELLED.read_text(encoding="utf-8").splitlines(), delimiter="\t"))


def test_labelled_set_precision_and_recall():
    """The shipped topics, measured on 150+ labelled items; printed with -s, asserted for the
    topics the breaking-news tab depends on."""
    config = load_config(ROOT / "feeds.yaml")
    rows = labelled_rows()
    assert len(rows) >= 150
    results = Matcher(config.topics).match([(r["title"], r["summary"]) for r in rows])
    scores = {}
    for topic in config.topics:
        tp = fp = fn = 0
        for row, result in zip(rows, results, strict=True):
            wanted, got = topic in row["topics"].split(), topic in result.topics
            tp += wanted and got
            fp += got and not wanted
            fn += wanted and not got
        scores[topic] = (tp / ((tp + fp) or 1), tp / ((tp + fn) or 1))
        print(
            f"{topic:18} precision {scores[topic][0]:.3f}  recall {scores[topic][1]:.3f}  (tp {tp}, fp {fp}, fn {fn})"
        )
    for topic in ("detention", "campaign"):
        precision, recall = scores[topic]
        assert precision >= 0.9, (topic, precision)
        assert recall >= 0.95, (topic, recall)


def test_the_six_campaign_page_headlines():
    config = load_config(ROOT / "feeds.yaml")
    six = labelled_rows()[:6]
    results = Matcher(config.topics).match([(r["title"], r["summary"]) for r in six])
    assert [r.topics for r in results] == [
        ("detention",),
        ("campaign", "detention"),
        ("campaign", "detention"),
        ("detention",),
        ("prison_conditions",),
        ("policy",),
    ]


@pytest.fixture
def db(db_path, tmp_path):
    database = store.open_db(db_path)
    yield database
    database.close()


def config_with(tmp_path, topics: str, source_topics: str = "[]"):
    text = (
        "sources:\n"
        f"  - {{name: A, url: 'http://a.example/', topics: {source_topics}}}\n"
        "  - {name: B, url: 'http://b.example/'}\n"
        f"topics:\n{topics}"
    )
    return parse_config(text, tmp_path / "feeds.yaml")


def test_retag_applies_changed_topics_through_the_fts_index(db, tmp_path):
    config = config_with(tmp_path, "  detention: 'asylum AND prison'\n  campaign: amnesty\n")
    store.sync_sources(db, config)
    store.record_poll(db, Poll("B", NOW, 1, "ok"), 600, [
        item(1, "Asylum seekers held in prison", "Amnesty report"),
        item(2, "Black Caps win"),
        item(3, "Tāmaki Makaurau protest"),
    ])  # fmt: skip
    assert db.execute("SELECT topics FROM articles ORDER BY id").fetchall() == [("[]",)] * 3

    result = store.retag(db, config)
    assert result.changed == 1
    assert dict(result.per_topic) == {"campaign": 1, "detention": 1}
    assert db.execute("SELECT topics, matched FROM articles WHERE id = 1").fetchone() == (
        '["campaign", "detention"]',
        '{"campaign": ["amnesty"], "detention": ["asylum", "prison"]}',
    )
    # A topic removed from the config is removed from the articles; a new one applies backwards.
    config = config_with(tmp_path, "  place: tamaki\n")
    result = store.retag(db, config)
    assert db.execute("SELECT id, topics FROM articles WHERE topics != '[]'").fetchall() == [
        (3, '["place"]')
    ]
    assert result.changed == 2


def test_retag_keeps_topics_given_by_a_source(db, tmp_path):
    config = config_with(tmp_path, "  detention: 'asylum AND prison'\n", "[detention]")
    store.sync_sources(db, config)
    store.record_poll(db, Poll("A", NOW, 1, "ok"), 600, [item(1, "Weather", "")])
    store.retag(db, config)
    assert db.execute("SELECT topics, matched FROM articles").fetchone() == ('["detention"]', "{}")


def test_prune_removes_only_old_unmatched_articles(db, tmp_path):
    config = config_with(tmp_path, "  detention: asylum\n")
    store.sync_sources(db, config)
    old = NOW - timedelta(days=40)
    store.record_poll(
        db, Poll("B", old, 1, "ok"), 600, [item(1, "Old weather"), item(2, "Old asylum", "")]
    )
    store.record_poll(db, Poll("B", NOW, 1, "ok"), 600, [item(3, "New weather")])
    store.retag(db, config)
    assert store.prune_unmatched(db, config, NOW) == {"B": 1}
    assert [r[0] for r in db.execute("SELECT id FROM articles ORDER BY id")] == [2, 3]
    assert db.execute("SELECT count(*) FROM sightings WHERE article_id = 1").fetchone() == (0,)


def test_cli_topics_test_retag_and_prune(server, tmp_path, db_path):
    from tests.conftest import write_config

    url = server.feed("/rnz.xml", "rnz_national.xml")
    config = write_config(
        tmp_path, [{"name": "RNZ", "url": url}], topics={"detention": "asylum AND prison*"}
    )
    runner = CliRunner()
    collected = runner.invoke(main, ["collect", "--config", str(config), "--db", str(db_path)])
    assert collected.exit_code == 0
    out = runner.invoke(main, ["topics", "test", "asylum AND prison*", "--db", str(db_path)])
    assert out.exit_code == 0
    lines = out.stdout.splitlines()
    assert lines[0] == "1 stored article(s) match asylum AND prison*"
    assert "RNZ - National: Allegations of rape, assault of asylum seekers in prison" in lines[1]
    assert lines[2].strip() == "matched: asylum, prison, prisons"
    bad = runner.invoke(main, ["topics", "test", '"asylum', "--db", str(db_path)])
    assert bad.exit_code == 2 and "not a valid search query" in bad.output

    listed = runner.invoke(main, ["topics", "list", "--config", str(config), "--db", str(db_path)])
    assert listed.stdout.splitlines()[0] == "detention: 1 article(s)"
    retagged = runner.invoke(main, ["retag", "--config", str(config), "--db", str(db_path)])
    assert retagged.stdout.splitlines() == ["0 article(s) changed topics", "  detention: 1"]
    pruned = runner.invoke(main, ["prune", "--config", str(config), "--db", str(db_path)])
    assert pruned.stdout.splitlines() == [
        "removed 0 article(s) that match no topic",
        "removed 0 poll record(s) older than 90 days",
    ]


def test_require_topic_keeps_only_matching_items_end_to_end(server, tmp_path, db_path):
    from tests.conftest import write_config

    url = server.feed("/rnz.xml", "rnz_national.xml")
    config = write_config(
        tmp_path,
        [{"name": "RNZ", "url": url, "require_topic": True}],
        topics={"detention": "asylum AND prison*"},
    )
    result = CliRunner().invoke(main, ["collect", "--config", str(config), "--db", str(db_path)])
    assert "RNZ: 1 new, 0 updated, 0 unchanged, 2 matched no topic (not kept)" in result.stdout
    db = store.open_db(db_path)
    assert db.execute("SELECT topics, matched FROM articles").fetchall() == [
        ('["detention"]', '{"detention": ["asylum", "prison", "prisons"]}')
    ]
    assert db.execute("SELECT filtered FROM fetches").fetchall() == [(2,)]
    db.close()
