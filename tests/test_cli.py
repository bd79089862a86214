from __future__ import annotations

import gc
import subprocess
import sys

from click.testing import CliRunner

from monitor.cli import GC_THRESHOLD, main
from tests import server as srv
from tests.conftest import write_config


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_collect_prints_a_line_per_source_and_exits_0_despite_failures(server, tmp_path, db_path):
    good = server.feed("/rnz.xml", "rnz_national.xml")
    bad = server.route("/gone", srv.status(410))
    config = write_config(tmp_path, [{"name": "RNZ", "url": good}, {"name": "Gone", "url": bad}])
    result = invoke("collect", "--config", str(config), "--db", str(db_path))
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert "RNZ: 3 new, 0 updated, 0 unchanged" in lines
    assert any(line.startswith("Gone: error [http_error]: HTTP 410") for line in lines)
    assert lines[-1] == "2 sources polled, 3 new articles, 1 failed"

    # The same bytes again (the server sends no ETag): not read twice.
    again = invoke("collect", "--config", str(config), "--db", str(db_path), "--source", "RNZ")
    assert again.stdout.splitlines()[0] == "RNZ: unchanged (not modified since last poll)"


def test_invalid_config_exits_2_naming_file_and_line(tmp_path, db_path):
    config = tmp_path / "feeds.yaml"
    config.write_text("sources:\n  - name: A\n    url: http://a.example/\n    intervall: 5m\n")
    result = CliRunner().invoke(main, ["collect", "--config", str(config), "--db", str(db_path)])
    assert result.exit_code == 2
    assert f"{config}:4: sources[A].intervall: unknown key" in result.output
    assert not db_path.exists()


def test_unusable_database_exits_2(server, tmp_path):
    config = write_config(tmp_path, [{"name": "A", "url": server.url("/x")}])
    (tmp_path / "blocker").write_text("a file where a directory should be")
    result = CliRunner().invoke(
        main, ["collect", "--config", str(config), "--db", str(tmp_path / "blocker" / "c.db")]
    )
    assert result.exit_code == 2
    assert "cannot use" in result.output and "coverage database" in result.output


def test_unknown_source_name_exits_2(server, tmp_path, db_path):
    config = write_config(tmp_path, [{"name": "A", "url": server.url("/x")}])
    result = CliRunner().invoke(
        main, ["collect", "--config", str(config), "--db", str(db_path), "--source", "B"]
    )
    assert result.exit_code == 2
    assert "no source named 'B'" in result.output


def test_sources_prints_health(server, tmp_path, db_path):
    bad = server.route("/broken", srv.status(500))
    good = server.feed("/rnz.xml", "rnz_national.xml")
    config = write_config(tmp_path, [{"name": "Broken", "url": bad}, {"name": "RNZ", "url": good}])
    invoke("collect", "--config", str(config), "--db", str(db_path))
    output = invoke("sources", "--db", str(db_path)).output
    broken, error, rnz = output.splitlines()
    assert broken.startswith("Broken: http_error; failures 1; last ok never; next poll 20")
    assert error.strip() == "last error: HTTP 500 Internal Server Error: server error"
    assert rnz.startswith("RNZ: ok; failures 0; last ok 20") and "NZ" in rnz  # NZDT or NZST


def test_sources_on_an_empty_database(db_path):
    assert "No sources yet" in invoke("sources", "--db", str(db_path)).output


def test_commands_collect_garbage_less_often_than_python_by_default(db_path):
    before = gc.get_threshold()
    gc.set_threshold(700)  # Python's default (an earlier test may have run a command)
    gc.unfreeze()
    try:
        invoke("sources", "--db", str(db_path))
        assert gc.get_threshold()[0] == GC_THRESHOLD > 700
        # ...and never over what was loaded at start-up (frozen: out of the collector's reach).
        assert gc.get_freeze_count() > 10_000
    finally:
        gc.set_threshold(*before)


def test_commands_start_without_the_libraries_only_making_articles_needs():
    # A pass of 304s (and every staff command) pays for what `monitor` imports at start.
    heavy = ["courlan", "htmldate", "trafilatura"]
    loaded = subprocess.run(
        [sys.executable, "-c", f"import sys, monitor.cli; print([m for m in {heavy} if m in sys.modules])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert loaded == "[]"


def test_backup_is_a_consistent_copy_even_mid_transaction(server, tmp_path, db_path):
    import sqlite3

    url = server.feed("/rnz.xml", "rnz_national.xml")
    config = write_config(tmp_path, [{"name": "RNZ", "url": url}])
    invoke("collect", "--config", str(config), "--db", str(db_path))
    writer = sqlite3.connect(db_path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("DELETE FROM articles")  # uncommitted: must not be in the backup
    target = tmp_path / "backups" / "coverage-copy.db"
    result = invoke("backup", str(target), "--db", str(db_path))
    writer.execute("ROLLBACK")
    writer.close()
    assert result.exit_code == 0 and result.stdout.startswith(f"backed up {db_path} to {target}")
    copy = sqlite3.connect(target)
    assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert copy.execute("SELECT count(*) FROM articles").fetchone() == (3,)
    copy.close()
    assert not (tmp_path / "backups" / "coverage-copy.db.partial").exists()


def test_checkpoint_truncates_the_wal(server, tmp_path, db_path):
    from monitor import store

    url = server.feed("/rnz.xml", "rnz_national.xml")
    invoke(
        "collect",
        "--config",
        str(write_config(tmp_path, [{"name": "RNZ", "url": url}])),
        "--db",
        str(db_path),
    )
    db = store.open_db(db_path)
    db.execute("UPDATE articles SET summary = summary || ' '")
    wal = db_path.with_name(db_path.name + "-wal")
    assert wal.stat().st_size > 0
    busy, _, _ = store.checkpoint(db)
    assert busy == 0 and wal.stat().st_size == 0
    db.close()
